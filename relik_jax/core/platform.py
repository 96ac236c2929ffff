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

NO_AMX_FLAGS: tuple[str, ...] = ("--xla_cpu_experimental_ynn_fusion_type=-eltwise,-reduce",)
_MIN_JAXLIB = (0, 10)


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX matrix units (Linux: `amx_bf16` or `amx_int8` among the flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "amx_int8"} & flags)
    except OSError:
        pass
    return False


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
