"""BERT-family encoder (BERT, MiniLM, E5) in flax.linen: post-LayerNorm layers, GELU.

The parameter tree mirrors Hugging Face's module tree (`encoder/layer_3/attention/self/query`
is `encoder.layer.3.attention.self.query`), so checkpoints convert by name (see `convert/hf.py`).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from relik_jax.encoders import attention as attn
from relik_jax.encoders.dropout import Dropout
from relik_jax.encoders.layers import (
    AddNorm,
    Encoder,
    EncoderModule,
    Intermediate,
    embed,
    remat_layer,
)


class BertEmbeddings(EncoderModule):
    @nn.compact
    def __call__(self, input_ids, token_type_ids, deterministic: bool):
        c = self.config
        std = c.initializer_range
        words = embed(c.vocab_size, c.hidden_size, ("vocab", "embed"), std, self.param_dtype, "word_embeddings")
        positions = embed(
            c.max_position_embeddings, c.hidden_size, (None, "embed"), std, self.param_dtype, "position_embeddings"
        )
        types = embed(c.type_vocab_size, c.hidden_size, (None, "embed"), std, self.param_dtype, "token_type_embeddings")
        length = input_ids.shape[1]
        if length > c.max_position_embeddings:
            raise ValueError(f"sequence length {length} exceeds max_position_embeddings {c.max_position_embeddings}")
        x = words(input_ids) + types(token_type_ids) + positions.embedding[None, :length].astype(jnp.float32)
        x = self.norm()(x)
        return Dropout(c.hidden_dropout)(x, deterministic=deterministic)


class BertSelfAttention(EncoderModule):
    @nn.compact
    def __call__(self, x, key_mask_BL, block: int, deterministic: bool):
        c = self.config
        b, length, _ = x.shape

        def heads(t):
            return t.reshape(b, length, c.num_heads, c.head_dim)

        q = self.dense(c.hidden_size, ("embed", "heads"), "query")(x) * (c.head_dim**-0.5)
        k = self.dense(c.hidden_size, ("embed", "heads"), "key")(x)
        v = self.dense(c.hidden_size, ("embed", "heads"), "value")(x)
        impl = attn.resolve_implementation(c.attention)
        if impl != "blocked":
            return attn.fused_attention(
                heads(q), heads(k), heads(v), key_mask_BL, implementation=impl, dtype=self.dtype
            )
        use_dropout = not deterministic and c.attention_dropout > 0.0
        return attn.dot_product_attention(
            heads(q),
            heads(k),
            heads(v),
            key_mask_BL,
            block=block,
            dtype=self.dtype,
            dropout_rate=c.attention_dropout,
            dropout_rng=self.make_rng("dropout") if use_dropout else None,
        )


class BertAttention(EncoderModule):
    @nn.compact
    def __call__(self, x, key_mask_BL, block: int, deterministic: bool):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        ctx = BertSelfAttention(**kw, name="self")(x, key_mask_BL, block, deterministic)
        return AddNorm(**kw, name="output")(ctx, x, deterministic)


class BertLayer(EncoderModule):
    @nn.compact
    def __call__(self, x, key_mask_BL, block: int, deterministic: bool):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        x = BertAttention(**kw, name="attention")(x, key_mask_BL, block, deterministic)
        h = Intermediate(**kw, name="intermediate")(x)
        return AddNorm(**kw, in_axis="mlp", name="output")(h, x, deterministic)


class BertStack(EncoderModule):
    @nn.compact
    def __call__(self, x, key_mask_BL, block: int, deterministic: bool):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        layer = remat_layer(BertLayer, self.config.remat, static_argnums=(3, 4))
        hidden = [x]
        for i in range(self.config.num_layers):
            x = attn.constrain_batch(
                layer(**kw, name=f"layer_{i}")(attn.constrain_batch(x), key_mask_BL, block, deterministic)
            )
            hidden.append(x)
        return hidden


class BertPooler(EncoderModule):
    @nn.compact
    def __call__(self, x):
        return jnp.tanh(self.dense(self.config.hidden_size, ("embed", None), "dense")(x[:, 0]))


class BertEncoder(Encoder):
    """BERT encoder: `input_ids [B, L]` → `EncoderOutput`.

    `dtype` is the compute dtype of matmul operands (e.g. `jnp.bfloat16`), `param_dtype` the storage
    dtype of parameters. `attention_block` overrides the per-shape attention blocking.
    """

    def layers(self, input_ids, attention_mask, token_type_ids, block: int, deterministic: bool):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        x = BertEmbeddings(**kw, name="embeddings")(input_ids, token_type_ids, deterministic)
        hidden = BertStack(**kw, name="encoder")(x, attention_mask.astype(bool), block, deterministic)
        pooled = BertPooler(**kw, name="pooler")(hidden[-1]) if self.with_pooler else None
        return hidden, pooled
