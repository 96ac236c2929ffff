"""XLA settings applied once, when `relik_jax` is imported, before JAX initialises its backends.

On XLA:CPU (jaxlib 0.10) the YNNPACK fusions of element-wise and reduction ops around matmuls
(LayerNorm, GELU, softmax) are slower than XLA's own loops: keeping YNNPACK for the dots only made
the MiniLM forward 10-20% faster at 8x128, 32x128 and 8x512 and the training step ~5% faster,
in fp32 and bf16 alike (README, "Encoder speed"). Switching YNNPACK off entirely loses the fast
bf16 matmuls. The flag is ignored by GPU/TPU compilers.

Set `RELIK_JAX_XLA_DEFAULTS=0` to leave `XLA_FLAGS` untouched; a flag the user already set wins.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

CPU_FLAGS: tuple[str, ...] = ("--xla_cpu_experimental_ynn_fusion_type=-eltwise,-reduce",)
_MIN_JAXLIB = (0, 10)


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
    extra = [f for f in CPU_FLAGS if f.split("=")[0] not in names]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()


def _backends_initialised() -> bool:
    try:
        from jax._src import xla_bridge  # only once JAX is imported: this module must not import it

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:  # private API moved: assume not initialised, setting the env var is harmless
        return False
