"""DeBERTa-v2/v3 encoder in flax.linen: disentangled (c2p, p2c) attention over log-bucketed
relative positions, as Hugging Face's `DebertaV2Model` computes it.

Attention runs per (sequence, head) pair in blocks (see `attention.py`); the relative-position
terms are computed inside each block, so no `[B, heads, L, L]` tensor is ever materialised.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from relik_jax.encoders import attention as attn
from relik_jax.encoders.dropout import Dropout
from relik_jax.encoders.layers import (
    ACTIVATIONS,
    AddNorm,
    Encoder,
    EncoderModule,
    Intermediate,
    embed,
    remat_layer,
)


def log_bucket_position(relative_pos: np.ndarray, bucket_size: int, max_position: int) -> np.ndarray:
    """DeBERTa's log-bucketed relative positions (float32 arithmetic, as the reference)."""
    rel = relative_pos.astype(np.int64)
    sign = np.sign(rel)
    mid = bucket_size // 2
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel))
    ratio = abs_pos.astype(np.float32) / np.float32(mid)
    denom = np.log(np.float32((max_position - 1) / mid), dtype=np.float32)
    log_pos = np.ceil(np.log(ratio, dtype=np.float32) / denom * np.float32(mid - 1)) + np.float32(mid)
    return np.where(abs_pos <= mid, rel.astype(np.float32), log_pos * sign).astype(np.int64)


@functools.lru_cache(maxsize=64)
def relative_positions(length: int, bucket_size: int, max_position: int) -> np.ndarray:
    """`[L, L]` relative position (query − key), log-bucketed when buckets are configured."""
    ids = np.arange(length, dtype=np.int64)
    rel = ids[:, None] - ids[None, :]
    if bucket_size > 0 and max_position > 0:
        rel = log_bucket_position(rel, bucket_size, max_position)
    return rel


class DebertaV2Embeddings(EncoderModule):
    @nn.compact
    def __call__(self, input_ids, token_type_ids, mask, deterministic: bool):
        c = self.config
        std = c.initializer_range
        emb_size = c.embedding_size or c.hidden_size
        x = embed(c.vocab_size, emb_size, ("vocab", "embed"), std, self.param_dtype, "word_embeddings")(input_ids)
        length = input_ids.shape[1]
        if c.position_biased_input:
            if length > c.max_position_embeddings:
                raise ValueError(
                    f"sequence length {length} exceeds max_position_embeddings {c.max_position_embeddings}"
                )
            positions = embed(
                c.max_position_embeddings, emb_size, (None, "embed"), std, self.param_dtype, "position_embeddings"
            )
            x = x + positions.embedding[None, :length].astype(jnp.float32)
        if c.type_vocab_size > 0:
            x = x + embed(c.type_vocab_size, emb_size, (None, "embed"), std, self.param_dtype, "token_type_embeddings")(
                token_type_ids
            )
        if emb_size != c.hidden_size:
            x = self.dense(c.hidden_size, ("embed_in", "embed"), "embed_proj", use_bias=False)(x)
        x = self.norm()(x)
        x = x * mask[..., None].astype(x.dtype)
        return Dropout(c.hidden_dropout)(x, deterministic=deterministic)


class DisentangledSelfAttention(EncoderModule):
    @nn.compact
    def __call__(self, x, mask_BL, rel_emb, block: int, deterministic: bool):
        c = self.config
        n, d = c.num_heads, c.head_dim
        types = c.pos_att_type
        q_proj = self.dense(c.hidden_size, ("embed", "heads"), "query_proj")
        k_proj = self.dense(c.hidden_size, ("embed", "heads"), "key_proj")
        v_proj = self.dense(c.hidden_size, ("embed", "heads"), "value_proj")
        q, k, v = (attn.split_heads(p(x), n) for p in (q_proj, k_proj, v_proj))
        scale = float(np.sqrt(np.float32(d * (1 + ("c2p" in types) + ("p2c" in types)))))
        b, length = mask_BL.shape

        pos_key = pos_query = None
        c2p_idx = p2c_idx = None
        if c.relative_attention and types:
            span = c.rel_span
            rel = relative_positions(length, c.position_buckets, c.max_rel_positions)
            rel_emb = Dropout(c.hidden_dropout)(rel_emb[: 2 * span], deterministic=deterministic)

            def heads(t):  # [2S, N*D] -> [N, 2S, D]
                return t.reshape(2 * span, n, d).transpose(1, 0, 2)

            if "c2p" in types:
                proj = k_proj if c.share_att_key else self.dense(c.hidden_size, ("embed", "heads"), "pos_key_proj")
                pos_key = heads(proj(rel_emb))
                c2p_idx = jnp.asarray(np.clip(rel + span, 0, 2 * span - 1), jnp.int32)
            if "p2c" in types:
                proj = q_proj if c.share_att_key else self.dense(c.hidden_size, ("embed", "heads"), "pos_query_proj")
                pos_query = heads(proj(rel_emb))
                p2c_idx = jnp.asarray(np.clip(-rel + span, 0, 2 * span - 1), jnp.int32)

        dtype = self.dtype
        rate = c.attention_dropout
        use_dropout = not deterministic and rate > 0.0

        def dot(a, b):
            return attn.dot_nt(a, b, dtype)

        def pairs(pos_key, pos_query, *xs):
            def one_pair(q, k, v, mask, head, key=None):
                scores = dot(q, k) / scale
                if pos_key is not None:
                    c2p = dot(q, pos_key[head])  # [Lq, 2S]
                    scores = scores + jnp.take_along_axis(c2p, c2p_idx, axis=1) / scale
                if pos_query is not None:
                    p2c = dot(k, pos_query[head])  # [Lk, 2S]
                    scores = scores + jnp.take_along_axis(p2c, p2c_idx, axis=1).T / scale
                scores = jnp.where(mask[:, None] & mask[None, :], scores, attn.NEG_INF)
                return attn.softmax_dropout_values(scores, v, dtype, rate, key)

            return attn.map_pairs(one_pair, xs, block)

        mask_PL = jnp.repeat(mask_BL.astype(bool), n, axis=0)
        head_P = jnp.tile(jnp.arange(n, dtype=jnp.int32), b)
        xs = [attn.constrain_batch(t) for t in (q, k, v, mask_PL, head_P)]  # pairs stay split over 'data'
        if use_dropout:
            xs.append(jax.random.split(self.make_rng("dropout"), b * n))
        # under a data-parallel mesh each shard reads its own pairs (the relative-position gathers stay local)
        out = attn.per_data_shard(pairs, (pos_key, pos_query), xs)
        return attn.merge_heads(attn.constrain_batch(out), n)


class DebertaV2Attention(EncoderModule):
    @nn.compact
    def __call__(self, x, mask_BL, rel_emb, block: int, deterministic: bool):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        ctx = DisentangledSelfAttention(**kw, name="self")(x, mask_BL, rel_emb, block, deterministic)
        return AddNorm(**kw, name="output")(ctx, x, deterministic)


class DebertaV2Layer(EncoderModule):
    @nn.compact
    def __call__(self, x, mask_BL, rel_emb, block: int, deterministic: bool):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        x = DebertaV2Attention(**kw, name="attention")(x, mask_BL, rel_emb, block, deterministic)
        h = Intermediate(**kw, name="intermediate")(x)
        return AddNorm(**kw, in_axis="mlp", name="output")(h, x, deterministic)


class ConvLayer(EncoderModule):
    """DeBERTa-v2's convolution beside the first layer (`conv_kernel_size > 0`)."""

    @nn.compact
    def __call__(self, embeddings, layer_out, mask_BL, deterministic: bool):
        c = self.config
        ks = c.conv_kernel_size
        out = nn.Conv(
            c.hidden_size,
            (ks,),
            padding=(((ks - 1) // 2, (ks - 1) // 2),),
            feature_group_count=c.conv_groups,
            dtype=jnp.float32,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.normal(c.initializer_range), (None, "embed_in", "embed")
            ),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            name="conv",
        )(embeddings)
        m = mask_BL[..., None].astype(jnp.float32)
        out = out * m
        out = ACTIVATIONS[c.conv_act](Dropout(c.hidden_dropout)(out, deterministic=deterministic))
        return self.norm()(layer_out + out) * m


class DebertaV2Stack(EncoderModule):
    @nn.compact
    def __call__(self, x, mask_BL, block: int, deterministic: bool):
        c = self.config
        kw = dict(config=c, dtype=self.dtype, param_dtype=self.param_dtype)
        rel_emb = None
        if c.relative_attention:
            rel_emb = embed(
                2 * c.rel_span, c.hidden_size, (None, "embed"), c.initializer_range, self.param_dtype, "rel_embeddings"
            ).embedding
            rel_emb = rel_emb.astype(jnp.float32)
            if "layer_norm" in c.norm_rel_ebd:
                rel_emb = self.norm()(rel_emb)
        embeddings = x
        hidden = [x]
        layer = remat_layer(DebertaV2Layer, c.remat, static_argnums=(4, 5))
        for i in range(c.num_layers):
            x = attn.constrain_batch(
                layer(**kw, name=f"layer_{i}")(attn.constrain_batch(x), mask_BL, rel_emb, block, deterministic)
            )
            if i == 0 and c.conv_kernel_size > 0:
                x = ConvLayer(**kw, name="conv")(embeddings, x, mask_BL, deterministic)
            hidden.append(x)
        return hidden


class DebertaV2Encoder(Encoder):
    """DeBERTa-v2/v3 encoder: `input_ids [B, L]` → `EncoderOutput` (same call as `BertEncoder`)."""

    # DeBERTa has no pooler: `with_pooler` (kept for uniform constructors) is ignored.

    def layers(self, input_ids, attention_mask, token_type_ids, block: int, deterministic: bool):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        x = DebertaV2Embeddings(**kw, name="embeddings")(input_ids, token_type_ids, attention_mask, deterministic)
        return DebertaV2Stack(**kw, name="encoder")(x, attention_mask, block, deterministic), None
