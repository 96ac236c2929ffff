"""Flax encoders, chosen by Hugging Face `model_type` through a small registry."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from relik_jax.core.errors import CheckpointError
from relik_jax.encoders.bert import BertEncoder
from relik_jax.encoders.config import EncoderConfig
from relik_jax.encoders.deberta import DebertaV2Encoder
from relik_jax.encoders.layers import EncoderModule, EncoderOutput

ENCODERS: dict[str, type[EncoderModule]] = {
    "bert": BertEncoder,
    "deberta-v2": DebertaV2Encoder,
}


def build_encoder(
    config: EncoderConfig,
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    with_pooler: bool = False,
) -> EncoderModule:
    """The Flax encoder module for `config.model_type`."""
    try:
        cls = ENCODERS[config.model_type]
    except KeyError:
        raise CheckpointError(
            f"unsupported model_type {config.model_type!r}; supported: {', '.join(ENCODERS)}"
        ) from None
    return cls(config=config, dtype=dtype, param_dtype=param_dtype, with_pooler=with_pooler)


__all__ = ["ENCODERS", "EncoderConfig", "EncoderOutput", "build_encoder"]
