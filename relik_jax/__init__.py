"""relik_jax: ReLiK (retrieve, read and link) in JAX/Flax."""

from relik_jax import _platform

_platform.configure()

__version__ = "0.1.0"
