"""`relik-jax aot --config=configs/aida_large.py --topology=v5e-256 [--find-max-batch] [--json FILE]`
(also `python -m relik_jax.aot`): compiles the config's training step and inference programs for a
TPU topology on this machine (no TPU needed: libtpu, the `tpu` extra) and prints, per chip, the
parameter and optimizer-state bytes, argument / output / temp / peak bytes against the chip's HBM,
FLOPs per step, the collectives in the program and the compile time. A config that does not fit
ends with one `error:` line and exit status 2. The work is `relik_jax.training.aot`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax
from absl import flags

from relik_jax.cli.train import _CONFIG  # the one --config flag (absl flags are global)
from relik_jax.cli.train import run as _run_flags
from relik_jax.core.errors import ConfigError
from relik_jax.training import aot
from relik_jax.training.config import validate

_TOPOLOGY = flags.DEFINE_list(
    "topology", None, "TPU slice(s): v5e-8, v5e-256, v4-32, v6e-8 ... or generation:shape (v5e:4x4, v4:2x2x4)"
)
_FIND = flags.DEFINE_bool("find_max_batch", False, "also find the largest global train batch that fits")
_INFERENCE = flags.DEFINE_bool("inference", True, "also compile the inference program (reader forward / queries)")
_JSON = flags.DEFINE_string("json", None, "write the reports as JSON to this file")


def main(argv) -> int:
    del argv
    config = _CONFIG.value
    if config is None or not _TOPOLOGY.value:
        raise ConfigError("--config and --topology are required, e.g. --config=configs/rebel.py --topology=v5e-4")
    name = Path(flags.FLAGS["config"].config_filename).stem
    rows, status = [], 0
    for topology in _TOPOLOGY.value:
        topo = aot.get_topology(topology)
        validate(config, devices=topo.chips, processes=1)
        report = aot.compile_config(config, topo, inference=_INFERENCE.value, config_name=name)
        print(aot.format_report(report), flush=True)
        row = report.to_json()
        if _FIND.value:
            best, tried = aot.find_max_batch(
                config, topo, start=report.programs[0].batch, config_name=name, known=report, progress=_progress
            )
            steps = ", ".join(f"{b}" + ("" if ok else " (no)") for b, ok, _ in tried)
            print(f"largest global train batch that fits: {best} (compiled: {steps})")
            row["max_batch"], row["max_batch_tried"] = best, tried
        rows.append(row)
        if line := aot.does_not_fit(report):
            print(line, file=sys.stderr)
            status = 2
        print()
    if _JSON.value:
        Path(_JSON.value).write_text(json.dumps({"environment": _environment(), "reports": rows}, indent=2) + "\n")
    return status


def _progress(batch: int, fits: bool, used: int) -> None:
    print(f"  search: global batch {batch} {'fits' if fits else 'does not fit'} "
          f"({aot.gib(used)} GiB per chip)", flush=True)  # fmt: skip


def _environment() -> dict:
    """Where it was compiled: the versions that decide the program, the host, the date."""
    import datetime  # only for --json
    import platform  # (same)
    from importlib.metadata import PackageNotFoundError, version  # (same)

    def v(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        **{p: v(p) for p in ("jax", "jaxlib", "libtpu", "flax", "relik_jax")},
    }  # fmt: skip


def run(argv: list[str] | None = None) -> None:
    """Parses the flags (`--find-max-batch` spelled either way) and compiles."""
    argv = list(sys.argv if argv is None else argv)
    argv = [a.replace("--find-max-batch", "--find_max_batch").replace("--no-inference", "--noinference") for a in argv]
    # compile-only TPU devices need no TPU backend: keep JAX on the CPU (no TPU probing, no libtpu warnings)
    if "JAX_PLATFORMS" not in os.environ:
        jax.config.update("jax_platforms", "cpu")
    _run_flags(argv, main)
