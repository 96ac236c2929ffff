"""The training loop: one program for one CPU, many devices and many hosts.

- One ('data', 'model') mesh; params and optimizer state sharded by their logical axis names; the
  step jitted with donated state; each host builds the same global batch order and places its own
  slice (`jax.make_array_from_process_local_data`).
- Orbax `CheckpointManager` (async): every `checkpoint.every` steps and at the end, the last
  `checkpoint.keep` kept, the data position (step, epoch, batch) saved beside the state; a run
  resumes from its workdir by itself. The best dev checkpoint is kept apart (`best/`).
- Epochs: `task.begin_epoch(epoch, params)` runs before the epoch's batches are built (in a
  background thread, `data.prefetch` ahead); the task's `finish` gets the best params at the end.
- A step whose loss or gradient is not finite leaves the state unchanged; the run stops at the
  next metrics flush with the step named and the last checkpoint intact.
- Metrics: `metrics.jsonl` and TensorBoard event files (`tensorboard/`), from process 0.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tensorboardX import SummaryWriter
from tqdm.auto import tqdm

from relik_jax.core.errors import RelikJaxError
from relik_jax.parallel.mesh import fsdp_shardings, logical_shardings, make_mesh, replicated, shard_batch
from relik_jax.training.optim import make_optimizer
from relik_jax.training.state import TrainState
from relik_jax.training.task import Finish, Task

log = logging.getLogger(__name__)


class TrainingError(RelikJaxError):
    """Training cannot go on (a non-finite loss, ...)."""


# ---- metrics ---------------------------------------------------------------------------------


class MetricWriter:
    """`metrics.jsonl` (one object per line, `step` first) + TensorBoard scalars; process 0 only."""

    def __init__(self, workdir: Path, *, resume_step: int, enabled: bool):
        self.enabled = enabled
        self.path = workdir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if self.path.exists():  # drop what a killed run logged after its last checkpoint
            kept = [
                line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step
            ]
            self.path.write_text("".join(x + "\n" for x in kept))
        self.tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        row = {"step": step, **{f"{prefix}{k}": float(v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ---- input -----------------------------------------------------------------------------------


def prefetch(it: Iterator, size: int) -> Iterator:
    """Runs `it` in a background thread, `size` items ahead (batch building off the critical path)."""
    if size <= 0:
        yield from it
        return
    q: queue.Queue = queue.Queue(maxsize=size)
    done = object()

    def run():
        try:
            for x in it:
                q.put(x)
        except BaseException as e:  # re-raised in the consumer
            q.put(e)
        q.put(done)

    threading.Thread(target=run, daemon=True).start()
    while (x := q.get()) is not done:
        if isinstance(x, BaseException):
            raise x
        yield x


def host_batches(task: Task, epoch: int, start: int, end: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(step, this host's slice of the global batch) for the steps `[start, end)` of `epoch`."""
    spe = task.steps_per_epoch()
    n_proc, pid = jax.process_count(), jax.process_index()
    order = task.epoch_order(epoch)
    local = task.batch_size // n_proc
    for step in range(start, end):
        batch = task.batch(order[step - epoch * spe])
        yield (
            step,
            {k: v if k in task.replicated_keys else v[pid * local : (pid + 1) * local] for k, v in batch.items()},
        )


# ---- the loop --------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainResult:
    workdir: Path
    step: int
    best: dict[str, float]
    best_step: int | None
    final: dict[str, float]
    params: Any  # the params after the last step
    best_params: Any = None  # the best dev checkpoint's params (restored once, here)
    finish: Finish | None = None  # what the task's `finish` made of the best params


def _checkpoint_managers(workdir: Path, cfg) -> tuple[ocp.CheckpointManager, ocp.CheckpointManager]:
    main = ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(
            save_interval_steps=max(cfg.every, 1), max_to_keep=cfg.keep, enable_async_checkpointing=cfg.use_async
        ),
        item_names=("state", "meta"),
    )
    best = ocp.CheckpointManager(
        workdir / "best",
        options=ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False),
        item_names=("params", "meta"),
    )
    return main, best


def _save(mngr, step: int, state, meta: dict, *, force: bool = False) -> bool:
    return mngr.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force
    )


def low_precision_params(config) -> Any:
    """`model.param_dtype`: the dtype the step differentiates in (None: the f32 params themselves)."""
    return jnp.bfloat16 if config.model.param_dtype == "bfloat16" else None


def make_train_step(
    task: Task, tx, lr_schedule, *, dropout: bool, accumulate: int, state_sharding, mesh, param_dtype=None
):
    """The jitted step. `param_dtype` (bf16): the forward and backward run on a bf16 copy of the
    params made at the start of the step (bf16 gradients: half their memory and all-reduce bytes),
    and the update is applied to the float32 params and optimizer state (the master copy)."""

    def grads_of(params, batch, key):
        if param_dtype is None:
            return jax.value_and_grad(task.loss, has_aux=True)(params, batch, key)
        low = jax.tree.map(lambda p: p.astype(param_dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, params)
        out, g = jax.value_and_grad(task.loss, has_aux=True)(low, batch, key)
        return out, jax.tree.map(lambda gi, p: gi.astype(p.dtype), g, params)

    def step(state: TrainState, batch, rng):
        key = jax.random.fold_in(rng, state.step) if dropout else None
        (loss, aux), grads = grads_of(state.params, batch, key)
        grad_norm = optax.global_norm(grads)
        new = state.apply_gradients(grads, tx)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)  # a bad step changes nothing
        metrics = {"loss": loss, "grad_norm": grad_norm, "ok": ok, "lr": lr_schedule(state.step // accumulate), **aux}
        return new, metrics

    return jax.jit(step, donate_argnums=0, out_shardings=(state_sharding, replicated(mesh)))


def train_and_evaluate(config, workdir: str | Path, task: Task) -> TrainResult:
    """Trains `task` as `config` says in `workdir` (resuming from its last checkpoint), evaluating as
    it goes; then hands the best params to `task.finish`. `config` must have passed `validate`."""
    workdir = Path(workdir).expanduser().resolve()
    is_main = jax.process_index() == 0
    mesh = make_mesh((config.mesh.data, config.mesh.model))
    if is_main:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    spe = task.steps_per_epoch()
    total = config.train.steps or config.train.epochs * spe
    tx, lr = make_optimizer(config.optim, total_steps=total, num_layers=task.num_layers, frozen=task.frozen_keys)

    abstract_state = jax.eval_shape(lambda p: TrainState.create(p, tx), task.abstract_params())
    state_sharding = logical_shardings(abstract_state, mesh)
    if config.mesh.fsdp:
        state_sharding = fsdp_shardings(state_sharding, nn.unbox(abstract_state), mesh)
    state = jax.jit(lambda p: TrainState.create(p, tx), out_shardings=state_sharding)(task.init_params)

    mngr, best_mngr = _checkpoint_managers(workdir, config.checkpoint)
    meta: dict[str, Any] = {"best": None, "best_step": None}
    start = 0
    if (latest := mngr.latest_step()) is not None:
        restored = mngr.restore(
            latest, args=ocp.args.Composite(state=ocp.args.StandardRestore(state), meta=ocp.args.JsonRestore())
        )
        state, meta = restored.state, dict(restored.meta)
        start = int(meta["step"])
        if is_main:
            log.info("resuming from %s at step %d (epoch %d, batch %d)", mngr.directory, start, *divmod(start, spe))
    writer = MetricWriter(workdir, resume_step=start, enabled=is_main)
    step_fn = make_train_step(
        task, tx, lr, dropout=config.train.dropout, accumulate=config.optim.accumulate,
        state_sharding=state_sharding, mesh=mesh, param_dtype=low_precision_params(config),
    )  # fmt: skip
    rng = jax.random.key(config.seed, impl=rng_impl(config.train.rng_impl))
    eval_every = config.eval.every or spe
    pending: list[tuple[int, dict]] = []
    bar = tqdm(total=total, initial=start, unit="step", desc="train", disable=not is_main, dynamic_ncols=True)
    t0, examples, last = time.perf_counter(), 0, {}

    def flush(step_done: int) -> None:
        nonlocal t0, examples, last
        if not pending:
            return
        host = jax.device_get([m for _, m in pending])
        for (s, _), m in zip(pending, host):
            if not bool(m["ok"]):
                mngr.wait_until_finished()
                raise TrainingError(
                    f"the loss became {float(m['loss'])} at step {s + 1} (gradient norm {float(m['grad_norm'])}); "
                    f"training stopped. The last checkpoint is step {mngr.latest_step()} in {mngr.directory} "
                    "(intact; a restart resumes from it). Lower optim.learning_rate or check the data."
                )
            writer.write(s + 1, {k: v for k, v in m.items() if k != "ok"})
        dt = time.perf_counter() - t0
        last = {"loss": float(host[-1]["loss"]), "examples_per_s": examples / max(dt, 1e-9)}
        writer.write(step_done, {"examples_per_s": last["examples_per_s"]}, prefix="perf/")
        bar.set_postfix(loss=f"{last['loss']:.4f}", ex_s=f"{last['examples_per_s']:.1f}")
        pending.clear()
        t0, examples = time.perf_counter(), 0

    def keep_last(step_done: int) -> dict[str, float]:  # no dev split: the last step's params are the final ones
        meta.update(best_step=step_done, best_metrics={})
        best_mngr.save(
            step_done,
            args=ocp.args.Composite(params=ocp.args.StandardSave(state.params), meta=ocp.args.JsonSave({})),
            force=True,
        )
        return {}

    def evaluate(step_done: int) -> dict[str, float]:
        if not config.data.eval_split:
            return keep_last(step_done) if step_done == total else {}
        metrics = task.evaluate(state.params)
        writer.write(step_done, metrics, prefix="dev/")
        main = metrics[task.main_metric]
        if is_main:
            bar.write(f"step {step_done}: dev " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
        if meta["best"] is None or main > meta["best"]:
            meta.update(best=main, best_step=step_done, best_metrics=metrics)
            best_mngr.save(
                step_done,
                args=ocp.args.Composite(params=ocp.args.StandardSave(state.params), meta=ocp.args.JsonSave(metrics)),
                force=True,
            )
        return metrics

    final: dict[str, float] = {}
    try:
        for epoch in range(start // spe, -(-total // spe)):
            first, end = max(start, epoch * spe), min(total, (epoch + 1) * spe)
            if first >= end:
                continue
            task.begin_epoch(epoch, state.params)
            for step, batch in prefetch(host_batches(task, epoch, first, end), config.data.prefetch):
                with jax.set_mesh(mesh):  # the mesh the encoders' kernels and constraints read (splash, DeBERTa)
                    state, metrics = step_fn(state, shard_batch(batch, mesh, task.replicated_keys), rng)
                pending.append((step, metrics))
                examples += int(batch["row_valid"].sum()) * jax.process_count()
                done = step + 1
                bar.update(1)
                save_now = done % max(config.checkpoint.every, 1) == 0
                if done % config.log.every == 0 or save_now or done % eval_every == 0 or done == total:
                    flush(done)
                if done % eval_every == 0 or done == total:
                    final = evaluate(done)
                if save_now or done == total:
                    e, i = divmod(done, spe)
                    _save(mngr, done, state, {**meta, "step": done, "epoch": e, "batch": i}, force=done == total)
        if start >= total and meta.get("best_metrics"):
            final = meta["best_metrics"]
    finally:
        bar.close()
        mngr.wait_until_finished()
        writer.close()

    best_params = finish = None
    if meta["best_step"] is not None:
        best_params = best_mngr.restore(
            meta["best_step"],
            args=ocp.args.Composite(params=ocp.args.StandardRestore(state.params), meta=ocp.args.JsonRestore()),
        ).params
        finish = task.finish(best_params, workdir, meta.get("best_metrics") or {})
    best_mngr.close()
    mngr.close()
    return TrainResult(
        workdir, max(start, total), meta.get("best_metrics") or {}, meta["best_step"], final, state.params,
        best_params, finish,
    )  # fmt: skip


def rng_impl(name: str) -> str:
    """`auto`: philox4x32 (cheaper dropout masks on CPU) on one device; threefry2x32 across
    devices or processes (XLA:CPU cannot lower philox bit generation in partitioned programs:
    "Unable to convert MHLO to StableHLO")."""
    if name == "auto":
        return "philox4x32" if jax.process_count() == 1 and jax.device_count() == 1 else "threefry2x32"
    return name
