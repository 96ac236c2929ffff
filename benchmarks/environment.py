"""What every benchmark's JSON records beside its rows: the machine (CPU model, cores, load) and the
versions of what was measured, so that a ratio is read where it was measured."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

PACKAGES = ("relik_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "qwix", "transformers", "torch", "scann")
# the CPU features XLA:CPU's and PyTorch's kernels choose by (bf16 / int8 matrix instructions)
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu() -> dict[str, Any]:
    """Model name, family / model / stepping and whether AMX is there, from /proc/cpuinfo (Linux)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model", "stepping", "flags") and key not in info:
                info[key] = value.strip()
            if not line.strip() and info:
                break
    except OSError:
        return {"model_name": platform.processor() or platform.machine()}
    flags = info.pop("flags", "").split()
    return {
        "model_name": info.get("model name"),
        "family_model_stepping": [info.get("cpu family"), info.get("model"), info.get("stepping")],
        "amx": any(f.startswith("amx") for f in flags),
        "avx512": any(f.startswith("avx512") for f in flags),
        "kernel_flags": [f for f in KERNEL_FLAGS if f in flags],
    }


def environment() -> dict[str, Any]:
    """The machine and versions now (call it when the benchmark starts)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu(),
        "cores": os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        # relik_jax's CPU switches (core.platform): XLA flag defaults, bf16 dots (auto: by `kernel_flags`)
        "relik_jax_env": {
            k: os.environ.get(k, d) for k, d in (("RELIK_JAX_XLA_DEFAULTS", "1"), ("RELIK_JAX_BF16_DOTS", "auto"))
        },
        "versions": versions,
    }


def write_json(path: str | Path, rows: list[dict[str, Any]], env: dict[str, Any]) -> None:
    """`{"environment": env (+ the load at the end), "rows": rows}`."""
    env = {**env, "load_average_at_end": round(os.getloadavg()[0], 2)}
    Path(path).write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
