"""Building blocks shared by the encoders: dense, layer norm, embeddings, activations.

Every parameter carries logical axis names (`vocab`, `embed`, `heads`, `mlp`, ...) so that a mesh
rule list can shard it later. `dtype` is the compute dtype of matmul operands; accumulation and all
element-wise work stay in float32 (the fastest formulation measured on XLA:CPU, see PERF.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from relik_jax.models.encoders import attention as attn
from relik_jax.models.encoders.config import EncoderConfig

Dtype = Any
Initializer = Callable[..., jax.Array]


def gelu_erf(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, written with `erf`: XLA:CPU evaluates it ~2.5x faster than `jax.nn.gelu`'s
    `erfc` form (same values to 1e-6)."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * np.float32(1.0 / np.sqrt(2.0))))


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": gelu_erf,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


def _keep_threshold(rate: float) -> int:
    return round(rate * 65536)


def dropout_mask(rng: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """Boolean keep-mask with P(keep) = 1 - round(rate * 2^16) / 2^16, materialised once.

    Each element draws 16 random bits (half the generator work of a float uniform). XLA fuses
    the bit generation into every consumer of the mask and then recomputes it in each backward
    fusion (three times per dropout on XLA:CPU; `optimization_barrier` is stripped before fusion).
    A conditional is a fusion boundary: drawing the mask inside one makes it a single buffer that
    the forward and the backward read.
    """
    size = int(np.prod(shape))

    def draw(key):
        words = jax.random.bits(key, ((size + 1) // 2,), jnp.uint32)
        halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:size]
        return (halves >= np.uint16(_keep_threshold(rate))).reshape(shape)

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


def matmul(x: jax.Array, w: jax.Array, dtype: Dtype, contract: tuple[int, int] = (-1, 0)) -> jax.Array:
    """`x @ w` with operands cast to `dtype` and float32 accumulation/output."""
    lhs, rhs = contract
    lhs %= x.ndim
    rhs %= w.ndim
    return jax.lax.dot_general(
        x.astype(dtype),
        w.astype(dtype),
        (((lhs,), (rhs,)), ((), ())),
        preferred_element_type=jnp.float32,
    )


class Dense(nn.Module):
    """Linear layer `y = x W + b`, kernel `[in, out]` named by `axes`."""

    features: int
    axes: tuple[str | None, str | None]
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(self.kernel_init, self.axes),
            (x.shape[-1], self.features),
            self.param_dtype,
        )
        y = matmul(x, kernel, self.dtype)
        if self.use_bias:
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(nn.initializers.zeros, (self.axes[1],)),
                (self.features,),
                self.param_dtype,
            )
            y = y + bias.astype(jnp.float32)
        return y


def mean_pool(hidden_BLH: jax.Array, mask_BL: jax.Array) -> jax.Array:
    """Mean over real tokens (count clamped ≥ 1e-9, as sentence-transformers / GoldenRetriever)."""
    m = mask_BL.astype(hidden_BLH.dtype)[..., None]
    return (hidden_BLH * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)


def layer_norm(
    eps: float, axis_name: str | None = "embed", param_dtype: Dtype = jnp.float32, name: str | None = None
) -> nn.LayerNorm:
    """A float32 LayerNorm with an exact two-pass variance, as PyTorch computes it."""
    return nn.LayerNorm(
        epsilon=eps,
        dtype=jnp.float32,
        param_dtype=param_dtype,
        use_fast_variance=False,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, (axis_name,)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axis_name,)),
        name=name,
    )


def embed(
    num: int, features: int, axes: tuple[str | None, str | None], init_std: float, param_dtype: Dtype, name: str
) -> nn.Embed:
    """An embedding table `[num, features]` named by `axes`; lookups return float32."""
    return nn.Embed(
        num,
        features,
        dtype=jnp.float32,
        param_dtype=param_dtype,
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(init_std), axes),
        name=name,
    )


@flax.struct.dataclass
class EncoderOutput:
    """`last_hidden_state [B, L, H]` float32; `hidden_states` = embeddings + every layer (if asked)."""

    last_hidden_state: jax.Array
    hidden_states: tuple[jax.Array, ...] | None = None
    pooled: jax.Array | None = None


def resolve_block(block: int | None, input_ids: jax.Array, num_heads: int, deterministic: bool, dtype: Dtype) -> int:
    """The attention block to use: the caller's, or the one measured best for this shape/backend."""
    if block is not None:
        return block
    b, length = input_ids.shape
    return attn.attention_block_for_backend(
        b, length, num_heads, training=not deterministic, low_precision=jnp.dtype(dtype) != jnp.float32
    )


class EncoderModule(nn.Module):
    """Base of every encoder sub-module: architecture, compute dtype, parameter dtype."""

    config: EncoderConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def dense(self, features: int, axes: tuple[str | None, str | None], name: str, use_bias: bool = True) -> Dense:
        return Dense(
            features,
            axes,
            use_bias=use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.normal(self.config.initializer_range),
            name=name,
        )

    def norm(self, name: str = "LayerNorm") -> nn.LayerNorm:
        return layer_norm(self.config.layer_norm_eps, param_dtype=self.param_dtype, name=name)


class AddNorm(EncoderModule):
    """`LayerNorm(residual + dropout(dense(x)))`, HF's `*SelfOutput` / `*Output`."""

    in_axis: str = "heads"

    @nn.compact
    def __call__(self, x, residual, deterministic: bool):
        h = self.dense(self.config.hidden_size, (self.in_axis, "embed"), "dense")(x)
        h = Dropout(self.config.hidden_dropout)(h, deterministic=deterministic)
        return self.norm()(h + residual)


class Intermediate(EncoderModule):
    @nn.compact
    def __call__(self, x):
        h = self.dense(self.config.intermediate_size, ("embed", "mlp"), "dense")(x)
        return ACTIVATIONS[self.config.hidden_act](h)
