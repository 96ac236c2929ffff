"""Scaled dot-product attention computed per (sequence, head) pair, in blocks.

XLA:CPU is slow when a whole `[batch, heads, L, L]` score tensor is materialised at once; mapping
over small blocks of (sequence, head) pairs keeps each tile `[block, L, L]` in cache (README, "What makes them fast on CPU").
`block` is a static setting: 0 computes every pair at once (vmap), `k > 0` runs a `lax.map` over
groups of `k` pairs. Pairs are ordered sequence-major, so `block == num_heads` is "one sequence at a
time". `choose_block` picks the measured best for a shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from relik_jax.encoders.dropout import dropout

Dtype = Any
NEG_INF = float(jnp.finfo(jnp.float32).min)


def choose_block(
    batch: int, length: int, num_heads: int, *, training: bool = False, low_precision: bool = False
) -> int:
    """The attention block (pairs per `lax.map` step) measured fastest on XLA:CPU for a shape.

    Measured with all-MiniLM-L6-v2 on the 2-core CPU (README, "Encoder speed"): in training the
    backward of a `lax.map` costs more than the full score tensor (0 wins at every shape); in a
    forward, long sequences run best 4 pairs at a time, short fp32 batches two sequences at a time,
    short bf16 batches all at once.
    """
    if training:
        return 0
    if length > 128:
        return 4
    if low_precision or batch == 1:
        return 0
    return 2 * num_heads


def attention_block_for_backend(
    batch: int,
    length: int,
    num_heads: int,
    *,
    training: bool = False,
    low_precision: bool = False,
    backend: str | None = None,
) -> int:
    """`choose_block` on CPU, 0 (one fused computation) on GPU/TPU."""
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return 0
    return choose_block(batch, length, num_heads, training=training, low_precision=low_precision)


def map_pairs(fn: Callable[..., jax.Array], xs: Sequence[jax.Array], block: int) -> jax.Array:
    """Applies `fn` to each leading-axis slice of `xs`, `block` slices per step (0: all at once)."""
    n = xs[0].shape[0]
    if block <= 0 or block >= n:
        return jax.vmap(fn)(*xs)
    return jax.lax.map(lambda args: fn(*args), tuple(xs), batch_size=block)


def split_heads(x_BLE: jax.Array, num_heads: int) -> jax.Array:
    """`[B, L, N*D]` → `[B*N, L, D]` (sequence-major pairs)."""
    b, length, e = x_BLE.shape
    x = x_BLE.reshape(b, length, num_heads, e // num_heads)
    return x.transpose(0, 2, 1, 3).reshape(b * num_heads, length, e // num_heads)


def merge_heads(x_PLD: jax.Array, num_heads: int) -> jax.Array:
    """`[B*N, L, D]` → `[B, L, N*D]`."""
    p, length, d = x_PLD.shape
    x = x_PLD.reshape(p // num_heads, num_heads, length, d)
    return x.transpose(0, 2, 1, 3).reshape(p // num_heads, length, num_heads * d)


def softmax_dropout_values(
    scores_QK: jax.Array,
    v_KD: jax.Array,
    dtype: Dtype,
    dropout_rate: float,
    key: jax.Array | None,
) -> jax.Array:
    """softmax(scores) (with dropout when `key` is given) @ v, float32 accumulation."""
    probs = dropout(jax.nn.softmax(scores_QK.astype(jnp.float32), axis=-1), dropout_rate, key)
    return jnp.dot(probs.astype(dtype), v_KD.astype(dtype), preferred_element_type=jnp.float32)


def dot_product_attention(
    q_BLND: jax.Array,
    k_BLND: jax.Array,
    v_BLND: jax.Array,
    key_mask_BL: jax.Array,
    *,
    block: int,
    dtype: Dtype = jnp.float32,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
) -> jax.Array:
    """Attention for BERT-style layers → `[B, L, N*D]`; `q` is already scaled.

    `key_mask` is True on real keys. Masked scores are replaced (not offset) by the float32
    minimum, so a row with no real key (a padding row of a bucket) gets uniform weights, not NaN.
    """
    b, length, n, d = q_BLND.shape
    use_dropout = dropout_rng is not None and dropout_rate > 0.0
    if block <= 0 or block >= b * n:
        scores = jnp.einsum(
            "bqnd,bknd->bnqk", q_BLND.astype(dtype), k_BLND.astype(dtype), preferred_element_type=jnp.float32
        )
        scores = jnp.where(key_mask_BL[:, None, None, :], scores, NEG_INF)
        probs = jax.nn.softmax(scores, axis=-1)
        if use_dropout:
            probs = dropout(probs, dropout_rate, dropout_rng)
        ctx = jnp.einsum(
            "bnqk,bknd->bqnd", probs.astype(dtype), v_BLND.astype(dtype), preferred_element_type=jnp.float32
        )
        return ctx.reshape(b, length, n * d)

    def one_pair(q, k, v, mask, key=None):
        scores = jnp.dot(q.astype(dtype), k.astype(dtype).T, preferred_element_type=jnp.float32)
        scores = jnp.where(mask[None, :], scores, NEG_INF)
        return softmax_dropout_values(scores, v, dtype, dropout_rate, key)

    def pairs(x_BLND):  # [B, L, N, D] -> [B*N, L, D], sequence-major
        return x_BLND.transpose(0, 2, 1, 3).reshape(b * n, length, d)

    xs = [pairs(q_BLND), pairs(k_BLND), pairs(v_BLND), jnp.repeat(key_mask_BL, n, axis=0)]
    if use_dropout:
        xs.append(jax.random.split(dropout_rng, b * n))
    return merge_heads(map_pairs(one_pair, xs, block), n)
