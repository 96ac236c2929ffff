"""XLA settings applied once, when `relik_jax` is imported, before JAX initialises its backends.

On XLA:CPU (jaxlib 0.10) YNNPACK also fuses the element-wise and reduction ops around the matmuls
(LayerNorm, GELU, softmax). Whether that is faster than XLA's own loops depends on the CPU:

- without AMX (the machines the project was first tuned on, AVX-512 / AVX2): keeping YNNPACK for
  the dots only (`--xla_cpu_experimental_ynn_fusion_type=-eltwise,-reduce`) made the MiniLM forward
  10-20% faster at 8x128, 32x128 and 8x512 and the training step ~5% faster, fp32 and bf16 alike
  (README, "Encoder speed");
- with AMX (Intel Xeon, `amx_bf16` / `amx_int8` in /proc/cpuinfo), YNNPACK's own fusions are faster:
  MiniLM forward 4x512 fp32 349 -> 291 ms, bf16 231 -> 191, int8 262 -> 181, and attention alone
  (4x512, one layer, bf16) 21 -> 15 ms (2026-12-02, params on device, README "What makes them fast
  on CPU").

So the flag is set on CPUs without AMX only. Switching YNNPACK off entirely loses the fast bf16 and
int8 matmuls everywhere. The flag is ignored by GPU/TPU compilers.

Set `RELIK_JAX_XLA_DEFAULTS=0` to leave `XLA_FLAGS` untouched; a flag the user already set wins.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import sys

from relik_jax.core.errors import ConfigError

NO_AMX_FLAGS: tuple[str, ...] = ("--xla_cpu_experimental_ynn_fusion_type=-eltwise,-reduce",)
_MIN_JAXLIB = (0, 10)


@functools.cache
def cpu_feature_flags() -> frozenset[str]:
    """This CPU's feature flags (Linux /proc/cpuinfo: `flags` on x86, `Features` on Arm); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX matrix units (Linux: `amx_bf16` or `amx_int8` among the flags)."""
    return bool({"amx_bf16", "amx_int8"} & cpu_feature_flags())


def cpu_has_bf16_dots() -> bool | None:
    """Whether this CPU has bf16 dot-product instructions (x86: AVX-512 BF16 or AMX-BF16; Arm: BF16);
    None when the flags cannot be read (not Linux)."""
    flags = cpu_feature_flags()
    if not flags:
        return None
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)


BF16_DOTS_ENV = "RELIK_JAX_BF16_DOTS"
BF16_DOT_MODES = ("auto", "native", "f32")


def bf16_dots_in_f32() -> bool:
    """Whether a bf16 dot being traced should run as an f32 dot of the bf16-rounded operands.

    XLA:CPU runs bf16 x bf16 -> f32 dots in YNNPACK's bf16 kernels. On a CPU without bf16 dot
    instructions (AVX2-only x86 such as AMD Zen 3) those are slower than its f32 dots (AMD EPYC
    Zen 3, 2 cores, 2026-12-03: 1024x384x1536 14.5 ms against 7.8 in f32 and 9.6 as an f32 dot of
    the bf16-rounded operands), so there the bf16 compute path rounds its operands to bf16 and runs
    the dot in f32: the same products (a product of two bf16 values is exact in f32) and f32
    accumulation as the bf16 kernel, so the same results up to summation order, on every CPU.
    `RELIK_JAX_BF16_DOTS=native` keeps the bf16 kernels, `=f32` forces the f32 dots, `auto` (the
    default) decides by the CPU's flags. Only when tracing for CPU: GPU / TPU keep bf16 dots."""
    mode = os.environ.get(BF16_DOTS_ENV, "auto").strip().lower() or "auto"
    if mode not in BF16_DOT_MODES:
        raise ConfigError(f"{BF16_DOTS_ENV}={mode!r}: expected one of {', '.join(BF16_DOT_MODES)}")
    if mode == "native" or trace_platform() != "cpu":
        return False
    return mode == "f32" or cpu_has_bf16_dots() is False


def cpu_flags() -> tuple[str, ...]:
    """The XLA flags `configure` adds on this CPU."""
    return () if cpu_has_amx() else NO_AMX_FLAGS


def _jaxlib_version() -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in importlib.metadata.version("jaxlib").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return (0, 0)


def configure() -> None:
    """Adds our default XLA flags unless the user set them or `RELIK_JAX_XLA_DEFAULTS=0`."""
    if os.environ.get("RELIK_JAX_XLA_DEFAULTS", "1") == "0" or _jaxlib_version() < _MIN_JAXLIB:
        return
    if "jax" in sys.modules and _backends_initialised():
        return  # too late to change flags; JAX already compiled with its own.
    current = os.environ.get("XLA_FLAGS", "")
    names = {f.split("=")[0] for f in current.split()}
    extra = [f for f in cpu_flags() if f.split("=")[0] not in names]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()


def _backends_initialised() -> bool:
    try:
        from jax._src import xla_bridge  # only once JAX is imported: this module must not import it

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:  # private API moved: assume not initialised, setting the env var is harmless
        return False


def trace_platform() -> str:
    """The platform the program being traced will be compiled for: that of the mesh in context
    (`python -m relik_jax.aot` traces for a TPU topology on this CPU under a TPU mesh), else JAX's
    default backend."""
    import jax  # at call time: importing this module must not initialise JAX

    device = jax.sharding.get_abstract_mesh().abstract_device
    return device.platform if device is not None else jax.default_backend()
