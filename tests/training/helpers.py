"""Runs `python -m relik_jax.train` in subprocesses (fake devices, several processes) for the tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = "conll04.py:tiny"


def env(devices: int = 1, **extra: str) -> dict[str, str]:
    e = dict(os.environ)
    flags = [f for f in e.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    if devices > 1:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    e["XLA_FLAGS"] = " ".join(flags)
    e["JAX_PLATFORMS"] = "cpu"
    e.update(extra)
    return e


def train_cmd(workdir: Path, *args: str, config: str = TINY) -> list[str]:
    """The training command (config first, then the overrides); eval on 2 documents by default."""
    return [sys.executable, "-m", "relik_jax.train", f"--config={ROOT / 'configs' / config}",
            "--config.eval.max_docs=2", f"--workdir={workdir}", *args]  # fmt: skip


def run_train(
    workdir: Path, *args: str, devices: int = 1, timeout: int = 600, config: str = TINY
) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_cmd(workdir, *args, config=config), env=env(devices), capture_output=True, text=True,
        timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def losses(workdir: Path) -> dict[int, float]:
    out = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:
            out[row["step"]] = row["loss"]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]
