"""`python -m relik_jax.train --config=configs/rebel.py [--workdir=DIR] [--config.x=y ...]`

Trains what the config describes (see `relik_jax/training/config.py` for every key), resuming from
WORKDIR's last checkpoint when there is one, then prints the dev (and test) metrics of the best
checkpoint and where the checkpoints, metrics and exported reader went. With no `data.dir`, a
config trains on the sample shipped in the package and says so first.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

log = logging.getLogger("relik_jax.train")
_CONFIG = config_flags.DEFINE_config_file("config", None, "an ml_collections config file (configs/*.py[:variant])")
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, metrics and the export go here (default: runs/<config>)")


def init_distributed(config) -> None:
    """`jax.distributed.initialize` when the config asks for it (before anything touches devices)."""
    d = config.distributed
    if not d.initialize:
        return
    import jax

    kwargs = {}
    if d.coordinator:
        kwargs = {"coordinator_address": d.coordinator, "num_processes": d.num_processes, "process_id": d.process_id}
        if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS", "") == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)


def use_sample_when_no_data(config) -> str | None:
    """With no `data.dir`, a real dataset is replaced by the bundled sample of the same task."""
    from relik_jax.data.tfds_builders import DATASETS
    from relik_jax.training.config import use_sample

    spec = DATASETS.get(config.data.dataset)
    if config.data.dir or (spec is not None and spec.sample):
        return None
    real = config.data.dataset
    with config.unlocked():
        use_sample(config)
    return real


def format_table(rows: dict[str, dict[str, float]]) -> str:
    keys = sorted({k for r in rows.values() for k in r})
    out = ["| split | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for split, r in rows.items():
        out.append(f"| {split} | " + " | ".join(f"{100 * r[k]:.2f}" if k in r else "" for k in keys) + " |")
    return "\n".join(out)


def main(argv) -> int:
    del argv
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/rebel.py")
    init_distributed(config)
    import jax

    if config.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(config.compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

    from relik_jax.training.loop import make_task, train_and_evaluate

    real = use_sample_when_no_data(config)
    if real and jax.process_index() == 0:
        print(
            f"no data.dir given: training on the bundled {config.data.dataset} sample instead of {real!r} "
            f"(pass --config.data.dir=FOLDER for the real data)",
            flush=True,
        )
    name = os.path.splitext(os.path.basename(flags.FLAGS["config"].config_filename))[0]
    workdir = _WORKDIR.value or os.path.join("runs", name)
    if jax.process_index() == 0:
        print(f"workdir: {os.path.abspath(workdir)}; {jax.device_count()} devices, {jax.process_count()} processes",
              flush=True)  # fmt: skip
    task = make_task(config)
    result = train_and_evaluate(config, workdir, task=task)
    rows = {config.data.eval_split: result.best}
    threshold = None
    best_params = result.best_params
    if (
        best_params is not None
        and config.eval.tune_threshold
        and hasattr(task, "tune_threshold")
        and task.task != "span"
    ):
        threshold, sweep = task.tune_threshold(best_params, config.eval.threshold_grid)
        rows[f"{config.data.eval_split} (threshold {threshold:g})"] = task.evaluate(best_params, threshold=threshold)
        if jax.process_index() == 0:
            print("relation threshold on dev: " + ", ".join(f"{t:g}: {100 * f:.2f}" for t, f in sweep))
            if result.export:
                task.export(best_params, result.export, threshold=threshold)
    bundle = None
    if best_params is not None and config.export and jax.process_index() == 0 and hasattr(task, "export_bundle"):
        bundle = task.export_bundle(best_params, result.workdir / "bundle", threshold=threshold)
    if best_params is not None and config.data.test_split:
        from relik_jax.data.tfds_builders import source_files

        if config.data.test_split in source_files(config.data.dataset, config.data.dir or None, []):
            name = config.data.test_split + (f" (threshold {threshold:g})" if threshold is not None else "")
            rows[name] = task.evaluate(best_params, split=config.data.test_split, threshold=threshold)
    if jax.process_index() == 0:
        print(f"\nbest checkpoint: step {result.best_step} ({task.main_metric}; metrics in %)")
        print(format_table(rows))
        print(f"\ncheckpoints: {result.workdir / 'checkpoints'}  best: {result.workdir / 'best'}")
        print(f"metrics: {result.workdir / 'metrics.jsonl'}  tensorboard: {result.workdir / 'tensorboard'}")
        if result.export:
            print(f"exported reader: {result.export}")
        if bundle:
            print(f"inference bundle: {bundle}  (Relik.from_pretrained / python -m relik_jax.annotate {bundle} IN OUT)")
    return 0


def run() -> None:
    from relik_jax.errors import RelikJaxError

    def wrapped(argv):
        logging.getLogger("absl").setLevel(logging.WARNING)
        try:
            return main(argv)
        except RelikJaxError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
            text = str(e).strip("\"'")
            if isinstance(e, (AttributeError, KeyError)):
                text = f"unknown config key {text!r} (the config is locked: only its own keys can be set)"
            print(f"error: {text}", file=sys.stderr)
            sys.exit(2)

    app.run(wrapped, flags_parser=parse)


if __name__ == "__main__":
    run()
