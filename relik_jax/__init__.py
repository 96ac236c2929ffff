"""relik_jax: ReLiK (retrieve, read and link) in JAX/Flax.

from relik_jax import Relik
relik = Relik.from_pretrained("runs/rebel")
"""

from relik_jax.core import platform

platform.configure()  # XLA flags must be set before JAX initialises its backends

from relik_jax.inference.relik import Relik  # noqa: E402
from relik_jax.reader.html import write_html  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Relik", "__version__", "write_html"]
