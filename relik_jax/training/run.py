"""One training run, from a config to its report: what `python -m relik_jax.train` does, callable
from a Colab cell or a test (`train(config, workdir)`).

Distributed initialisation (when the config asks), the persistent compilation cache, the sample
data when no `data.dir` is given, the config check, the task, the loop, and the report (the best
checkpoint's metrics table and where everything went, printed by process 0).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax

from relik_jax.core.errors import ConfigError
from relik_jax.data.tfds_builders import DATASETS
from relik_jax.training.config import TASKS, use_sample, validate
from relik_jax.training.loop import TrainResult, train_and_evaluate
from relik_jax.training.task import Task


def init_distributed(config: Any) -> None:
    """`jax.distributed.initialize` when the config asks for it (before anything touches devices)."""
    d = config.distributed
    if not d.initialize:
        return
    kwargs = {}
    if d.coordinator:
        kwargs = {"coordinator_address": d.coordinator, "num_processes": d.num_processes, "process_id": d.process_id}
        if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS", "") == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)


def use_sample_when_no_data(config: Any) -> str | None:
    """With no `data.dir`, a real dataset is replaced by the bundled sample of the same task; returns
    the replaced dataset's name."""
    spec = DATASETS.get(config.data.dataset)
    if config.data.dir or (spec is not None and spec.sample):
        return None
    real = config.data.dataset
    with config.unlocked():
        use_sample(config)
    return real


def make_task(config: Any) -> Task:
    """The task `config.kind` names (the config has passed `validate`)."""
    return TASKS[config.kind](config)


def format_table(rows: dict[str, dict[str, float]]) -> str:
    keys = sorted({k for r in rows.values() for k in r})
    if not keys:
        return "(no split evaluated: data.eval_split and data.test_split are empty, or gave no metric)"
    out = ["| split | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for split, r in rows.items():
        out.append(f"| {split} | " + " | ".join(f"{100 * r[k]:.2f}" if k in r else "" for k in keys) + " |")
    return "\n".join(out)


def train(config: Any, workdir: str | Path | None = None, *, name: str = "run") -> TrainResult:
    """Trains `config` in `workdir` (default `runs/<name>`), resuming from its last checkpoint, and
    prints the report."""
    init_distributed(config)
    if config.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(config.compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    is_main = jax.process_index() == 0
    real = use_sample_when_no_data(config)
    if real and is_main:
        print(
            f"no data.dir given: training on the bundled {config.data.dataset} sample instead of {real!r} "
            f"(pass --config.data.dir=FOLDER for the real data)",
            flush=True,
        )
    validate(config)
    workdir = workdir or os.path.join("runs", name)
    if "://" in str(workdir):
        raise ConfigError(
            f"--workdir={workdir}: relik_jax writes its metrics, exports and bundles with local file APIs; mount the "
            "bucket on every host (gcsfuse, e.g. /gcs/BUCKET/runs/x: tpu/README.md) and pass that path"
        )
    if is_main:
        print(f"workdir: {os.path.abspath(workdir)}; {jax.device_count()} devices, {jax.process_count()} processes",
              flush=True)  # fmt: skip
    train_retriever_first(config, Path(workdir), is_main)
    task = make_task(config)
    result = train_and_evaluate(config, workdir, task)
    if is_main:
        print(report(result, task))
        write_results(result, task)
    return result


def write_results(result: TrainResult, task: Task) -> Path:
    """WORKDIR/results.json: the best step, its metric and the report's rows (dev, tuned, test)."""
    finish = result.finish
    payload = {
        "best_step": result.best_step,
        "main_metric": task.main_metric,
        "rows": finish.rows if finish else {},
        "exports": {k: str(v) for k, v in (finish.exports if finish else {}).items()},
    }
    path = Path(result.workdir) / "results.json"
    tmp = path.with_name("results.json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def retriever_stage(config: Any) -> Any:
    """The config of the retriever that `reader.retriever = "train"` fine-tunes before the reader: the
    same data, encoder and seed; the retriever section's epochs / steps / batch size / learning rate."""
    c = config.copy_and_resolve_references()
    r = c.retriever
    with c.unlocked():
        c.kind, c.init_from, c.export = "retriever", "", True
        c.train.epochs, c.train.steps, c.train.batch_size = r.epochs, r.steps, r.batch_size
        c.optim.learning_rate, c.optim.head_learning_rate = r.learning_rate, 0.0
        c.data.test_split = ""  # the reader reports the test figures, end to end
    return c


def train_retriever_first(config: Any, workdir: Path, is_main: bool) -> None:
    """`reader.retriever = "train"` (reader, joint): trains the retriever in WORKDIR/retriever (resumed like any run,
    skipped when its export exists) and points `reader.retriever` at its export."""
    if config.kind not in ("reader", "joint") or config.reader.retriever != "train":
        return
    export = workdir / "retriever" / "export"
    if not (export / "retriever.json").is_file():
        stage = retriever_stage(config)
        validate(stage)
        if is_main:
            print(f"stage 1/2: the retriever, in {workdir / 'retriever'}", flush=True)
        task = make_task(stage)
        result = train_and_evaluate(stage, workdir / "retriever", task)
        if is_main:
            print(report(result, task) + "\nstage 2/2: the reader on its candidates", flush=True)
    with config.unlocked():
        config.reader.retriever = str(export)


def report(result: TrainResult, task: Task) -> str:
    """The best checkpoint's metrics (dev, tuned, test) and where the checkpoints, metrics and exports went."""
    rows = result.finish.rows if result.finish else {}
    exports = dict(result.finish.exports) if result.finish else {}
    w = result.workdir
    lines = [
        f"\nbest checkpoint: step {result.best_step} ({task.main_metric}; metrics in %)"
        if result.best
        else f"\nfinal checkpoint: step {result.best_step} (no dev split: the last step; metrics in %)",
        format_table(rows),
        f"\ncheckpoints: {w / 'checkpoints'}  best: {w / 'best'}",
        f"metrics: {w / 'metrics.jsonl'}  tensorboard: {w / 'tensorboard'}",
    ]
    bundle = exports.pop("bundle", None)
    lines += [f"exported {what}: {path}" for what, path in exports.items()]
    if bundle:
        lines.append(
            f"inference bundle: {bundle}  (Relik.from_pretrained / python -m relik_jax.annotate {bundle} IN OUT)"
        )
    return "\n".join(lines)
