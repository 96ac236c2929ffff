"""The Reader's heads, with the official parameter shapes (names mapped in `convert/official.py`).

- `ProjectionHead`: dropout → Linear(in→hidden) → activation → dropout → Linear(hidden→out)
  [→ LayerNorm]; the official `torch.nn.Sequential` indices 1, 4, 5 are `in_proj`, `out_proj`,
  `LayerNorm`.
- `EndHead`: the start-conditioned end scorer (HF's `PoolerEndLogits`): for a start `s` and every
  position `i`, `Linear(2H→H)([h_i; h_s]) → tanh → LayerNorm → Linear(H→1|2)`. Computed as
  `h_i·W_a + h_s·W_b + b`, so the `[starts, L, 2H]` concatenation is never built.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relik_jax.encoders.attention import constrain_batch
from relik_jax.encoders.dropout import Dropout
from relik_jax.encoders.layers import ACTIVATIONS, Dense, layer_norm, matmul

Dtype = Any
HEAD_DROPOUT = 0.1  # the official heads' dropout before each linear


class ProjectionHead(nn.Module):
    hidden: int
    out: int
    activation: str = "gelu"
    with_layer_norm: bool = True
    layer_norm_eps: float = 1e-12
    dropout: float = HEAD_DROPOUT
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=nn.initializers.lecun_normal())
        # rows stay split over the mesh's 'data' axis (with FSDP-split kernels XLA's partitioner gathered the
        # rows of the global batch onto every chip instead of the weights)
        x = Dropout(self.dropout)(constrain_batch(x), deterministic)
        x = constrain_batch(Dense(self.hidden, ("head_in", "head_hidden"), name="in_proj", **kw)(x))
        x = ACTIVATIONS[self.activation](x)
        x = Dropout(self.dropout)(x, deterministic)
        x = constrain_batch(Dense(self.out, ("head_hidden", "head_out"), name="out_proj", **kw)(x))
        if self.with_layer_norm:
            x = layer_norm(self.layer_norm_eps, axis_name="head_out", param_dtype=self.param_dtype, name="LayerNorm")(x)
        return x


class PairDense(nn.Module):
    """`Linear(2n→features)` applied to `[a; b]`, returned as its two halves `a·W_a`, `b·W_b + bias`."""

    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
        n = a.shape[-1]
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("head_in", "head_hidden")),
            (2 * n, self.features),
            self.param_dtype,
        )
        bias = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.zeros, ("head_hidden",)),
            (self.features,),
            self.param_dtype,
        )
        return matmul(a, kernel[:n], self.dtype), matmul(b, kernel[n:], self.dtype) + bias


class EndHead(nn.Module):
    """Scores every position as the end of a span that starts at each given start."""

    hidden: int
    n_out: int  # 1: one logit per position (EL, softmax over positions); 2: binary per position
    layer_norm_eps: float = 1e-12
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h_BLH: jax.Array, start_BSH: jax.Array) -> jax.Array:
        """`h [B, L, H]`, `start [B, S, H]` (features of each start) → logits `[B, S, L, n_out]`."""
        tokens, starts = PairDense(self.hidden, dtype=self.dtype, param_dtype=self.param_dtype, name="dense_0")(
            h_BLH, start_BSH
        )
        x = jnp.tanh(tokens[:, None, :, :] + starts[:, :, None, :])  # [B, S, L, H]
        x = layer_norm(self.layer_norm_eps, axis_name="head_hidden", param_dtype=self.param_dtype, name="LayerNorm")(x)
        return Dense(self.n_out, ("head_hidden", None), dtype=self.dtype, param_dtype=self.param_dtype, name="dense_1")(
            x
        )
