"""Run a Python snippet in a fresh process with N fake CPU devices; it prints one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_with_devices(code: str, devices: int, timeout: int = 900, env: dict | None = None) -> dict:
    full_env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "PYTHONPATH": str(REPO),
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO
    )
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({devices} devices):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
