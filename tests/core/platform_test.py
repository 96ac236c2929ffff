"""The XLA flags set at import: chosen by the CPU (AMX or not), overridable, never on top of the user's."""

import json
import os
import subprocess
import sys

import pytest

from relik_jax.core import platform

SCRIPT = "import os, json, relik_jax; print(json.dumps(os.environ.get('XLA_FLAGS', '')))"


def _flags_after_import(**env) -> str:
    e = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "RELIK_JAX_XLA_DEFAULTS")}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=e, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_flag_follows_the_cpu():
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo on this system")
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    amx = "amx_bf16" in flags or "amx_int8" in flags
    assert platform.cpu_has_amx() == amx
    assert platform.cpu_flags() == (() if amx else platform.NO_AMX_FLAGS)
    assert _flags_after_import() == " ".join(platform.cpu_flags())


def test_opt_out_and_user_flags_win():
    assert _flags_after_import(RELIK_JAX_XLA_DEFAULTS="0") == ""
    mine = "--xla_cpu_experimental_ynn_fusion_type=-dot"
    assert _flags_after_import(XLA_FLAGS=mine) == mine
