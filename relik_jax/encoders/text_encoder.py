"""Texts → vectors with a Flax encoder: tokenisation, static-shape buckets, one jitted forward.

Batches are padded to a (batch, length) bucket so that the forward compiles once per bucket and
never again for new data (`tests/encoding_test.py` counts compilations).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from relik_jax.core.assets import resolve_model_path
from relik_jax.core.errors import ConfigError
from relik_jax.core.shapes import bucket, power_of_two_buckets
from relik_jax.encoders import EncoderConfig
from relik_jax.encoders.hf import load_encoder, load_tokenizer
from relik_jax.encoders.layers import EncoderModule, mean_pool

log = logging.getLogger(__name__)

DEFAULT_LENGTH_BUCKETS = (32, 64, 128, 256, 384, 512)


def truncate_ids(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids with special tokens, cut to `max_length` (the closing special token kept).

    Tokenises to `max_length + 1` so that a text that was cut can be told from one that fits
    exactly; returns the ids and how many texts were cut.
    """
    enc = tokenizer(list(texts), truncation=True, max_length=max_length + 1, padding=False)
    out, cut = [], 0
    for seq in enc["input_ids"]:
        if len(seq) > max_length:
            seq = seq[: max_length - 1] + seq[-1:]
            cut += 1
        out.append(list(seq))
    return out, cut


def pad_ids(ids: Sequence[Sequence[int]], rows: int, length: int) -> dict[str, np.ndarray]:
    """`input_ids` / `attention_mask` `[rows, length]`: `ids` left-aligned, zeros elsewhere."""
    input_ids = np.zeros((rows, length), np.int32)
    mask = np.zeros((rows, length), np.int32)
    for r, seq in enumerate(ids):
        input_ids[r, : len(seq)] = seq
        mask[r, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


class TextEncoder:
    """A Flax encoder with its tokenizer, encoding texts in bucketed, jitted batches.

    `encode(texts)` returns mean-pooled float32 vectors `[N, H]`; `forward(batch)` the raw
    `last_hidden_state` of one padded batch.
    """

    def __init__(
        self,
        module: EncoderModule,
        params: Any,
        tokenizer: Any,
        config: EncoderConfig,
        *,
        max_length: int = 512,
        batch_size: int = 32,
        length_buckets: Sequence[int] = DEFAULT_LENGTH_BUCKETS,
    ):
        if max_length > config.max_position_embeddings and config.position_biased_input:
            raise ConfigError(
                f"max_length {max_length} exceeds the encoder's max_position_embeddings "
                f"{config.max_position_embeddings}"
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.module = module
        self.params = params
        self.tokenizer = tokenizer
        self.config = config
        self.max_length = max_length
        self.batch_size = batch_size
        self.length_buckets = tuple(sorted({b for b in length_buckets if b < max_length} | {max_length}))
        self.batch_buckets = power_of_two_buckets(batch_size)
        self._forward = jax.jit(self._forward_impl)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "minilm", *, dtype: Any = jnp.float32, **kwargs) -> TextEncoder:
        """Loads a local Hugging Face folder (or `"minilm"`, the embedded default)."""
        folder = resolve_model_path(name_or_path)
        module, params, config = load_encoder(folder, dtype=dtype)
        tokenizer = load_tokenizer(folder)
        kwargs.setdefault("max_length", min(512, tokenizer.model_max_length or 512, config.max_position_embeddings))
        return cls(module, jax.device_put(params), tokenizer, config, **kwargs)

    # ------------------------------------------------------------------------------------------

    def _forward_impl(self, params, input_ids, attention_mask):
        out = self.module.apply({"params": params}, input_ids, attention_mask)
        return out.last_hidden_state, mean_pool(out.last_hidden_state, attention_mask)

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids and masks padded to the (batch, length) bucket of `texts`."""
        ids, truncated = truncate_ids(self.tokenizer, texts, self.max_length)
        if truncated:
            log.warning("%d text(s) longer than %d tokens were truncated", truncated, self.max_length)
        length = bucket(max((len(i) for i in ids), default=1), self.length_buckets)
        return pad_ids(ids, bucket(len(ids), self.batch_buckets), length)

    def forward(self, batch: dict[str, np.ndarray]) -> tuple[jax.Array, jax.Array]:
        """`(last_hidden_state, mean_pooled)` of one padded batch."""
        return self._forward(self.params, batch["input_ids"], batch["attention_mask"])

    def encode(self, texts: Iterable[str], *, progress: bool = False) -> np.ndarray:
        """Mean-pooled vectors `[N, H]` (float32) of `texts`, in batches of `batch_size`."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.config.hidden_size), np.float32)
        # Sort by length so that each batch lands in the smallest length bucket it can.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.config.hidden_size), np.float32)
        starts = range(0, len(texts), self.batch_size)
        if progress:
            starts = tqdm(starts, desc="encoding", unit="batch")
        for s in starts:
            idx = order[s : s + self.batch_size]
            _, pooled = self.forward(self.tokenize([texts[i] for i in idx]))
            out[idx] = np.asarray(pooled[: len(idx)], np.float32)
        return out
