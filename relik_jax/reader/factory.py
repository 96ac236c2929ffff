"""New Readers: a pretrained encoder folder + the task's special symbols + freshly initialised heads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from relik_jax.core.assets import resolve_model_path
from relik_jax.encoders.config import EncoderConfig
from relik_jax.encoders.hf import load_encoder, load_tokenizer
from relik_jax.reader.inputs import entity_symbols_for, relation_symbols_for
from relik_jax.reader.model import Reader, ReaderConfig, dummy_batch
from relik_jax.reader.spec import get_spec, task_name


def task_symbols(task: str, entity_symbols: int, relation_symbols: int) -> list[str]:
    """The symbols a reader of `task` adds to its tokenizer, in the official order."""
    spec = get_spec(task)
    if spec.typed:  # relik's train_cie.py: the relation symbols first, then --NME-- and [E-k]
        return relation_symbols_for(relation_symbols) + entity_symbols_for(entity_symbols)
    out = []
    if spec.links:
        out += entity_symbols_for(entity_symbols)
    if spec.relations:
        out += relation_symbols_for(relation_symbols)
    return out


def reader_config(
    encoder: EncoderConfig,
    task: str,
    *,
    entity_symbols: int = 100,
    relation_symbols: int = 24,
    linears_hidden_size: int = 512,
    use_last_k_layers: int = 1,
    threshold: float = 0.5,
    use_nme: bool = True,
    encoder_has_pooler: bool = False,
) -> ReaderConfig:
    """The architecture of a new reader of `task` on `encoder` (whose vocabulary already holds the
    symbols: `len(task_symbols(...))` of them)."""
    spec = get_spec(task)
    symbols = len(task_symbols(task, entity_symbols, relation_symbols))
    return ReaderConfig(
        task=task_name(task),
        encoder=encoder,
        linears_hidden_size=linears_hidden_size,
        use_last_k_layers=use_last_k_layers,
        threshold=threshold,
        additional_special_symbols=relation_symbols if spec.typed else symbols,
        additional_special_symbols_types=entity_symbols + 1 if spec.typed else 0,
        use_nme=use_nme,
        encoder_has_pooler=encoder_has_pooler,
    )


def new_reader(
    encoder: str | Path,
    task: str,
    *,
    entity_symbols: int = 100,
    relation_symbols: int = 24,
    linears_hidden_size: int = 512,
    use_last_k_layers: int = 1,
    threshold: float = 0.5,
    use_nme: bool = True,
    rng: jax.Array | None = None,
    dtype: Any = jnp.float32,
) -> tuple[Reader, Any, Any]:
    """`(model, params, tokenizer)`: the encoder's pretrained weights, embeddings grown for the
    symbols (`--NME--` + `[E-0..n)` for EL, `[R-0..m)` for RE, both for cIE and typed), new heads.
    typed readers read with `use_nme` (relik's cIE training layout) unless told otherwise."""
    rng = jax.random.key(0) if rng is None else rng
    folder = resolve_model_path(encoder)
    symbols = task_symbols(task, entity_symbols, relation_symbols)
    tokenizer = load_tokenizer(folder, symbols)
    _, enc_params, enc_config = load_encoder(folder, vocab_size=len(tokenizer), rng=jax.random.fold_in(rng, 1))
    config = reader_config(
        enc_config, task, entity_symbols=entity_symbols, relation_symbols=relation_symbols,
        linears_hidden_size=linears_hidden_size, use_last_k_layers=use_last_k_layers, threshold=threshold,
        use_nme=use_nme, encoder_has_pooler="pooler" in enc_params,
    )  # fmt: skip
    model = Reader(config, dtype=dtype)
    params = jax.jit(lambda k: model.init(k, dummy_batch(config))["params"])(jax.random.fold_in(rng, 2))
    params = {**jax.tree.map(lambda x: x, params), "transformer_model": enc_params}
    return model, nn.unbox(params), tokenizer
