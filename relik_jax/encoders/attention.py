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
from jax.sharding import PartitionSpec as P

from relik_jax.core.errors import ConfigError
from relik_jax.core.platform import bf16_dots_in_f32
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
    short bf16 batches all at once, except at 128 tokens from 16 sequences up, where two sequences at
    a time win (2026-12-02, bf16 attention alone: 32x128 9.1 ms instead of 27.8, 16x128 4.7 instead
    of 5.6; 8x128 2.2 all at once, 2.3 by two; at 64 tokens all at once wins at every batch).
    """
    if training:
        return 0
    if length > 128:
        return 4
    if batch == 1 or (low_precision and (length < 128 or batch < 16)):
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


def batch_sharded(n: int) -> bool:
    """Whether a leading axis of `n` is split over the 'data' axis of the mesh in context (see `constrain_batch`)."""
    mesh = jax.sharding.get_abstract_mesh()
    return not mesh.empty and "data" in mesh.axis_names and mesh.shape["data"] > 1 and n % mesh.shape["data"] == 0


def constrain_batch(x: jax.Array) -> jax.Array:
    """`x` with its leading axis split over the 'data' axis of the mesh in context (`jax.set_mesh`;
    the training loop and `python -m relik_jax.aot` set it), else `x` itself. XLA's partitioner can
    lose the batch sharding at a gather whose indices are a replicated constant (DeBERTa's per-pair
    head index): the per-pair tensors then grow with the *global* batch on every chip."""
    if not batch_sharded(x.shape[0]):
        return x
    return jax.lax.with_sharding_constraint(x, P("data", *([None] * (x.ndim - 1))))


def per_data_shard(fn: Callable[..., jax.Array], replicated: Sequence[Any], sharded: Sequence[Any]) -> jax.Array:
    """`fn(*replicated, *sharded)`, run per shard of the 'data' axis (`shard_map`) when the mesh in context
    splits the leading axis of `sharded` over it (see `batch_sharded`), else called as it is. `fn` must treat
    the leading axis of `sharded` (and of its output) row by row; `replicated` (None allowed) is whole on every
    shard. Inside, gathers and loops are local: XLA's partitioner otherwise gave each chip the gather of
    the *global* batch when its indices were a shared constant (DeBERTa's relative positions)."""
    if not batch_sharded(sharded[0].shape[0]):
        return fn(*replicated, *sharded)
    specs = (*(None if r is None else P() for r in replicated), *(P("data") for _ in sharded))
    mesh = jax.sharding.get_abstract_mesh()
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P("data"), check_vma=False)(*replicated, *sharded)


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


def dot_operand(a: jax.Array, dtype: Dtype) -> jax.Array:
    """`a` cast to the compute `dtype` for a dot with a float32 result. In bfloat16 on a CPU without
    bf16 dot instructions (`core.platform.bf16_dots_in_f32`) it is rounded to bf16 and handed to the
    dot in f32: the same products and f32 accumulation as the bf16 kernel, in the CPU's faster f32
    kernel. Leaves alone what is not a float array (qwix's quantized weights, int8)."""
    if not isinstance(a, jax.Array) or not jnp.issubdtype(a.dtype, jnp.floating):
        return a
    if jnp.dtype(dtype) == jnp.bfloat16 and bf16_dots_in_f32():
        if a.dtype == jnp.bfloat16:
            return a.astype(jnp.float32)
        # the bf16 rounding as one op that stays f32 (equal to a cast to bf16 and back); XLA:CPU fuses
        # it into the dot's operand (4096x1536 @ 1536x384: 36 ms, against 44 with the two casts)
        return jax.lax.reduce_precision(a.astype(jnp.float32), exponent_bits=8, mantissa_bits=7)
    return a.astype(dtype) if a.dtype != dtype else a


def dot_nt(a_QD: jax.Array, b_KD: jax.Array, dtype: Dtype) -> jax.Array:
    """`a @ b.T` → `[Q, K]` float32, contracting the last axes of both: written with `b.T`, XLA:CPU
    upcasts a bf16 dot fed by a transpose to an f32 dot (5x slower; `relik_jax.core.hlo`)."""
    return jax.lax.dot_general(
        dot_operand(a_QD, dtype), dot_operand(b_KD, dtype), (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32
    )


def softmax_dropout_values(
    scores_QK: jax.Array,
    v_KD: jax.Array,
    dtype: Dtype,
    dropout_rate: float,
    key: jax.Array | None,
) -> jax.Array:
    """softmax(scores) (with dropout when `key` is given) @ v, float32 accumulation.

    Without dropout the normalisation comes after the dot: `(exp(s - max) @ v) / sum`, one divide
    per output value instead of one per score (attention's elementwise work is most of its time on
    XLA:CPU: 1.43 instead of 1.63 ms for 4 pairs of 512 in fp32, 1.18 instead of 1.31 in bf16;
    fp32 results within 2e-6)."""
    if key is None or dropout_rate == 0.0:
        return normalised_values(scores_QK, v_KD, dtype)
    probs = dropout(jax.nn.softmax(scores_QK.astype(jnp.float32), axis=-1), dropout_rate, key)
    return jnp.dot(dot_operand(probs, dtype), dot_operand(v_KD, dtype), preferred_element_type=jnp.float32)


def unnormalised_softmax(scores: jax.Array, axis: int = -1) -> tuple[jax.Array, jax.Array]:
    """`(exp(scores - max), sum)` along `axis` in float32: softmax is the first over the second."""
    s = scores.astype(jnp.float32)
    e = jnp.exp(s - jax.lax.stop_gradient(jnp.max(s, axis=axis, keepdims=True)))
    return e, jnp.sum(e, axis=axis, keepdims=True)


def normalised_values(scores_QK: jax.Array, v_KD: jax.Array, dtype: Dtype) -> jax.Array:
    """`softmax(scores) @ v` as `(exp(scores - max) @ v) / sum(exp(...))`."""
    e, total = unnormalised_softmax(scores_QK)
    return jnp.dot(dot_operand(e, dtype), dot_operand(v_KD, dtype), preferred_element_type=jnp.float32) / total


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
            "bqnd,bknd->bnqk",
            dot_operand(q_BLND, dtype),
            dot_operand(k_BLND, dtype),
            preferred_element_type=jnp.float32,
        )
        scores = jnp.where(key_mask_BL[:, None, None, :], scores, NEG_INF)
        if not use_dropout:
            e, total_BNQ1 = unnormalised_softmax(scores)
            ctx = jnp.einsum(
                "bnqk,bknd->bqnd", dot_operand(e, dtype), dot_operand(v_BLND, dtype), preferred_element_type=jnp.float32
            )
            return (ctx / total_BNQ1.transpose(0, 2, 1, 3)).reshape(b, length, n * d)
        probs = dropout(jax.nn.softmax(scores, axis=-1), dropout_rate, dropout_rng)
        ctx = jnp.einsum(
            "bnqk,bknd->bqnd", dot_operand(probs, dtype), dot_operand(v_BLND, dtype), preferred_element_type=jnp.float32
        )
        return ctx.reshape(b, length, n * d)

    def one_pair(q, k, v, mask, key=None):
        scores = dot_nt(q, k, dtype)
        scores = jnp.where(mask[None, :], scores, NEG_INF)
        return softmax_dropout_values(scores, v, dtype, dropout_rate, key)

    def pairs(x_BLND):  # [B, L, N, D] -> [B*N, L, D], sequence-major
        return x_BLND.transpose(0, 2, 1, 3).reshape(b * n, length, d)

    xs = [pairs(q_BLND), pairs(k_BLND), pairs(v_BLND), jnp.repeat(key_mask_BL, n, axis=0)]
    if use_dropout:
        xs.append(jax.random.split(dropout_rng, b * n))
    return merge_heads(map_pairs(one_pair, xs, block), n)


# ---- implementations: one switch chosen by backend --------------------------------------------

# blocked: the XLA:CPU-tuned per-pair blocks above (block 0 = one fused computation);
# xla: `jax.nn.dot_product_attention(implementation="xla")`; cudnn: the same with cuDNN's fused
# kernel (GPU; padding as sequence lengths); splash: the TPU splash-attention Pallas kernel
# (padding as segment ids; lengths that are not a multiple of 128 run as `xla`). The fused
# implementations do not apply attention-probability dropout.
IMPLEMENTATIONS = ("auto", "blocked", "xla", "cudnn", "splash")


def resolve_implementation(name: str, *, backend: str | None = None, relative: bool = False) -> str:
    """The implementation `name` means on `backend` (default: JAX's): `auto` is blocked on CPU,
    cuDNN on GPU, splash on TPU. Encoders with relative-position terms in their scores (DeBERTa)
    run their own per-pair attention: `auto` is blocked on CPU and one fused XLA computation
    elsewhere; the fused kernels cannot add those terms."""
    if name not in IMPLEMENTATIONS:
        raise ConfigError(f"unknown attention implementation {name!r} ({' | '.join(IMPLEMENTATIONS)})")
    backend = backend or jax.default_backend()
    if name == "auto":
        if backend == "cpu":
            return "blocked"
        if relative:
            return "xla"
        return {"gpu": "cudnn", "cuda": "cudnn", "rocm": "cudnn", "tpu": "splash"}.get(backend, "xla")
    if relative and name in ("cudnn", "splash"):
        raise ConfigError(
            f"attention {name!r}: this encoder adds relative-position terms to its attention scores, which the "
            "fused kernel cannot take; use 'xla' (one fused XLA computation) or 'blocked'"
        )
    return name


def fused_attention(
    q_BLND: jax.Array, k_BLND: jax.Array, v_BLND: jax.Array, key_mask_BL: jax.Array, *, implementation: str,
    dtype: Dtype = jnp.float32,
) -> jax.Array:  # fmt: skip
    """`xla` / `cudnn` / `splash` attention → `[B, L, N*D]` float32; `q` is already scaled,
    `key_mask` is True on real keys (a prefix of each row for cuDNN)."""
    b, length, n, d = q_BLND.shape
    q, k, v = (x.astype(dtype) for x in (q_BLND, k_BLND, v_BLND))
    if implementation == "splash" and length % 128:
        implementation = "xla"  # the kernel tiles by 128: shorter buckets run as one fused XLA computation
    if implementation == "splash":
        out = splash_attention(q, k, v, key_mask_BL)
    elif implementation == "cudnn":
        lengths = key_mask_BL.astype(jnp.int32).sum(-1)
        out = jax.nn.dot_product_attention(
            q, k, v, scale=1.0, query_seq_lengths=lengths, key_value_seq_lengths=lengths, implementation="cudnn"
        )
    elif implementation == "xla":
        out = jax.nn.dot_product_attention(q, k, v, scale=1.0, mask=key_mask_BL[:, None, None, :], implementation="xla")
    else:
        raise ValueError(f"not a fused attention implementation: {implementation!r}")
    return out.astype(jnp.float32).reshape(b, length, n * d)


def splash_attention(q_BLND, k_BLND, v_BLND, key_mask_BL, *, interpret: bool = False) -> jax.Array:
    """The splash-attention Pallas kernel (TPU; `interpret` runs it anywhere, slowly) → `[B, L, N, D]`.

    Padding is a segment: real tokens are segment 1, padding 0, so a real query sees only real keys
    (a padding query sees padding: its output is never read). Under a mesh (`jax.set_mesh`) the
    kernel runs per shard (`shard_map`): batch over 'data', heads over 'model'."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (  # Pallas: loaded when splash runs
        splash_attention_kernel as sk,
    )
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm  # (same)

    length = q_BLND.shape[1]
    blk = next((t for t in (512, 256, 128) if length % t == 0), length if interpret else None)
    if blk is None:
        raise ValueError(f"splash attention tiles the sequence by 128: the length ({length}) must be a multiple of 128")

    def local(q, k, v, mask):  # [b, L, n, D] on one shard
        n = q.shape[2]
        heads = sm.MultiHeadMask([sm.FullMask((length, length)) for _ in range(n)])
        sizes = sk.BlockSizes(
            block_q=blk, block_kv=blk, block_kv_compute=blk, block_q_dkv=blk, block_kv_dkv=blk,
            block_kv_dkv_compute=blk, block_q_dq=blk, block_kv_dq=blk,
        )  # fmt: skip
        kernel = sk.make_splash_mha(heads, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)
        seg = mask.astype(jnp.int32)

        def one(q1, k1, v1, s1):  # [L, n, D]
            out = kernel(q1.transpose(1, 0, 2), k1.transpose(1, 0, 2), v1.transpose(1, 0, 2),
                         segment_ids=sk.SegmentIds(q=s1, kv=s1))  # fmt: skip
            return out.transpose(1, 0, 2)

        return jax.vmap(one)(q, k, v, seg)

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not {"data", "model"} <= set(mesh.axis_names):
        return local(q_BLND, k_BLND, v_BLND, key_mask_BL)
    qkv, m = P("data", None, "model", None), P("data", None)
    return jax.shard_map(local, mesh=mesh, in_specs=(qkv, qkv, qkv, m), out_specs=qkv, check_vma=False)(
        q_BLND, k_BLND, v_BLND, key_mask_BL
    )
