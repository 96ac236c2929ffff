"""Building blocks shared by the encoders: dense, layer norm, embeddings, activations.

Every parameter carries logical axis names (`vocab`, `embed`, `heads`, `mlp`, ...) so that a mesh
rule list can shard it later. `dtype` is the compute dtype of matmul operands; accumulation and all
element-wise work stay in float32 (the fastest formulation measured on XLA:CPU: README, "What makes them fast on CPU").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from relik_jax.core.errors import ConfigError
from relik_jax.encoders import attention as attn
from relik_jax.encoders.config import REMAT_POLICIES, EncoderConfig
from relik_jax.encoders.dropout import Dropout

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


def matmul(x: jax.Array, w: jax.Array, dtype: Dtype) -> jax.Array:
    """`x @ w` (contracting the last axis of `x` with the first of `w`) with operands cast to `dtype`
    and float32 accumulation/output.

    In bfloat16 the backward is our own (`_low_precision_matmul`): JAX's transpose of a dot with an
    f32 result gives f32 cotangent dots, and the weight gradient contracts the batch axis of both
    operands, a layout YNNPACK does not take, so XLA:CPU ran every backward dot as an f32 Eigen dot
    (`relik_jax.core.hlo.dot_census` of the train step; ~2x slower than the forward's)."""
    if isinstance(w, jax.Array) and jnp.dtype(dtype) == jnp.bfloat16 and jnp.issubdtype(w.dtype, jnp.floating):
        return _low_precision_matmul(x, w)
    return _dot(attn.dot_operand(_cast(x, dtype), dtype), attn.dot_operand(_cast(w, dtype), dtype))


def _dot(x: jax.Array, w: jax.Array) -> jax.Array:
    return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32)


def transpose_2d(a: jax.Array) -> jax.Array:
    """`a.T` of a 2-D array, written so that XLA moves the data: a plain transpose feeding a dot is
    folded into the dot's dimension numbers, and YNNPACK takes no dot that contracts the leading
    axes (the weight gradient `x.T @ g`), so it ran in Eigen in f32. Through a reshape the
    transpose is a real copy, and the dot a row-major bf16 one YNNPACK runs (measured: 4096x384
    activations against 4096x1536 cotangents, 9.6 ms instead of 15.6)."""
    m, k = a.shape
    split = next((s for s in (8, 4, 2) if m % s == 0), 1)
    return a.reshape(m // split, split, k).transpose(2, 0, 1).reshape(k, m)


@jax.custom_vjp
def _low_precision_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    return _dot(_bf16_operand(x), _bf16_operand(w))


def _bf16_operand(a: jax.Array) -> jax.Array:
    return attn.dot_operand(a, jnp.bfloat16)


def _lp_fwd(x, w):
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    # residuals in bf16 (half the activation memory); the zero-size arrays carry the input dtypes
    return _dot(_bf16_operand(xb), _bf16_operand(wb)), (xb, wb, jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))


def _lp_bwd(res, g):
    xb, wb, x_like, w_like = res
    gb = _bf16_operand(g)
    # dx = g @ w.T: contracts the last axes of both (an NT dot YNNPACK takes)
    dx = jax.lax.dot_general(
        gb, _bf16_operand(wb), (((g.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.float32
    )
    k, n = wb.shape
    dw = jax.lax.dot_general(
        _bf16_operand(transpose_2d(xb.reshape(-1, k))),
        gb.reshape(-1, n),
        (((1,), (0,)), ((), ())),
        preferred_element_type=jnp.float32,
    )
    return dx.astype(x_like.dtype), dw.astype(w_like.dtype)


_low_precision_matmul.defvjp(_lp_fwd, _lp_bwd)


def _cast(a: Any, dtype: Dtype) -> Any:
    """`a` in `dtype`, leaving alone what is already there and what is not an array (a weight
    quantized by qwix, which its int8 dot reads as it is)."""
    if not isinstance(a, jax.Array) or a.dtype == dtype:
        return a
    return a.astype(dtype)


_LAYER_KERNEL = re.compile(r"(^|/)encoder/layer_\d+/(.*/)?kernel$")


def layer_kernels_in(params: Any, dtype: Dtype) -> Any:
    """`params` with the matmul kernels of the transformer layers (`.../encoder/layer_N/.../kernel`)
    stored in `dtype`, for inference at that compute dtype: each bf16 dense layer casts its float32
    kernel at every call otherwise (10.6 M values per MiniLM forward; bf16 1x128 14.2 -> 10.8 ms,
    8x128 63.3 -> 57.2, 4x512 193 -> 184 on an AMX Xeon, params on device), and
    the cast of a cast is the same value, so outputs are bitwise unchanged. Embeddings, LayerNorms,
    biases and everything outside the layers (heads, poolers) stay as they are; so do weights qwix
    quantized."""
    flat = traverse_util.flatten_dict(params, sep="/")
    out = {
        k: v.astype(dtype)
        if _LAYER_KERNEL.search(k) and isinstance(v, jax.Array) and jnp.issubdtype(v.dtype, jnp.floating)
        else v
        for k, v in flat.items()
    }
    return traverse_util.unflatten_dict(out, sep="/")


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
    # bf16 dots run as f32 ones on a CPU without bf16 instructions: block as in fp32 there
    low = jnp.dtype(dtype) != jnp.float32 and not (jnp.dtype(dtype) == jnp.bfloat16 and attn.bf16_dots_in_f32())
    return attn.attention_block_for_backend(b, length, num_heads, training=not deterministic, low_precision=low)


def remat_layer(layer_cls: type[nn.Module], policy: str, static_argnums: tuple[int, ...]) -> type[nn.Module]:
    """`layer_cls` recomputed in the backward pass (`jax.checkpoint` per layer): `layer` keeps
    nothing of its forward, `dots_saveable` keeps the matmul outputs; `none` is `layer_cls` itself.
    `static_argnums` count `self` as 0 (flax's convention)."""
    if policy == "none":
        return layer_cls
    if policy not in REMAT_POLICIES:
        raise ConfigError(f"unknown remat policy {policy!r} ({' | '.join(REMAT_POLICIES)})")
    saved = jax.checkpoint_policies.dots_saveable if policy == "dots_saveable" else None
    return nn.remat(layer_cls, policy=saved, static_argnums=static_argnums)


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


class Encoder(EncoderModule):
    """The call every encoder answers: `input_ids [B, L]` (+ masks) → `EncoderOutput`; a subclass
    gives its `layers` (embeddings + stack, named as the Hugging Face model names them)."""

    with_pooler: bool = False

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        *,
        deterministic: bool = True,
        output_hidden_states: bool = False,
        attention_block: int | None = None,
    ) -> EncoderOutput:
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        c = self.config
        fused = attn.resolve_implementation(c.attention, relative=c.relative_attention) != "blocked"
        if fused and attention_block is None:
            attention_block = 0  # one fused computation (DeBERTa's own attention; BERT calls the kernel)
        block = resolve_block(attention_block, input_ids, c.num_heads, deterministic, self.dtype)
        hidden, pooled = self.layers(input_ids, attention_mask, token_type_ids, block, deterministic)
        return EncoderOutput(hidden[-1], tuple(hidden) if output_hidden_states else None, pooled)

    def layers(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        token_type_ids: jax.Array,
        block: int,
        deterministic: bool,
    ) -> tuple[list[jax.Array], jax.Array | None]:
        """`(hidden states: embeddings then every layer, pooled output or None)`."""
        raise NotImplementedError
