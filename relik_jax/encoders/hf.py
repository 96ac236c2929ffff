"""Hugging Face folders ⇄ Flax encoder parameters.

A folder holds `config.json` and `model.safetensors` (or a sharded safetensors index, or
`pytorch_model.bin` when torch is installed). Parameter names map mechanically: the Flax tree
mirrors the PyTorch module tree, `layer_3` is `layer.3`, `kernel`/`scale`/`embedding` are `weight`
(linear kernels transposed, conv kernels reordered).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import transformers
from safetensors import safe_open
from safetensors.numpy import save_file
from transformers import AutoTokenizer

from relik_jax.core.errors import CheckpointError
from relik_jax.encoders import EncoderConfig, build_encoder
from relik_jax.encoders.layers import EncoderModule

log = logging.getLogger(__name__)

Params = dict[str, Any]
# Prefixes of task models (`BertForMaskedLM.bert.*`, `DebertaV2ForMaskedLM.deberta.*`, relik readers).
ENCODER_PREFIXES = ("", "bert.", "deberta.", "model.", "transformer_model.")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "spm.model",
    "added_tokens.json",
)
_LAYER_RE = re.compile(r"^(.*)_(\d+)$")


# ----------------------------------------------------------------------------------------------
# Names


def flax_path_to_hf(path: Sequence[str]) -> str:
    """`('encoder', 'layer_3', 'attention', 'self', 'query', 'kernel')` → HF parameter name."""
    parts = []
    for p in path[:-1]:
        m = _LAYER_RE.match(p)
        parts.extend([m.group(1), m.group(2)] if m and m.group(1) == "layer" else [p])
    leaf = path[-1]
    parts.append("bias" if leaf == "bias" else "weight")
    return ".".join(parts)


def _swap_layout(leaf: str, x: np.ndarray) -> np.ndarray:
    """Flax ⇄ PyTorch layout of a parameter (its own inverse): linear kernels `[in, out]` ⇄
    `[out, in]`, conv kernels `[k, in, out]` ⇄ `[out, in, k]`; everything else as is."""
    if leaf == "kernel" and x.ndim == 2:
        return x.T
    if leaf == "kernel" and x.ndim == 3:
        return x.transpose(2, 1, 0)
    return x


# ----------------------------------------------------------------------------------------------
# Reading folders


def read_config(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder {folder} does not exist")
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json: not a Hugging Face model folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def read_state_dict(folder: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a HF folder as numpy arrays (float tensors as float32)."""
    folder = Path(folder)
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    bin_file = folder / "pytorch_model.bin"
    if single.is_file():
        files = [single]
    elif index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({folder / f for f in weight_map.values()})
    elif bin_file.is_file():
        return _read_torch_bin(bin_file)
    else:
        raise CheckpointError(
            f"{folder} has no weights (expected model.safetensors, model.safetensors.index.json or pytorch_model.bin)"
        )
    out: dict[str, np.ndarray] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="np") as st:
                for k in st.keys():  # noqa: SIM118 - safe_open is not a dict
                    out[k] = st.get_tensor(k)
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"cannot read {f}: {e}") from None
    return out


def _read_torch_bin(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch  # optional and heavy: only `pytorch_model.bin` folders need it
    except ImportError:
        raise CheckpointError(
            f"{path} is a PyTorch pickle; install torch (pip install torch==2.13.0) to read it, "
            "or convert the folder to model.safetensors"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def _legacy_names(name: str) -> Iterable[str]:
    yield name
    if name.endswith("LayerNorm.weight"):
        yield name[: -len("weight")] + "gamma"
    if name.endswith("LayerNorm.bias"):
        yield name[: -len("bias")] + "beta"


def find_prefix(state: Mapping[str, np.ndarray], probe: str = "embeddings.word_embeddings.weight") -> str:
    """The prefix under which the encoder's parameters are stored (`''`, `'bert.'`, ...)."""
    for prefix in ENCODER_PREFIXES:
        if prefix + probe in state:
            return prefix
    raise CheckpointError(f"no encoder weights found: missing key {probe!r} (tried prefixes {ENCODER_PREFIXES})")


# ----------------------------------------------------------------------------------------------
# State dict <-> params


def abstract_params(module: EncoderModule, length: int = 8) -> Params:
    """Shapes (and logical axes) of a module's params, without allocating them."""
    ids = jnp.zeros((1, length), jnp.int32)
    return jax.eval_shape(module.init, jax.random.key(0), ids)["params"]


def state_dict_to_params(
    state: Mapping[str, np.ndarray], target: Params, prefix: str = "", name_fn=flax_path_to_hf
) -> tuple[Params, list[str]]:
    """Fills `target`'s structure from `state`; returns params and the state keys not used.

    `name_fn` maps a Flax parameter path to its PyTorch name (prefixed by `prefix`). Raises
    `CheckpointError` naming the missing keys or the first shape mismatch.
    """
    flat = flax.traverse_util.flatten_dict(nn.unbox(target))
    used: set[str] = set()
    out: dict[tuple[str, ...], np.ndarray] = {}
    missing = []
    for path, shape_dtype in flat.items():
        name = name_fn(path)
        key = next((prefix + n for n in _legacy_names(name) if prefix + n in state), None)
        if key is None:
            missing.append(prefix + name)
            continue
        value = _swap_layout(path[-1], np.asarray(state[key]))
        if value.shape != tuple(shape_dtype.shape):
            raise CheckpointError(
                f"weight {key} has shape {list(value.shape)}, but the config implies {list(shape_dtype.shape)}"
            )
        out[path] = value.astype(shape_dtype.dtype)
        used.add(key)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(f"checkpoint is missing {len(missing)} weight(s): {shown}")
    unused = sorted(k for k in state if k.startswith(prefix) and k not in used)
    return flax.traverse_util.unflatten_dict(out), unused


def params_to_state_dict(params: Params, prefix: str = "", name_fn=flax_path_to_hf) -> dict[str, np.ndarray]:
    """The PyTorch-layout state dict of a param tree (names from `name_fn`)."""
    flat = flax.traverse_util.flatten_dict(nn.unbox(params))
    return {
        prefix + name_fn(path): np.ascontiguousarray(_swap_layout(path[-1], np.asarray(v, np.float32)))
        for path, v in flat.items()
    }


# ----------------------------------------------------------------------------------------------
# Public API


def grow_embeddings(params: Params, new_vocab_size: int, rng: jax.Array) -> Params:
    """Appends rows to the word embeddings (mean of the old rows + N(0, std of the old rows)).

    New rows start near the centre of the pretrained embedding cloud, as transformers'
    `resize_token_embeddings` does, so that added symbols begin as "typical" tokens.
    """
    table = np.asarray(params["embeddings"]["word_embeddings"]["embedding"])
    old = table.shape[0]
    if new_vocab_size < old:
        raise CheckpointError(f"cannot shrink the vocabulary from {old} to {new_vocab_size}")
    if new_vocab_size == old:
        return params
    noise = np.asarray(jax.random.normal(rng, (new_vocab_size - old, table.shape[1]), jnp.float32))
    rows = table.mean(0, keepdims=True) + noise * table.std()
    grown = np.concatenate([table, rows.astype(table.dtype)], 0)
    params = flax.core.unfreeze(params) if isinstance(params, flax.core.FrozenDict) else dict(params)
    params["embeddings"] = {**params["embeddings"], "word_embeddings": {"embedding": grown}}
    return params


def load_encoder(
    folder: str | Path,
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    vocab_size: int | None = None,
    rng: jax.Array | None = None,
) -> tuple[EncoderModule, Params, EncoderConfig]:
    """Loads a HF folder into a Flax encoder; returns `(module, params, config)`.

    `vocab_size` larger than the checkpoint's grows the word embeddings (for added special
    symbols). Params are plain numpy-backed pytrees (`jax.device_put` them where they belong).
    """
    folder = Path(folder)
    config = EncoderConfig.from_hf(read_config(folder))
    state = read_state_dict(folder)
    prefix = find_prefix(state)
    checkpoint_vocab = state[prefix + "embeddings.word_embeddings.weight"].shape[0]
    with_pooler = prefix + "pooler.dense.weight" in state
    config = config.replace(vocab_size=checkpoint_vocab)
    module = build_encoder(config, dtype=dtype, param_dtype=param_dtype, with_pooler=with_pooler)
    params, unused = state_dict_to_params(state, abstract_params(module), prefix)
    ignorable = ("position_ids", "lm_predictions", "mask_predictions", "cls.", "lm_head")
    unused = [k for k in unused if not any(s in k for s in ignorable)]
    if unused:
        log.info("ignored %d weights of %s not used by the encoder: %s", len(unused), folder, unused[:5])
    if vocab_size is not None and vocab_size != checkpoint_vocab:
        params = grow_embeddings(params, vocab_size, rng if rng is not None else jax.random.key(0))
        config = config.replace(vocab_size=vocab_size)
        module = build_encoder(config, dtype=dtype, param_dtype=param_dtype, with_pooler=with_pooler)
    return module, params, config


def save_encoder(
    folder: str | Path, config: EncoderConfig, params: Params, tokenizer_from: str | Path | Any | None = None
) -> Path:
    """Writes `config.json` + `model.safetensors` that transformers' PyTorch classes load.

    `tokenizer_from` is a tokenizer object (saved with `save_pretrained`) or a folder whose
    tokenizer files are copied.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = np.asarray(params["embeddings"]["word_embeddings"]["embedding"]).shape[0]
    hf = config.replace(vocab_size=vocab).to_hf()
    (folder / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n")
    save_file(params_to_state_dict(params), str(folder / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer_from is not None:
        if hasattr(tokenizer_from, "save_pretrained"):
            tokenizer_from.save_pretrained(str(folder))
        else:
            for name in TOKENIZER_FILES:
                src = Path(tokenizer_from) / name
                if src.is_file() and src.resolve() != (folder / name).resolve():
                    shutil.copy2(src, folder / name)
    return folder


def load_tokenizer(folder: str | Path, extra_special_tokens: Sequence[str] = ()):
    """`transformers.AutoTokenizer` on a local folder (never the hub), with added special tokens."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"tokenizer folder {folder} does not exist")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # a relik-reader config.json draws an "unknown model type" notice
    try:
        # trust_remote_code=False: official reader folders carry an auto_map to their own code, for
        # which transformers would otherwise prompt on stdin. The tokenizer class is a standard one.
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load a tokenizer from {folder}: {str(e).splitlines()[0]}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    if extra_special_tokens:
        tok.add_tokens(list(extra_special_tokens), special_tokens=True)
    return tok
