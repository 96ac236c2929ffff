"""Ahead-of-time compilation of a config's programs for a TPU topology, on any machine.

`compile_config(config, "v5e:16x16")` builds compile-only TPU devices for the topology (libtpu,
the `tpu` extra), the config's ('data', 'model') mesh over them, and compiles — without allocating
a parameter or reading a document — the real training step (`loop.make_train_step`: the task's
loss, AdamW, clipping, the shardings of the train state) and the inference programs (the reader's
forward, the retriever's query encoder), from abstract shapes: the encoder's `config.json` (a local
folder, or the public shapes in `relik_jax/resources/encoder_shapes`) and the config's batch
shapes. What XLA:TPU reports per chip (argument / output / temp / peak bytes, FLOPs, the
collectives in the program) is what the step costs there; a program that does not fit fails
to compile, and the report says by how much.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from relik_jax.core.assets import resolve_model_path
from relik_jax.core.errors import ConfigError, RelikJaxError
from relik_jax.encoders.config import EncoderConfig
from relik_jax.parallel.mesh import fsdp_shardings, logical_shardings, mesh_dims
from relik_jax.reader import programs
from relik_jax.reader.factory import reader_config, task_symbols
from relik_jax.reader.inputs import Row
from relik_jax.reader.labels import RowLabels, collate_train
from relik_jax.reader.model import Reader
from relik_jax.reader.spec import get_spec
from relik_jax.retriever import dpr
from relik_jax.retriever.model import BiEncoder, RetrieverConfig
from relik_jax.training.loop import low_precision_params, make_train_step
from relik_jax.training.optim import make_optimizer
from relik_jax.training.reader_task import ReaderTask
from relik_jax.training.runtime import runtime_encoder
from relik_jax.training.state import TrainState

GiB = 1024**3

# Slice names as Cloud TPU sells them → (topology, chip config). v4 / v5p names count TensorCores
# (2 per chip, used as one "megacore" device); v5e / v6e names count chips.
SLICES = {
    "v5e-1": "v5e:1x1", "v5e-4": "v5e:2x2", "v5e-8": "v5e:2x4", "v5e-16": "v5e:4x4", "v5e-32": "v5e:4x8",
    "v5e-64": "v5e:8x8", "v5e-128": "v5e:8x16", "v5e-256": "v5e:16x16",
    "v6e-1": "v6e:1x1", "v6e-4": "v6e:2x2", "v6e-8": "v6e:2x4", "v6e-16": "v6e:4x4", "v6e-32": "v6e:4x8",
    "v6e-64": "v6e:8x8", "v6e-128": "v6e:8x16", "v6e-256": "v6e:16x16",
    "v4-8": "v4:2x2x1", "v4-16": "v4:2x2x2", "v4-32": "v4:2x2x4", "v4-64": "v4:2x4x4", "v4-128": "v4:4x4x4",
    "v5p-8": "v5p:2x2x1", "v5p-16": "v5p:2x2x2", "v5p-32": "v5p:2x2x4", "v5p-64": "v5p:2x4x4",
}  # fmt: skip
# HBM per chip (GiB) by generation: what Cloud TPU documents; XLA's own limit is a little lower
HBM_GIB = {"v4": 32.0, "v5e": 16.0, "v5p": 95.0, "v6e": 32.0}
MEGACORE = ("v4", "v5p")
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


class AotError(RelikJaxError):
    """The topology cannot be built or compiled for (no libtpu, an unknown name)."""


# ---- the topology and its mesh ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Topology:
    name: str  # as given (a slice name or generation:shape)
    generation: str  # v4 | v5e | v5p | v6e
    shape: tuple[int, ...]  # chips per physical axis
    devices: tuple[Any, ...]  # compile-only devices

    @property
    def chips(self) -> int:
        return math.prod(self.shape)

    @property
    def hbm_bytes(self) -> int:
        return int(HBM_GIB[self.generation] * GiB)


def parse_topology(name: str) -> tuple[str, tuple[int, ...]]:
    """`v5e-8` (a slice name) or `v5e:2x4` → ("v5e", (2, 4))."""
    full = SLICES.get(name.lower(), name.lower())
    m = re.fullmatch(r"(v4|v5e|v5p|v6e|v5litepod|v5|v6)[:](\d+(?:x\d+){1,2})", full)
    if not m:
        known = ", ".join(list(SLICES)[:6])
        raise ConfigError(
            f"unknown TPU topology {name!r}: give a slice name ({known}, ...) or generation:shape (v5e:4x4, v4:2x2x4)"
        )
    gen = {"v5litepod": "v5e", "v5": "v5p", "v6": "v6e"}.get(m.group(1), m.group(1))
    return gen, tuple(int(x) for x in m.group(2).split("x"))


@functools.cache
def get_topology(name: str) -> Topology:
    """Compile-only devices of a TPU topology (needs libtpu: `pip install -e '.[tpu]'`)."""
    gen, shape = parse_topology(name)
    try:
        import libtpu  # noqa: F401  (the tpu extra: only compiling for TPU needs it)
        from jax.experimental import topologies  # (with it)
    except ImportError as e:
        raise AotError(
            "compiling for TPU needs libtpu, the `tpu` extra: pip install -e '.[tpu]' (it works on a CPU machine)"
        ) from e
    # compile-only devices hold no TPU: several processes may load libtpu at once (pytest workers, a
    # subprocess of a notebook) without its one-process lockfile
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    dims = shape + (1,) * (3 - len(shape))
    per_host = tuple(min(d, b) for d, b in zip(dims, (2, 2, 1)))
    xla_name = {"v5p": "v5"}.get(gen, gen) + ":" + "x".join(map(str, shape))
    with _quiet_stderr():  # libtpu warns that this machine is no TPU worker (it is not meant to be one)
        try:
            topo = topologies.get_topology_desc(
                xla_name, "tpu", chip_config_name="megacore" if gen in MEGACORE else "default",
                chips_per_host_bounds=per_host, num_slices=1, wrap=(False, False, False),
            )  # fmt: skip
        except Exception as e:  # the plugin's errors are XlaRuntimeError / ValueError with its text
            error = e
        else:
            error = None
    if error is not None:
        raise AotError(f"libtpu cannot build the topology {xla_name!r}: {str(error).splitlines()[0]}") from error
    return Topology(name, gen, shape, tuple(topo.devices))


@contextlib.contextmanager
def _quiet_stderr():
    """Process-level stderr (fd 2, where C++ logs go) sent to /dev/null for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def topology_mesh(topo: Topology, data: int, model: int) -> jax.sharding.Mesh:
    """The ('data', 'model') mesh of the config over the topology's chips (one -1 allowed)."""
    from jax.experimental import topologies  # libtpu's side of JAX, once get_topology found it

    d, m = mesh_dims((data, model), topo.chips)
    try:
        return topologies.make_mesh(_Topo(topo.devices), (d, m), ("data", "model"))
    except (AssertionError, ValueError, NotImplementedError) as e:
        raise ConfigError(
            f"a {d}x{m} (data x model) mesh does not map onto the {'x'.join(map(str, topo.shape))} chips of "
            f"{topo.name}: mesh.model must divide one physical axis ({e})"
        ) from e


@dataclasses.dataclass
class _Topo:  # what `topologies.make_mesh` reads of a TopologyDescription
    devices: tuple[Any, ...]


# ---- abstract tasks: shapes of the params and batches, the real loss -------------------------


def encoder_shapes(name: str | Path) -> EncoderConfig:
    """The architecture of `model.encoder` without its weights: a local folder's `config.json`
    (`"minilm"` included), or the published shapes of a public model named like the hub names it
    (`microsoft/deberta-v3-large`; the list: `relik_jax/resources/encoder_shapes`)."""
    table = resources.files("relik_jax") / "resources" / "encoder_shapes"
    public = {}
    for f in table.iterdir():
        if f.name.endswith(".json"):
            hf = json.loads(f.read_text())
            public[hf.pop("_name")] = hf
    if str(name) in public:
        return EncoderConfig.from_hf(public[str(name)])
    try:
        folder = resolve_model_path(name)
    except RelikJaxError as e:
        raise ConfigError(f"model.encoder={name!r}: {e}; shapes are known for {', '.join(sorted(public))}") from e
    return EncoderConfig.from_hf(json.loads((folder / "config.json").read_text()))


def _dtype(config: Any):
    return jnp.bfloat16 if config.model.compute_dtype == "bfloat16" else jnp.float32


class AbstractReaderTask:
    """A reader task's model, param shapes, loss and batch shapes, from the config alone."""

    replicated_keys: tuple[str, ...] = ()
    frozen_keys: tuple[str, ...] = ()

    def __init__(self, config: Any, backend: str = "tpu", batch_size: int | None = None):
        self.config = config
        r = config.reader
        self.spec = get_spec(r.task)
        enc = encoder_shapes(config.model.encoder)
        symbols = task_symbols(r.task, r.entity_symbols, r.relation_symbols)
        enc = runtime_encoder(enc.replace(vocab_size=enc.vocab_size + len(symbols)), config, backend)
        rc = reader_config(
            enc, r.task, entity_symbols=r.entity_symbols, relation_symbols=r.relation_symbols,
            linears_hidden_size=r.linears_hidden_size, use_last_k_layers=r.use_last_k_layers, use_nme=r.use_nme,
        )  # fmt: skip
        self.model = Reader(rc, dtype=_dtype(config))
        self.num_layers = enc.num_layers
        self.batch_size = batch_size or config.train.batch_size

    def abstract_params(self) -> Any:
        return jax.eval_shape(lambda k: self.model.init(k, self._batch(1))["params"], jax.random.key(0))

    loss = ReaderTask.loss  # the training loss itself (it reads only self.model and self.config)

    def columns(self) -> tuple[int, int]:
        """(symbol columns, relation columns) of a row with every symbol filled."""
        r, s = self.config.reader, self.spec
        if s.typed:
            return r.entity_symbols + 1, r.relation_symbols
        if s.links and s.relations:  # cie: [CLS], --NME--, [E-k]; then the [R-i]
            return r.entity_symbols + 2, r.relation_symbols
        if s.links:
            return r.entity_symbols + 2, 0
        return r.relation_symbols, 0

    def _batch(self, rows: int) -> dict[str, np.ndarray]:
        """A batch of `rows` rows at the config's caps (`collate_train` of one synthetic row)."""
        c = self.config
        length = c.data.max_length
        cols, rels = self.columns()
        row = Row(
            window=None, patch=0, input_ids=np.zeros(length, np.int32), n_text=length // 2,
            symbol_pos=np.arange(cols, dtype=np.int32), columns=[None] * cols, piece_chars=[], piece_words=[],
            relation_pos=np.arange(rels, dtype=np.int32) if rels else None,
        )  # fmt: skip
        b, _ = collate_train(
            [row], [RowLabels([], [], [], [], [])], self.spec, batch_size=1,
            max_starts=c.reader.max_starts, max_entities=c.reader.max_entities,
            length_buckets=(length,), column_buckets=tuple(sorted({cols, rels} - {0})),
        )  # fmt: skip
        b["row_valid"] = np.ones(1, bool)
        return {k: np.zeros((rows, *v.shape[1:]), v.dtype) for k, v in b.items()}

    def batch_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
        return {k: jax.ShapeDtypeStruct((self.batch_size, *v.shape[1:]), v.dtype) for k, v in self._batch(1).items()}

    def inference(self, rows: int):
        """(the reader's forward: spans, ends, links; its batch shapes)."""
        c = self.config
        keys = ("input_ids", "attention_mask", "token_type_ids", "prediction_mask", "symbol_pos", "symbol_valid")
        keys += ("relation_pos", "relation_valid") if self.spec.extra_relations else ()
        full = self._batch(1)
        shapes = {k: jax.ShapeDtypeStruct((rows, *full[k].shape[1:]), full[k].dtype) for k in keys if k in full}

        def forward(params, batch):
            return programs.predict_spans(
                self.model, params, batch, max_starts=c.reader.max_starts, max_entities=c.reader.max_entities
            )

        return forward, shapes


class AbstractRetrieverTask:
    """The retriever's bi-encoder, param shapes, NCE loss and batch shapes, from the config alone."""

    replicated_keys = ("p_ids", "p_mask", "p_valid")
    frozen_keys: tuple[str, ...] = ()

    def __init__(self, config: Any, backend: str = "tpu", batch_size: int | None = None):
        self.config = config
        enc = runtime_encoder(encoder_shapes(config.model.encoder), config, backend)
        self.model = BiEncoder(RetrieverConfig(enc), dtype=_dtype(config))
        self.num_layers = enc.num_layers
        self.batch_size = batch_size or config.train.batch_size

    def abstract_params(self) -> Any:
        ids = np.zeros((1, 8), np.int32)
        return jax.eval_shape(lambda k: self.model.init(k, ids, ids, ids, ids)["params"], jax.random.key(0))

    def loss(self, params, batch, rng):
        return dpr.nce_loss(self.model, params, batch, rng), {}

    def batch_shapes(self) -> dict[str, jax.ShapeDtypeStruct]:
        r = self.config.retriever

        def tokenize(texts, length, rows):
            return {
                "input_ids": np.zeros((rows, length), np.int32),
                "attention_mask": np.ones((rows, length), np.int32),
            }

        sample = dpr.DPRSample("q", ["p"])
        b = dpr.make_batch(
            [sample], tokenize, questions=1, passages=r.passages_per_batch, question_max_length=r.question_max_length,
            passage_max_length=r.passage_max_length,
        )  # fmt: skip
        b["row_valid"] = b["q_valid"]
        per_question = {"q_ids", "q_mask", "q_valid", "targets", "row_valid"}
        return {
            k: jax.ShapeDtypeStruct((self.batch_size, *v.shape[1:]) if k in per_question else v.shape, v.dtype)
            for k, v in b.items()
        }

    def inference(self, rows: int):
        """(the query encoder's forward; its batch shapes)."""
        length = self.config.retriever.question_max_length
        shapes = {k: jax.ShapeDtypeStruct((rows, length), np.int32) for k in ("input_ids", "attention_mask")}

        def forward(params, batch):
            return self.model.apply(
                {"params": params}, batch["input_ids"], batch["attention_mask"], method=BiEncoder.embed_questions
            )

        return forward, shapes


def abstract_task(config: Any, backend: str = "tpu", batch_size: int | None = None):
    if config.kind == "retriever":
        return AbstractRetrieverTask(config, backend, batch_size)
    if config.kind == "reader":
        return AbstractReaderTask(config, backend, batch_size)
    raise ConfigError(f"python -m relik_jax.aot compiles kind = reader | retriever configs, not {config.kind!r}")


# ---- compiling and reading what the compiler says --------------------------------------------


@dataclasses.dataclass
class ProgramReport:
    name: str  # train_step | reader_forward | retriever_queries
    batch: int  # global rows
    fits: bool
    compile_s: float
    argument_bytes: int = 0
    output_bytes: int = 0
    alias_bytes: int = 0
    temp_bytes: int = 0
    peak_bytes: int = 0  # arguments + outputs - aliased + temporaries: what the chip holds at once
    flops: float = 0.0  # per chip (XLA's cost analysis of the partitioned program)
    collectives: dict[str, int] = dataclasses.field(default_factory=dict)
    needed_bytes: int = 0  # when it does not fit: what the compiler says it needs
    limit_bytes: int = 0  # ... and the HBM it had
    error: str = ""
    hlo: str = dataclasses.field(default="", repr=False)  # the optimized HLO (`compile_config(keep_hlo=True)`)


@dataclasses.dataclass
class Report:
    config: str
    topology: str
    generation: str
    chips: int
    mesh: tuple[int, int]
    hbm_bytes: int
    param_bytes: int  # per chip
    opt_state_bytes: int  # per chip
    params: int  # parameter count (global)
    attention: str
    remat: str
    fsdp: bool
    compute_dtype: str
    programs: list[ProgramReport]
    param_dtype: str = "float32"  # the dtype the step differentiates in (model.param_dtype)
    accumulate: int = 1  # optim.accumulate

    @property
    def fits(self) -> bool:
        return all(p.fits for p in self.programs)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self) | {"fits": self.fits}
        for p in out["programs"]:
            p.pop("hlo")
        return out


def count_collectives(hlo: str) -> dict[str, int]:
    """Collective ops in an optimized HLO text (async `-start` forms counted once)."""
    out = {}
    for op in COLLECTIVES:
        n = len(re.findall(rf"= \S+ {op}(?:-start)?\(", hlo)) + len(re.findall(rf"\) {op}(?:-start)?\(", hlo))
        if n:
            out[op] = n
    return out


# XLA:TPU's two ways of saying a program does not fit (the second counts temporaries only)
_OOM = (
    re.compile(r"Used ([\d.]+)([KMGT]) of ([\d.]+)([KMGT]) hbm"),
    re.compile(r"\(([\d.]+)([KMGT])\) exceeds available HBM \(([\d.]+)([KMGT])\)"),
)
_UNIT = {"K": 1024, "M": 1024**2, "G": GiB, "T": 1024**4}


def per_chip_bytes(abstract: Any, shardings: Any) -> int:
    """Bytes one chip holds of `abstract` laid out as `shardings` (empty nodes hold nothing)."""
    sizes = jax.tree.map(
        lambda s, a: int(np.prod(s.shard_shape(a.shape))) * a.dtype.itemsize if hasattr(a, "shape") else 0,
        shardings, abstract, is_leaf=lambda x: isinstance(x, NamedSharding),
    )  # fmt: skip
    return sum(jax.tree.leaves(sizes))


def compile_program(name: str, fn, args: Sequence[Any], batch: int, keep_hlo: bool = False) -> ProgramReport:
    """Lowers and compiles `fn(*args)` (abstract args carrying their shardings)."""
    t0 = time.perf_counter()
    try:
        jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
        compiled = jitted.lower(*args).compile()
    except Exception as e:  # XlaRuntimeError: RESOURCE_EXHAUSTED when it does not fit
        text = str(e)
        if "RESOURCE_EXHAUSTED" not in text and "exceeds available" not in text.lower():
            raise
        m = next((m for m in (r.search(text) for r in _OOM) if m), None)
        need = int(float(m.group(1)) * _UNIT[m.group(2)]) if m else 0
        limit = int(float(m.group(3)) * _UNIT[m.group(4)]) if m else 0
        first = next((ln for ln in text.splitlines() if "RESOURCE_EXHAUSTED" in ln), text.splitlines()[0])
        return ProgramReport(name, batch, False, time.perf_counter() - t0, needed_bytes=need, limit_bytes=limit,
                             error=first.strip()[:300])  # fmt: skip
    dt = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    arg, out, alias, temp = (
        int(getattr(mem, f"{k}_size_in_bytes", 0)) for k in ("argument", "output", "alias", "temp")
    )
    peak = int(getattr(mem, "peak_memory_in_bytes", 0) or 0) or arg + out - alias + temp
    hlo = compiled.as_text()
    return ProgramReport(
        name, batch, True, dt, arg, out, alias, temp, peak, float((cost or {}).get("flops", 0.0)),
        count_collectives(hlo), hlo=hlo if keep_hlo else "",
    )  # fmt: skip


def compile_config(
    config: Any, topology: str | Topology, *, batch_size: int | None = None, inference: bool = True,
    config_name: str = "", keep_hlo: bool = False,
) -> Report:  # fmt: skip
    """Compiles the config's train step (and inference programs) for `topology`; nothing is allocated."""
    topo = topology if isinstance(topology, Topology) else get_topology(topology)
    mesh = topology_mesh(topo, config.mesh.data, config.mesh.model)
    task = abstract_task(config, "tpu", batch_size)
    data_axis = mesh.shape["data"]
    if task.batch_size % data_axis:
        raise ConfigError(
            f"train.batch_size={task.batch_size} is not divisible by the mesh's data axis ({data_axis} chips)"
        )
    total = config.train.steps or 10_000
    tx, lr = make_optimizer(config.optim, total_steps=total, num_layers=task.num_layers, frozen=task.frozen_keys)
    boxed = task.abstract_params()
    abstract_state = jax.eval_shape(lambda p: TrainState.create(p, tx), boxed)
    shardings = logical_shardings(abstract_state, mesh)
    state = nn.unbox(abstract_state)
    if config.mesh.fsdp:
        shardings = fsdp_shardings(shardings, state, mesh)
    state_in = jax.tree.map(
        lambda a, s: a if isinstance(a, optax.MaskedNode) else jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        state, shardings, is_leaf=lambda x: isinstance(x, optax.MaskedNode),
    )  # fmt: skip
    params = nn.unbox(boxed)
    param_bytes = per_chip_bytes(params, shardings.params)
    opt_bytes = per_chip_bytes(state.opt_state, shardings.opt_state)

    def batch_in(shapes: dict[str, jax.ShapeDtypeStruct], replicated: Sequence[str] = ()) -> dict[str, Any]:
        def spec(k, v):
            if k in replicated or not v.shape:
                return PartitionSpec()
            return PartitionSpec("data", *([None] * (len(v.shape) - 1)))

        return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=NamedSharding(mesh, spec(k, v)))
                for k, v in shapes.items()}  # fmt: skip

    rng = jax.ShapeDtypeStruct(
        (), jax.random.key(0, impl="threefry2x32").dtype, sharding=NamedSharding(mesh, PartitionSpec())
    )
    reports = []
    with jax.set_mesh(mesh):
        step = make_train_step(
            task, tx, lr, dropout=config.train.dropout, accumulate=config.optim.accumulate,
            state_sharding=shardings, mesh=mesh, param_dtype=low_precision_params(config),
        )  # fmt: skip
        batch = batch_in(task.batch_shapes(), task.replicated_keys)
        reports.append(compile_program("train_step", step, (state_in, batch, rng), task.batch_size, keep_hlo))
        if inference:
            rows = config.eval.batch_size - config.eval.batch_size % data_axis or data_axis
            fwd, shapes = task.inference(rows)
            name = "retriever_queries" if config.kind == "retriever" else "reader_forward"
            p_in = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), params,
                                shardings.params)  # fmt: skip
            reports.append(compile_program(name, fwd, (p_in, batch_in(shapes)), rows, keep_hlo))
    enc = task.model.config.encoder if config.kind == "reader" else task.model.config.question
    return Report(
        config_name, topo.name, topo.generation, topo.chips, (mesh.shape["data"], mesh.shape["model"]),
        topo.hbm_bytes, param_bytes, opt_bytes, sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params)),
        enc.attention, enc.remat, bool(config.mesh.fsdp), config.model.compute_dtype, reports,
        config.model.param_dtype, config.optim.accumulate,
    )  # fmt: skip


def find_max_batch(
    config: Any,
    topo: Topology,
    *,
    start: int | None = None,
    config_name: str = "",
    known: Report | None = None,
    progress: Callable[[int, bool, int], None] | None = None,
) -> tuple[int, list]:
    """The largest global train batch (a multiple of the data axis) whose step compiles for `topo`.

    Memory grows about linearly with the per-chip batch: from the first compile (at `start`), the
    bytes per row give an estimate of the largest batch; compiles at the estimate and one row above
    it (then bisecting, or doubling, as they say) settle it. `known`: a report already compiled for
    this config and topology (`compile_config`), whose train step is not compiled again (a
    paper-scale step takes minutes). `progress(global batch, fits, bytes)` is called after each
    compile, so that a search cut short (a host out of memory) leaves what it found. Returns
    (batch, [(batch, fits, bytes)])."""
    data_axis = topology_mesh(topo, config.mesh.data, config.mesh.model).shape["data"]
    tried: dict[int, tuple[bool, int, int]] = {}

    def record(r: Report, new: bool = True) -> None:
        p = r.programs[0]
        used = p.argument_bytes + p.temp_bytes if p.fits else p.needed_bytes  # what XLA checks against HBM
        tried[p.batch // data_axis] = (p.fits, used, r.param_bytes + r.opt_state_bytes)
        if progress is not None and new:
            progress(p.batch, p.fits, used)

    if known is not None:  # compile_config refused any batch the data axis does not divide
        record(known, new=False)

    def fits(per_chip: int) -> bool:
        if per_chip not in tried:
            record(
                compile_config(config, topo, batch_size=per_chip * data_axis, inference=False, config_name=config_name)
            )
        return tried[per_chip][0]

    first = max(1, (start or data_axis) // data_axis)
    ok = fits(first)
    _, used, state = tried[first]
    limit = topo.hbm_bytes * 0.98  # XLA keeps a little of the HBM for itself (v5e: 15.75 of 16 GiB)
    per_row = (used - state) / first if used > state else 0.0
    # the estimate only chooses where to look; it stays within 8x of what was compiled
    guess = int((limit - state) // per_row) if per_row else (first * 2 if ok else first // 2)
    guess = min(max(guess, 1), first * 8)
    guess = max(guess, first) if ok else min(guess, first - 1)
    lo, hi = (first, None) if ok else (0, first)
    if guess and guess != first:
        if fits(guess):
            lo = max(lo, guess)
        else:
            hi = guess if hi is None else min(hi, guess)
    if lo and (hi is None or lo + 1 < hi):  # one row above the best so far: usually the edge
        if fits(lo + 1):
            lo += 1
        else:
            hi = lo + 1
    while hi is None:  # everything so far fitted: double until something does not
        nxt = lo * 2
        if fits(nxt):
            lo = nxt
        else:
            hi = nxt
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    rows = [(b * data_axis, f, used) for b, (f, used, _) in sorted(tried.items())]
    return lo * data_axis, rows


# ---- the printed report ----------------------------------------------------------------------


def gib(n: float) -> str:
    return f"{n / GiB:.2f}"


def format_report(r: Report) -> str:
    lines = [
        f"{r.config or 'config'} on {r.topology} ({r.chips} chips {r.generation}, {gib(r.hbm_bytes)} GiB HBM each); "
        f"mesh {r.mesh[0]} data x {r.mesh[1]} model; {r.params / 1e6:.1f}M params, compute {r.compute_dtype}, "
        f"attention {r.attention}, remat {r.remat}, fsdp {r.fsdp}, step params {r.param_dtype}, "
        f"accumulate {r.accumulate}",
        f"per chip: params {gib(r.param_bytes)} GiB, optimizer state {gib(r.opt_state_bytes)} GiB",
        "",
        "| program | global batch | fits | argument GiB | output GiB | temp GiB | peak GiB | peak / HBM | "
        "TFLOP per step | collectives | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in r.programs:
        coll = ", ".join(f"{k} {v}" for k, v in p.collectives.items()) or "none"
        peak = p.peak_bytes if p.fits else p.needed_bytes
        lines.append(
            f"| {p.name} | {p.batch} | {'yes' if p.fits else 'NO'} | {gib(p.argument_bytes)} | {gib(p.output_bytes)} | "
            f"{gib(p.temp_bytes)} | {gib(peak)} | {100 * peak / r.hbm_bytes:.0f}% | {p.flops / 1e12:.3f} | {coll} | "
            f"{p.compile_s:.1f} |"
        )
    return "\n".join(lines)


def does_not_fit(r: Report) -> str | None:
    """The one line a config too large for the chip ends with (None when everything fits)."""
    bad = next((p for p in r.programs if not p.fits), None)
    if bad is None:
        return None
    need = f"{gib(bad.needed_bytes)} GiB" if bad.needed_bytes else "more than its"
    limit = gib(bad.limit_bytes or r.hbm_bytes)
    return (
        f"error: the {bad.name} (global batch {bad.batch}) needs {need} of HBM per chip, {r.generation} has {limit} "
        "GiB: lower train.batch_size, raise mesh.model, or set model.remat / mesh.fsdp"
    )
