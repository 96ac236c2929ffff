"""GoldenRetriever-compatible bi-encoder: question and passage encoders (shared weights by
default), mean pooling over the attention mask, then a LayerNorm; score = dot product.

`multi_label_nce_loss` is the official `MultiLabelNCELoss`: for every gold passage `j` of a
question, `log p_j = s_j - logaddexp(s_j, logsumexp(scores of the non-gold passages))`; the loss
is minus the sum over gold passages, averaged over questions. Scores are computed against every
passage of the (global) batch, so negatives come from every question and every device.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relik_jax.encoders import EncoderConfig, build_encoder
from relik_jax.encoders.layers import layer_norm, mean_pool

Dtype = Any


@dataclasses.dataclass(frozen=True)
class RetrieverConfig:
    question: EncoderConfig
    passage: EncoderConfig | None = None  # None: the passage encoder *is* the question encoder
    question_has_pooler: bool = False
    passage_has_pooler: bool = False

    @property
    def shared(self) -> bool:
        return self.passage is None

    @property
    def dim(self) -> int:
        return self.question.hidden_size


class _Tower(nn.Module):
    """One encoder + its pooling LayerNorm (the official `layer_norm_layer`)."""

    config: EncoderConfig
    with_pooler: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.encoder = build_encoder(
            self.config, dtype=self.dtype, param_dtype=self.param_dtype, with_pooler=self.with_pooler
        )
        self.layer_norm_layer = layer_norm(self.config.layer_norm_eps, param_dtype=self.param_dtype)

    def states(self, input_ids, attention_mask, deterministic: bool = True) -> jax.Array:
        return self.encoder(
            input_ids, attention_mask, jnp.zeros_like(input_ids), deterministic=deterministic
        ).last_hidden_state

    def __call__(self, input_ids, attention_mask, deterministic: bool = True):
        return self.layer_norm_layer(mean_pool(self.states(input_ids, attention_mask, deterministic), attention_mask))

    def with_spans(self, input_ids, attention_mask, span_start_BS, span_end_BS, deterministic: bool = True):
        """The text's vector `[B, H]` and its spans' vectors `[B, S, H]` from one encoder pass: a span
        is the mean of its tokens `[start, end)` (BEER2's span queries), through the same LayerNorm."""
        h = self.states(input_ids, attention_mask, deterministic)
        window = self.layer_norm_layer(mean_pool(h, attention_mask))
        pos = jnp.arange(h.shape[1])
        inside = (
            (pos >= span_start_BS[..., None]) & (pos < span_end_BS[..., None]) & attention_mask.astype(bool)[:, None]
        )
        w = inside.astype(h.dtype)
        spans = jnp.einsum("bsl,blh->bsh", w, h) / jnp.maximum(w.sum(-1, keepdims=True), 1.0)
        return window, self.layer_norm_layer(spans)


class BiEncoder(nn.Module):
    config: RetrieverConfig
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        c = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.question_encoder = _Tower(c.question, c.question_has_pooler, **kw)
        if not c.shared:
            self.passage_encoder = _Tower(c.passage, c.passage_has_pooler, **kw)

    def embed_questions(self, input_ids, attention_mask, deterministic: bool = True) -> jax.Array:
        return self.question_encoder(input_ids, attention_mask, deterministic)

    def embed_queries(
        self, input_ids, attention_mask, span_start_BS, span_end_BS, deterministic: bool = True
    ) -> tuple[jax.Array, jax.Array]:
        """Window queries `[B, H]` and span queries `[B, S, H]` (token ranges `[start, end)`)."""
        return self.question_encoder.with_spans(input_ids, attention_mask, span_start_BS, span_end_BS, deterministic)

    def embed_passages(self, input_ids, attention_mask, deterministic: bool = True) -> jax.Array:
        tower = self.question_encoder if self.config.shared else self.passage_encoder
        return tower(input_ids, attention_mask, deterministic)

    def __call__(self, q_ids, q_mask, p_ids, p_mask, deterministic: bool = True) -> jax.Array:
        """Scores `[Q, P]` of every question against every passage."""
        q = self.embed_questions(q_ids, q_mask, deterministic)
        p = self.embed_passages(p_ids, p_mask, deterministic)
        return jnp.einsum("qh,ph->qp", q, p, preferred_element_type=jnp.float32)


def multi_label_nce_loss(
    scores_QP: jax.Array, targets_QP: jax.Array, passage_valid_P: jax.Array, question_valid_Q: jax.Array
) -> jax.Array:
    """The official multi-label NCE loss over the valid questions and passages (mean over questions)."""
    gold = targets_QP.astype(bool) & passage_valid_P[None, :]
    neg = jnp.where(gold | ~passage_valid_P[None, :], -jnp.inf, scores_QP)
    neg_lse = jax.nn.logsumexp(neg, axis=-1, keepdims=True)
    norm = jnp.logaddexp(scores_QP, neg_lse)
    log_p = jnp.where(gold, scores_QP - norm, 0.0).sum(-1)
    valid = question_valid_Q.astype(bool)
    n = valid.sum()
    return -jnp.sum(jnp.where(valid, log_p, 0.0)) / jnp.maximum(n, 1)
