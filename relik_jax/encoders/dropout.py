"""Dropout with explicit keys and a keep-mask that forward and backward read once."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from relik_jax.core.platform import trace_platform


def _keep_threshold(rate: float) -> int:
    return round(rate * 65536)


def dropout_mask(rng: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """Boolean keep-mask with P(keep) = 1 - round(rate * 2^16) / 2^16, materialised once.

    Each element draws 16 random bits (half the generator work of a float uniform). XLA fuses
    the bit generation into every consumer of the mask and then recomputes it in each backward
    fusion (three times per dropout on XLA:CPU; `optimization_barrier` is stripped before fusion).
    A conditional is a fusion boundary: drawing the mask inside one makes it a single buffer that
    the forward and the backward read. That is an XLA:CPU choice: elsewhere the mask is drawn where
    it is used (XLA:GPU's conditional copies its predicate to the host; libtpu 0.0.42.1 segfaulted
    compiling the conditional for v6e inside DeBERTa's per-shard attention under per-layer
    rematerialisation and bf16).
    """
    size = int(np.prod(shape))

    def draw(key):
        words = jax.random.bits(key, ((size + 1) // 2,), jnp.uint32)
        halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:size]
        return (halves >= np.uint16(_keep_threshold(rate))).reshape(shape)

    if trace_platform() != "cpu":
        return draw(rng)
    data = jax.random.key_data(rng).reshape(-1)
    always = data[0] != data[0] + 1  # true for every uint32, but not provable at compile time
    return jax.lax.cond(always, draw, lambda key: jnp.ones(shape, bool), rng)


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Inverted dropout with an explicit key (identity when `rng` is None or `rate` is 0)."""
    if rng is None or rate <= 0.0:
        return x
    scale = np.float32(65536.0 / (65536 - _keep_threshold(rate)))  # 1 / P(keep), exactly
    return jnp.where(dropout_mask(rng, rate, x.shape), x * scale, 0.0)


class Dropout(nn.Module):
    """`dropout` drawing its key from the module's `"dropout"` RNG stream."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or self.rate <= 0.0:
            return x
        return dropout(x, self.rate, self.make_rng("dropout"))
