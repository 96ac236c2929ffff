"""relik_jax: ReLiK (retrieve, read and link) in JAX/Flax."""

from relik_jax import _platform

_platform.configure()

__version__ = "0.1.0"


def __getattr__(name: str):
    """`from relik_jax import Relik` without importing JAX at `import relik_jax` time."""
    if name == "Relik":
        from relik_jax.inference.relik import Relik

        return Relik
    raise AttributeError(f"module 'relik_jax' has no attribute {name!r}")
