"""The defaults every config in `configs/` starts from (ml_collections), its variants, and the one
check of a config (`validate`).

A config file defines `get_config(arg)` and ends with `return variant(c, arg)`:
`--config=configs/x.py:tiny` passes `"tiny"`; an unknown variant is an error in every config.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import ml_collections

from relik_jax.core.errors import ConfigError
from relik_jax.data.tfds_builders import dataset_spec, split_names
from relik_jax.encoders.attention import IMPLEMENTATIONS
from relik_jax.encoders.config import REMAT_POLICIES
from relik_jax.parallel.mesh import mesh_dims
from relik_jax.reader.spec import get_spec, task_name
from relik_jax.training.joint_task import JointTask
from relik_jax.training.optim import validate_optim
from relik_jax.training.reader_task import ReaderTask
from relik_jax.training.retriever_task import RetrieverTask

TASKS: dict[str, type] = {
    "reader": ReaderTask,
    "retriever": RetrieverTask,
    "joint": JointTask,
}  # what a config trains, by `kind`
CANDIDATE_MODES = ("gold_plus_distractors", "retrieved")
RNG_IMPLS = ("auto", "philox4x32", "threefry2x32")


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.kind = "reader"  # what is trained: reader (EL / RE / cIE), retriever, or joint (BEER2: both, EL)
    c.seed = 0
    c.init_from = ""  # a reader folder (ours or official) to start from
    c.export = True  # write the best params as a reader folder in WORKDIR/export and a bundle in WORKDIR/bundle
    c.compilation_cache = "~/.cache/relik_jax/xla"  # persistent XLA cache: reruns skip compiling ("" = off)

    c.model = ml_collections.ConfigDict()
    c.model.encoder = "minilm"  # a local Hugging Face folder, or "minilm" (the embedded default)
    c.model.compute_dtype = "float32"  # or "bfloat16" (params stay float32)
    # attention implementation: auto (blocked on CPU, cuDNN on GPU, splash on TPU) | blocked | xla | cudnn | splash
    c.model.attention = "auto"
    c.model.remat = "none"  # recompute in the backward: none | layer (each encoder layer) | dots_saveable
    # the step's forward / backward on a bfloat16 copy of the params (bf16 gradients), the update on the
    # float32 master params: "float32" (off) | "bfloat16"
    c.model.param_dtype = "float32"

    c.reader = ml_collections.ConfigDict()
    c.reader.task = "re"  # el | re | typed | cie
    c.reader.entity_symbols = 100
    c.reader.relation_symbols = 24
    c.reader.use_nme = True  # typed: --NME-- as every row's first candidate (relik's cIE training layout)
    c.reader.linears_hidden_size = 512
    c.reader.use_last_k_layers = 1
    c.reader.max_starts = 16  # caps of the static shapes (per row)
    c.reader.max_entities = 32
    # RE: weight of start + end losses vs 0.9 x relation (-1: official 1/20); typed: of start + end + type
    # losses vs 0.9 x relation (-1: official, the mean of the four)
    c.reader.span_loss_weight = -1.0
    # EL / cIE training candidates: "gold_plus_distractors" (each document's gold titles + KB distractors up to
    # data.num_candidates) or "retrieved" (each window's top data.num_candidates from reader.retriever, as the
    # official recipe: a gold title the retriever missed is not added, its mention is labelled --NME--)
    c.reader.candidates = "gold_plus_distractors"
    # the retriever over the KB titles that gives "retrieved" candidates, scores dev / test end to end (EL: GERBIL
    # InKB F1) and goes into the bundle: "" = the untrained model.encoder, "train" = fine-tuned first in
    # WORKDIR/retriever on the same train split (the retriever section's epochs / batch / lr), a retriever folder
    # (e.g. a kind=retriever run's export), or "none" (reader only: gold-plus-distractors scores, reader-only bundle)
    c.reader.retriever = ""
    c.reader.refresh_candidates = "run"  # "retrieved": computed once per "run" or at every "epoch"
    # "retrieved": the share of train windows whose candidates are shuffled (the official reader data's
    # shuffle_candidates): in retrieval order only, a reader learns the rank prior and under-reads the titles
    c.reader.shuffle_candidates = 0.0

    c.retriever = ml_collections.ConfigDict()  # kind = "retriever"
    c.retriever.question_max_length = 64
    c.retriever.passage_max_length = 64
    c.retriever.passages_per_batch = 128  # passage rows per batch (positives + in-batch / hard negatives)
    c.retriever.max_hard_negatives = 4
    c.retriever.mine_hard_negatives = (
        False  # from the 2nd epoch on: each question's top non-positives (current weights)
    )
    c.retriever.mine_k = 20  # passages retrieved per question when mining
    c.retriever.mine_keep = 8  # hard negatives kept per question
    c.retriever.eval_k = 100
    c.retriever.epochs = 4  # reader.retriever = "train": the retriever stage's epochs, batch size, learning rate
    c.retriever.batch_size = 32
    c.retriever.learning_rate = 2e-5
    c.retriever.steps = 0  # > 0 overrides retriever.epochs

    c.joint = ml_collections.ConfigDict()  # kind = "joint" (BEER2; relik_jax.training.joint_task)
    c.joint.share_encoder = True  # the query tower is the reader's encoder (False: its own copy)
    c.joint.span_queries = True  # Reader -> Retriever: span queries retrieve and train beside the window query
    c.joint.span_k = 8  # passages retrieved per span query
    c.joint.merge = "interleave"  # how span hits join the window's top-k: interleave | score
    c.joint.max_span_queries = 8  # span queries per window in a train batch
    c.joint.refresh_every = 0  # steps between candidate refreshes (0: once per pass over the rows)
    # with reader.retriever a folder (or "train"): the shared encoder starts as its question encoder (the
    # passage tower and the KB index are its passage side either way)
    c.joint.encoder_from_retriever = True
    c.joint.train_passages = False  # train the passage tower (re-indexing the KB) or keep it frozen
    c.joint.reindex_every = 1  # refreshes between re-indexings when the passage tower trains
    c.joint.reader_weight = 1.0
    c.joint.window_weight = 1.0
    c.joint.span_weight = 1.0

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "sample_re"  # see relik_jax.data.tfds_builders.DATASETS
    c.data.dir = ""  # the dataset's files (TFDS manual_dir); empty: the bundled sample
    c.data.tfds_dir = ""  # where prepared array_record data goes (default ~/.cache/relik_jax/tfds)
    c.data.relations = ""  # relations tsv (name<TAB>definition); default: the train split's relations
    c.data.kb = ""  # entity titles (one per line / first column) for EL and cIE distractors
    c.data.num_candidates = 20  # EL / cIE candidates per document (gold + distractors)
    c.data.window_size = 32
    c.data.window_stride = 16
    c.data.max_length = 512
    # the splits trained on: "train", or several ("train,dev": SpERT's protocol, the recipe chosen on dev
    # then retrained on train + dev with data.eval_split = "" and a fixed eval.threshold)
    c.data.train_split = "train"
    c.data.eval_split = "dev"  # "": no dev evaluation, the last step's params are the final ones (reader)
    c.data.test_split = "test"  # evaluated with the best params at the end when it exists; "" to skip
    c.data.prefetch = 4

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 32  # global, in rows
    c.train.epochs = 10
    c.train.steps = 0  # > 0 overrides epochs
    c.train.dropout = True
    c.train.rng_impl = "auto"  # dropout keys: auto | philox4x32 | threefry2x32

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 5e-5  # the encoder's top layer
    c.optim.head_learning_rate = 1e-3  # heads (0: same as learning_rate)
    c.optim.layer_decay = 0.9
    c.optim.weight_decay = 0.01
    c.optim.warmup = 0.1  # a fraction of the updates, or a count when >= 1
    c.optim.clip_norm = 1.0
    c.optim.accumulate = 1
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # all devices
    c.mesh.model = 1
    c.mesh.fsdp = False  # also split params + optimizer state over 'data' (FSDP / ZeRO-3)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 200
    c.checkpoint.keep = 3
    c.checkpoint.use_async = True

    c.eval = ml_collections.ConfigDict()
    c.eval.every = 0  # steps; 0: once per epoch
    c.eval.batch_size = 32
    c.eval.max_docs = 0  # 0: all
    c.eval.tune_threshold = False  # RE / cIE: pick the relation threshold on dev after training
    c.eval.threshold_grid = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    c.eval.threshold = 0.0  # RE / cIE without tuning: the relation threshold exported and tested (0: the model's)

    c.log = ml_collections.ConfigDict()
    c.log.every = 10

    c.distributed = ml_collections.ConfigDict()
    c.distributed.initialize = False  # True on multi-host (TPU pods: the rest is auto-detected)
    c.distributed.coordinator = ""  # host:port (not needed on Cloud TPU)
    c.distributed.num_processes = 0
    c.distributed.process_id = -1
    return c


# the bundled sample of each task
SAMPLES = {"span": "sample_el", "triplet": "sample_re", "cie": "sample_cie", "typed": "sample_cie"}


def use_sample(c: ml_collections.ConfigDict) -> None:
    """Points the data at the bundled sample of the config's task (no files, KB or test split)."""
    c.data.dir = ""
    c.data.dataset = "sample_el" if c.kind == "retriever" else SAMPLES[task_name(c.reader.task)]
    c.data.relations = ""
    c.data.kb = ""
    c.data.test_split = ""


def tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The CPU/CI variant: the bundled sample, a few steps, small caps."""
    use_sample(c)
    c.data.num_candidates = 8
    c.train.batch_size = 8
    c.train.epochs = 1
    c.train.steps = 6
    c.reader.entity_symbols = 16
    c.reader.relation_symbols = 8
    c.reader.max_starts = 8
    c.reader.max_entities = 8
    c.eval.every = 0
    c.eval.max_docs = 8
    c.eval.batch_size = 8
    c.checkpoint.every = 2
    c.log.every = 1
    c.eval.tune_threshold = False
    c.retriever.passages_per_batch = 32
    c.retriever.steps = 4
    c.retriever.batch_size = 8
    return c


VARIANTS: dict[str, Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict]] = {"tiny": tiny}


def load(path: str | Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """A config file (`configs/x.py`, or `configs/x.py:tiny` for a variant) with `key=value` overrides
    (a leading `--config.` is allowed) typed as their defaults, as `--config.key=value` types them:
    for notebooks, tests and benchmarks that build a config without the command line."""
    file, _, arg = str(path).partition(":")
    spec = importlib.util.spec_from_file_location(f"configs_{Path(file).stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(arg or None)
    for item in overrides:
        key, _, raw = item.removeprefix("--config.").partition("=")
        *parents, leaf = key.split(".")
        node = c
        for part in parents:
            node = node[part]
        old = node[leaf]
        node[leaf] = (raw == "True") if isinstance(old, bool) else type(old)(raw)
    return c


def variant(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """`c` as the `:arg` of `--config=configs/x.py:arg` asks (none: `c` itself)."""
    if not arg:
        return c
    if arg not in VARIANTS:
        raise ConfigError(f"unknown config variant {arg!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[arg](c)


def validate(c: ml_collections.ConfigDict, *, devices: int | None = None, processes: int | None = None) -> None:
    """Every rule a config must follow, checked before anything is loaded (`ConfigError` naming the key).
    `devices` / `processes`: what the run has (default: JAX's device and process counts)."""
    devices = jax.device_count() if devices is None else devices
    processes = jax.process_count() if processes is None else processes
    if c.kind not in TASKS:
        raise ConfigError(f"unknown config.kind {c.kind!r} ({' | '.join(TASKS)})")
    data_kind = dataset_spec(c.data.dataset).kind
    if c.kind == "joint" and task_name(c.reader.task) != "span":
        raise ConfigError(
            f"kind = 'joint' (BEER2) trains entity linking: reader.task must be el, got {c.reader.task!r}"
        )
    if c.kind in ("reader", "joint"):
        spec = get_spec(c.reader.task)
        if data_kind != spec.dataset_kind:
            raise ConfigError(
                f"dataset {c.data.dataset!r} holds {data_kind} records; a {c.reader.task} reader needs "
                f"{spec.dataset_kind} records"
            )
        if c.reader.max_starts < 1 or c.reader.max_entities < 1:
            raise ConfigError("reader.max_starts and reader.max_entities must be >= 1")
        if c.reader.candidates not in CANDIDATE_MODES:
            raise ConfigError(f"reader.candidates must be one of {CANDIDATE_MODES}, got {c.reader.candidates!r}")
        if not 0.0 <= c.reader.shuffle_candidates <= 1.0:
            raise ConfigError(f"reader.shuffle_candidates must be in [0, 1], got {c.reader.shuffle_candidates}")
        if c.reader.refresh_candidates not in ("run", "epoch"):
            raise ConfigError(f"reader.refresh_candidates must be run | epoch, got {c.reader.refresh_candidates!r}")
        if c.reader.candidates == "retrieved" and spec.candidates != "entities":
            raise ConfigError("reader.candidates = 'retrieved' is for EL / cIE readers (RE reads the relation names)")
        if c.reader.candidates == "retrieved" and c.reader.retriever == "none":
            raise ConfigError("reader.candidates = 'retrieved' needs a retriever (reader.retriever is 'none')")
    _validate_splits(c)
    validate_optim(c.optim)
    if c.model.attention not in IMPLEMENTATIONS:
        raise ConfigError(f"model.attention must be one of {IMPLEMENTATIONS}, got {c.model.attention!r}")
    if c.model.param_dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"model.param_dtype must be float32 | bfloat16, got {c.model.param_dtype!r}")
    if c.model.remat not in REMAT_POLICIES:
        raise ConfigError(f"model.remat must be one of {REMAT_POLICIES}, got {c.model.remat!r}")
    if c.train.rng_impl not in RNG_IMPLS:
        raise ConfigError(f"train.rng_impl must be one of {RNG_IMPLS}, got {c.train.rng_impl!r}")
    bs = c.train.batch_size
    if bs < 1:
        raise ConfigError(f"train.batch_size must be >= 1, got {bs}")
    data_axis = mesh_dims((c.mesh.data, c.mesh.model), devices)[0]
    if bs % data_axis:
        raise ConfigError(
            f"train.batch_size={bs} is not divisible by the mesh's data axis ({data_axis} devices); "
            f"use a multiple of {data_axis}"
        )
    if bs % processes:
        raise ConfigError(f"train.batch_size={bs} is not divisible by the {processes} processes")


def _validate_splits(c: ml_collections.ConfigDict) -> None:
    """data.train_split / data.eval_split / eval.threshold: dev never trained on and evaluated at once."""
    train = split_names(c.data.train_split)
    if not train:
        raise ConfigError("data.train_split names no split (e.g. 'train', or 'train,dev')")
    if c.kind != "reader" and train != ["train"]:
        raise ConfigError(f"data.train_split={c.data.train_split!r}: a {c.kind} run trains on 'train' only")
    if c.data.eval_split in train:
        raise ConfigError(
            f"data.eval_split={c.data.eval_split!r} is also trained on (data.train_split={c.data.train_split!r}): "
            "set data.eval_split='' (the last step's params are kept) or train on other splits"
        )
    if not c.data.eval_split:
        if c.kind != "reader":
            raise ConfigError(
                f"data.eval_split='' (no dev evaluation) is for readers; a {c.kind} run needs a dev split"
            )
        if c.eval.tune_threshold:
            raise ConfigError(
                "eval.tune_threshold chooses the relation threshold on dev, and data.eval_split is '': "
                "set eval.tune_threshold=False and eval.threshold to the value chosen on dev"
            )
    if not 0.0 <= c.eval.threshold < 1.0:
        raise ConfigError(f"eval.threshold must be in [0, 1) (0: the model's own), got {c.eval.threshold}")
