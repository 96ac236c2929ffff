"""Training runs for the tests: in-process (`relik_jax.training.run.train`) and, where the test needs
fake devices, several processes or a kill, `python -m relik_jax.train` in subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from relik_jax.training.config import load
from relik_jax.training.loop import TrainResult
from relik_jax.training.run import train

ROOT = Path(__file__).resolve().parents[2]
TINY = "conll04.py:tiny"
EVAL_DOCS = "eval.max_docs=2"  # every test run evaluates on 2 documents


def config(*overrides: str, name: str = TINY):
    """`configs/<name>` with `key=value` overrides, parsed as the command line parses `--config.key=value`."""
    return load(ROOT / "configs" / name, (EVAL_DOCS, *overrides))


def train_here(workdir: Path, *overrides: str, name: str = TINY) -> TrainResult:
    """One in-process run of `configs/<name>` with the overrides."""
    return train(config(*overrides, name=name), workdir, name=name)


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
            f"--config.{EVAL_DOCS}", f"--workdir={workdir}", *args]  # fmt: skip


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


def train_in_subprocess(runs: list[tuple[Path, list[str]]], devices: int, timeout: int = 900) -> None:
    """Several in-process runs (`train_here(workdir, *overrides)`) in one fresh process with `devices`
    fake CPU devices (the device count is fixed when JAX starts)."""
    code = (
        "import json, sys\nfrom pathlib import Path\nfrom tests.training.helpers import train_here\n"
        "for workdir, overrides in json.loads(sys.argv[1]):\n    train_here(Path(workdir), *overrides)\n"
    )
    spec = json.dumps([[str(w), list(o)] for w, o in runs])
    proc = subprocess.run(
        [sys.executable, "-c", code, spec], env=env(devices, PYTHONPATH=str(ROOT)), capture_output=True,
        text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"training in a subprocess failed ({devices} devices):\n{proc.stderr[-4000:]}")


def write_small_encoder(folder: Path) -> Path:
    """A 2-layer, 64-wide BERT with random weights and MiniLM's tokenizer: it compiles in a fraction
    of MiniLM's time, for the tests that compare runs with each other (losses, resume), not learning."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from relik_jax.core.assets import default_encoder_path
    from relik_jax.encoders import EncoderConfig, build_encoder
    from relik_jax.encoders.hf import save_encoder

    src = default_encoder_path()
    hf = json.loads((src / "config.json").read_text())
    hf.update(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128)
    config = EncoderConfig.from_hf(hf)
    params = build_encoder(config).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    return save_encoder(folder, config, nn.unbox(params), tokenizer_from=src)
