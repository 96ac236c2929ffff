"""How a config runs its encoders — attention implementation and rematerialisation — applied to a
model without changing its parameters (`model.attention`, `model.remat`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from relik_jax.encoders.attention import resolve_implementation
from relik_jax.encoders.config import EncoderConfig
from relik_jax.reader.model import Reader
from relik_jax.retriever.model import BiEncoder


def runtime_encoder(enc: EncoderConfig, config: Any, backend: str | None = None) -> EncoderConfig:
    """`enc` as the config runs it on `backend` (default: JAX's): `model.attention` resolved (auto →
    blocked on CPU, cuDNN on GPU, splash on TPU), `model.remat`."""
    attention = resolve_implementation(config.model.attention, backend=backend, relative=enc.relative_attention)
    return enc.replace(attention=attention, remat=config.model.remat)


def with_runtime(model: Any, config: Any, backend: str | None = None) -> Any:
    """A reader or bi-encoder whose encoders run as the config says (the same parameters)."""
    if isinstance(model, Reader):
        c = model.config
        return model.clone(config=dataclasses.replace(c, encoder=runtime_encoder(c.encoder, config, backend)))
    if isinstance(model, BiEncoder):
        c = model.config
        passage = None if c.passage is None else runtime_encoder(c.passage, config, backend)
        return model.clone(
            config=dataclasses.replace(c, question=runtime_encoder(c.question, config, backend), passage=passage)
        )
    raise TypeError(f"not a reader or a bi-encoder: {type(model).__name__}")
