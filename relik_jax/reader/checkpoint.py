"""Reader folders: our format, which is relik 1.0.7's (`save_pretrained`) plus the encoder's architecture.

The weights file keeps the official names (`transformer_model.*`, `ned_start_classifier.1.weight`,
...), so a relik_jax reader folder *is* an official one plus a `relik_jax` entry in `config.json`
that records the encoder's architecture (the official file only names it, by hub id or path).

Official folders name their encoder in `transformer_model`; a relative path is resolved against
the reader folder (the fixtures' rule; relik itself resolves it against the working directory),
and only its `config.json` is read. A hub id cannot be resolved offline: pass `encoder_config=`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from relik_jax.core.errors import CheckpointError
from relik_jax.encoders import EncoderConfig
from relik_jax.encoders.hf import (
    flax_path_to_hf,
    load_tokenizer,
    params_to_state_dict,
    read_config,
    read_state_dict,
    save_encoder,
    state_dict_to_params,
)
from relik_jax.reader.model import Reader, ReaderConfig, dummy_batch
from relik_jax.reader.spec import SPECS, spec_of_architecture

_SEQUENTIAL_INDEX = {"in_proj": "1", "out_proj": "4", "LayerNorm": "5"}
_INDEX_SEQUENTIAL = {v: k for k, v in _SEQUENTIAL_INDEX.items()}
ENCODER_PREFIX = "transformer_model."


def official_name(path: Sequence[str]) -> str:
    """Flax path of a Reader parameter → its name in an official checkpoint."""
    if path[0] == "transformer_model":
        return ENCODER_PREFIX + flax_path_to_hf(path[1:])
    leaf = "bias" if path[-1] == "bias" else "weight"
    if path[0] == "ned_end_classifier":  # HF PoolerEndLogits: dense_0, LayerNorm, dense_1
        return f"{path[0]}.{path[1]}.{leaf}"
    return f"{path[0]}.{_SEQUENTIAL_INDEX[path[1]]}.{leaf}"


def _abstract(model: Reader):
    return jax.eval_shape(model.init, jax.random.key(0), dummy_batch(model.config))["params"]


def reader_config_from_official(
    folder: Path, hf: dict[str, Any], state: dict[str, np.ndarray], encoder_config: dict | None
) -> ReaderConfig:
    arch = (hf.get("architectures") or [None])[0]
    n_types = int(hf.get("additional_special_symbols_types") or 0)
    typed = bool(hf.get("entity_type_loss")) and arch == "RelikReaderREModel"
    spec = spec_of_architecture(arch, typed)
    if spec is None:
        raise CheckpointError(
            f"{folder} is not a relik reader folder: architectures={hf.get('architectures')!r} "
            f"(expected one of {sorted({s.architecture for s in SPECS.values()})})"
        )
    if n_types and not typed:
        raise CheckpointError(
            f"{folder}: {n_types} span-candidate symbols but no entity_type_loss: relik 1.0.7 writes those "
            "candidates into the input and never scores them; relik_jax does not support such readers"
        )
    if typed and n_types < 1:
        raise CheckpointError(f"{folder}: entity_type_loss without additional_special_symbols_types")
    if hf.get("relation_disambiguation_loss"):
        raise CheckpointError(f"{folder}: relation_disambiguation_loss readers are not supported")
    enc = encoder_config or (hf.get("relik_jax") or {}).get("encoder")
    if enc is None:
        name = str(hf.get("transformer_model", ""))
        enc_folder = (folder / name) if not Path(name).is_absolute() else Path(name)
        if not (enc_folder / "config.json").is_file():
            raise CheckpointError(
                f"the reader's encoder {name!r} is not a local folder (resolved against {folder}); "
                "pass encoder_config= (the encoder's config.json as a dict) or place the encoder folder there"
            )
        enc = read_config(enc_folder)
    word = state.get(ENCODER_PREFIX + "embeddings.word_embeddings.weight")
    if word is None:
        raise CheckpointError(f"{folder}: no {ENCODER_PREFIX}embeddings.word_embeddings.weight in the weights")
    encoder = EncoderConfig.from_hf(enc).replace(vocab_size=int(word.shape[0]))
    return ReaderConfig(
        task=spec.name,
        encoder=encoder,
        linears_hidden_size=int(hf.get("linears_hidden_size", 512)),
        activation=hf.get("activation", "gelu"),
        use_last_k_layers=int(hf.get("use_last_k_layers", 1)),
        binary_end_logits=True if spec.binary_end else bool(hf.get("binary_end_logits", False)),
        threshold=float(hf.get("threshold") or 0.5),
        additional_special_symbols=int(hf.get("additional_special_symbols", 101)),
        encoder_has_pooler=ENCODER_PREFIX + "pooler.dense.weight" in state,
        additional_special_symbols_types=n_types if typed else 0,
        add_entity_embedding=hf.get("add_entity_embedding") is not False,  # relik: null → true with the type loss
        use_nme=bool((hf.get("relik_jax") or {}).get("use_nme", False)),  # official folders: relik's default
    )


def load_reader(folder: str | Path, *, encoder_config: dict | None = None, dtype: Any = jnp.float32):
    """Loads an official (or relik_jax) reader folder → `(model, params, tokenizer)`."""
    folder = Path(folder)
    hf = read_config(folder)
    if hf.get("model_type") != "relik-reader":
        raise CheckpointError(f"{folder} is not a relik reader folder (model_type={hf.get('model_type')!r})")
    state = read_state_dict(folder)
    config = reader_config_from_official(folder, hf, state, encoder_config)
    model = Reader(config, dtype=dtype)
    params, unused = state_dict_to_params(state, _abstract(model), name_fn=official_name)
    if unused:
        raise CheckpointError(f"{folder}: weights not used by a {config.task} reader: {unused[:5]}")
    tokenizer = load_tokenizer(folder)
    if len(tokenizer) != config.encoder.vocab_size:
        raise CheckpointError(
            f"{folder}: the tokenizer has {len(tokenizer)} tokens but the embeddings {config.encoder.vocab_size} rows"
        )
    return model, params, tokenizer


def official_config(config: ReaderConfig, transformer_model: str) -> dict[str, Any]:
    """The official `config.json` keys for `config`, plus the encoder architecture for relik_jax."""
    spec = config.spec
    return {
        "model_type": "relik-reader",  # (cIE folders load in relik_jax only)
        "architectures": [spec.architecture],
        "transformer_model": transformer_model,
        "additional_special_symbols": config.additional_special_symbols,
        "additional_special_symbols_types": config.additional_special_symbols_types,
        "activation": config.activation,
        "linears_hidden_size": config.linears_hidden_size,
        "use_last_k_layers": config.use_last_k_layers,
        "binary_end_logits": False if spec.binary_end else config.binary_end_logits,
        "entity_type_loss": True if spec.typed else (None if spec.binary_end else False),
        "add_entity_embedding": config.add_entity_embedding if spec.typed else None,
        "num_layers": None,
        "threshold": config.threshold,
        "training": False,
        "default_reader_class": None,
        "torch_dtype": "float32",
        "relik_jax": {"task": config.task, "encoder": config.encoder.to_hf()}
        | ({"use_nme": config.use_nme} if spec.typed else {}),
    }


def save_reader(
    folder: str | Path, config: ReaderConfig, params, tokenizer, *, with_encoder_folder: bool = True
) -> Path:
    """Writes a reader folder that relik_jax and the official relik 1.0.7 both load.

    With `with_encoder_folder`, an `encoder/` sub-folder (the encoder at its base vocabulary, what
    relik's constructor loads before resizing the embeddings) is written and named in
    `transformer_model`, relative to the reader folder.
    """
    folder = Path(folder)
    if with_encoder_folder and not config.spec.official:
        raise CheckpointError(
            "relik 1.0.7 has no equivalent of relik_jax's cIE reader: it cannot be exported to the official format"
        )
    folder.mkdir(parents=True, exist_ok=True)
    transformer_model = "encoder"
    if with_encoder_folder:
        enc_params = jax.tree.map(np.asarray, params["transformer_model"])
        base_vocab = config.base_vocab_size
        table = enc_params["embeddings"]["word_embeddings"]["embedding"]
        enc_params["embeddings"]["word_embeddings"]["embedding"] = table[:base_vocab]
        save_encoder(folder / "encoder", config.encoder.replace(vocab_size=base_vocab), enc_params)
    (folder / "config.json").write_text(json.dumps(official_config(config, transformer_model), indent=2) + "\n")
    save_file(
        params_to_state_dict(params, name_fn=official_name),
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder
