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


def test_bf16_dots_follow_the_cpu_unless_told(monkeypatch):
    """bf16 dots run as f32 dots of bf16-rounded operands only when tracing for a CPU without bf16 dot
    instructions (or when told), never for GPU / TPU; a bad setting is a clear error."""
    from relik_jax.core.errors import ConfigError

    monkeypatch.delenv(platform.BF16_DOTS_ENV, raising=False)
    monkeypatch.setattr(platform, "trace_platform", lambda: "cpu")
    for has, expected in ((True, False), (False, True), (None, False)):  # None: flags unreadable
        monkeypatch.setattr(platform, "cpu_has_bf16_dots", lambda has=has: has)
        assert platform.bf16_dots_in_f32() is expected, has
        monkeypatch.setenv(platform.BF16_DOTS_ENV, "native")
        assert platform.bf16_dots_in_f32() is False
        monkeypatch.setenv(platform.BF16_DOTS_ENV, "F32")
        assert platform.bf16_dots_in_f32() is True
        monkeypatch.delenv(platform.BF16_DOTS_ENV)
    monkeypatch.setattr(platform, "trace_platform", lambda: "tpu")
    monkeypatch.setenv(platform.BF16_DOTS_ENV, "f32")
    assert platform.bf16_dots_in_f32() is False
    monkeypatch.setenv(platform.BF16_DOTS_ENV, "fp16")
    with pytest.raises(ConfigError, match="RELIK_JAX_BF16_DOTS='fp16'"):
        platform.bf16_dots_in_f32()


def test_bf16_dot_instructions_are_read_from_the_flags(monkeypatch):
    for flags, has in ((["avx2", "fma"], False), (["avx512f", "avx512_bf16"], True), (["amx_bf16"], True),
                       (["fp", "asimd", "bf16"], True), ([], None)):  # fmt: skip
        monkeypatch.setattr(platform, "cpu_feature_flags", lambda flags=flags: frozenset(flags))
        assert platform.cpu_has_bf16_dots() is has, flags
        assert platform.cpu_has_amx() is ("amx_bf16" in flags)
