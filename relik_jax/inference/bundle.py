"""Inference bundles: one folder, loaded in one call by `Relik.from_pretrained`.

    BUNDLE/relik.json     format, task, settings (top_k, windows, threshold), relation names
    BUNDLE/reader/        a reader folder (`convert.official.save_reader`: params, config, tokenizer)
    BUNDLE/retriever/     a retriever folder (`DenseRetriever.save`), with its passage index in index/

`load(path)` also takes a training workdir (its `bundle/`, else its exported reader), a bare reader
or retriever folder (ours or official), and an official ReLiK folder (`config.yaml` naming its
reader, retriever encoders and index, converted on the fly).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from relik_jax.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)
FORMAT = "relik_jax.bundle"
VERSION = 1
SETTINGS = ("top_k", "window_size", "window_stride", "relation_threshold", "annotation_type")
READER_OPTIONS = ("batch_size", "max_length", "max_starts", "max_entities", "official_decisions")
RETRIEVER_OPTIONS = ("question_max_length", "passage_max_length")


def _dtype(dtype: Any) -> Any:
    if isinstance(dtype, str):
        names = {"float32": jnp.float32, "fp32": jnp.float32, "bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16}
        if dtype not in names:
            raise ConfigError(f"dtype must be float32 or bfloat16, got {dtype!r}")
        return names[dtype]
    return dtype


def save(relik: Any, folder: str | Path) -> Path:
    """Writes `relik` (reader and/or retriever with its index, settings, relation names) as a bundle."""
    import dataclasses

    from relik_jax.convert.official import save_reader

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "task": relik.task,
        "settings": dataclasses.asdict(relik.settings),
        "relations": list(relik.relations),
        "reader": None,
        "retriever": None,
    }
    if relik.reader is not None:
        r = relik.reader
        config = dataclasses.replace(r.model.config, threshold=r.relation_threshold)
        save_reader(folder / "reader", config, r.params, r.tokenizer, with_encoder_folder=r.task != "cie")
        meta["reader"] = "reader"
        meta["reader_options"] = {
            "max_length": r.max_length,
            "max_starts": r.max_starts,
            "max_entities": r.max_entities,
        }
    if relik.retriever is not None:
        relik.retriever.save(folder / "retriever")
        meta["retriever"] = "retriever"
    (folder / "relik.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def load(path: str | Path, *, dtype: Any = "float32", with_retriever: bool = True, **kwargs: Any):
    """A `Relik` from any folder `Relik.from_pretrained` accepts (see the module docstring).

    `dtype` is the reader's compute dtype; the retriever computes in float32 (it is a small part
    of the time, and bfloat16 scores would reorder the top-k, changing the reader's candidates),
    unless `retriever_dtype` says otherwise.

    kwargs: settings (`top_k`, `window_size`, `window_stride`, `relation_threshold`,
    `annotation_type`), reader options (`batch_size`, `max_length`, `max_starts`, `max_entities`,
    `official_decisions`), retriever options (`question_max_length`, `passage_max_length`),
    `relations` (relation names for RE / cIE).
    """
    retriever_dtype = _dtype(kwargs.pop("retriever_dtype", "float32"))
    unknown = set(kwargs) - set(SETTINGS) - set(READER_OPTIONS) - set(RETRIEVER_OPTIONS) - {"relations"}
    if unknown:
        raise ConfigError(
            f"unknown option(s) {sorted(unknown)}; known: {SETTINGS + READER_OPTIONS + RETRIEVER_OPTIONS}"
        )
    dtype = _dtype(dtype)
    folder = Path(path).expanduser()
    if not folder.exists():
        raise CheckpointError(f"{folder} does not exist")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is a file; give the model folder")
    if (folder / "relik.json").is_file():
        return _load_bundle(folder, (dtype, retriever_dtype), with_retriever, kwargs)
    if (folder / "bundle" / "relik.json").is_file():  # a training workdir
        return _load_bundle(folder / "bundle", (dtype, retriever_dtype), with_retriever, kwargs)
    if (folder / "config.yaml").is_file() and not (folder / "documents.jsonl").is_file():
        return _load_official(folder, (dtype, retriever_dtype), with_retriever, kwargs)
    if _is_reader(folder):
        return _make(folder, None, (dtype, retriever_dtype), kwargs, {})
    if (folder / "question_encoder" / "config.json").is_file():
        return _make(None, folder, (dtype, retriever_dtype), kwargs, {})
    if _is_reader(folder / "export"):  # a training workdir from before bundles
        return _make(folder / "export", None, (dtype, retriever_dtype), kwargs, {})
    raise CheckpointError(
        f"{folder} is not a model folder relik_jax can load: expected a bundle (relik.json), a training "
        "workdir (bundle/ or export/), a reader folder (config.json with model_type relik-reader), a retriever "
        "folder (question_encoder/), or an official ReLiK folder (config.yaml)"
    )


def _is_reader(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type") == "relik-reader"
    except (OSError, ValueError):
        return False


def _load_bundle(folder: Path, dtypes, with_retriever: bool, kwargs: dict) -> Any:
    try:
        meta = json.loads((folder / "relik.json").read_text())
    except ValueError as e:
        raise CheckpointError(f"{folder / 'relik.json'} is not valid JSON: {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{folder / 'relik.json'} is not a relik_jax bundle (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > VERSION:
        raise CheckpointError(f"{folder} is bundle version {meta['version']}; this relik_jax reads up to {VERSION}")
    reader = folder / meta["reader"] if meta.get("reader") else None
    retriever = folder / meta["retriever"] if meta.get("retriever") and with_retriever else None
    defaults = {
        **meta.get("reader_options", {}),
        **{k: v for k, v in meta.get("settings", {}).items() if v is not None},
    }
    defaults["relations"] = meta.get("relations", [])
    return _make(reader, retriever, dtypes, kwargs, defaults)


def _make(reader_folder, retriever_folder, dtypes, kwargs: dict, defaults: dict, retriever=None) -> Any:
    from relik_jax.inference.reader import ReaderPipeline
    from relik_jax.inference.relik import Relik, Settings
    from relik_jax.retrieval.retriever import DenseRetriever

    dtype, retriever_dtype = dtypes
    opts = {**defaults, **kwargs}
    settings = Settings().replace(**{k: opts[k] for k in SETTINGS if k in opts})
    reader = None
    if reader_folder is not None:
        reader_kw = {k: opts[k] for k in READER_OPTIONS if k in opts}
        reader = ReaderPipeline.from_pretrained(
            reader_folder,
            dtype=dtype,
            window_size=settings.window_size,
            window_stride=settings.window_stride,
            relation_threshold=settings.relation_threshold,
            **reader_kw,
        )
    if retriever_folder is not None:
        retriever = DenseRetriever.load(
            retriever_folder, dtype=retriever_dtype, **{k: opts[k] for k in RETRIEVER_OPTIONS if k in opts}
        )
    return Relik(reader, retriever, relations=opts.get("relations") or (), settings=settings)


def _load_official(folder: Path, dtypes, with_retriever: bool, kwargs: dict) -> Any:
    """An official ReLiK folder: `config.yaml` names the reader, the retriever encoders and the index."""
    import yaml

    from relik_jax.convert.official import read_official_index
    from relik_jax.retrieval.retriever import DenseRetriever

    try:
        config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    except yaml.YAMLError as e:
        raise CheckpointError(f"{folder / 'config.yaml'} is not valid YAML: {e}") from None
    if not isinstance(config, dict) or not ({"reader", "retriever"} & set(config)):
        raise CheckpointError(f"{folder / 'config.yaml'} is not an official ReLiK config (no reader or retriever)")

    def local(name: Any, what: str) -> Path:
        """A path named in the config: as written, relative to the folder, or a folder of that name inside it."""
        if isinstance(name, dict):
            name = name.get("transformer_model") or name.get("name_or_path")
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{folder / 'config.yaml'}: no {what} path")
        for p in (Path(name), folder / name):
            if p.is_dir():
                return p
        found = [p for p in folder.rglob(Path(name).name) if p.is_dir()]
        if found:
            return found[0]
        raise CheckpointError(
            f"{folder / 'config.yaml'} names the {what} {name!r}, which is not a local folder (hub models "
            "cannot be downloaded here: download the folder and put it inside the ReLiK folder)"
        )

    reader_folder = local(config["reader"], "reader") if config.get("reader") else None
    task = str(config.get("task", "span")).lower().split(".")[-1]
    task = "triplet" if task == "triplet" else "span"
    retriever = None
    if with_retriever and isinstance(config.get("retriever"), dict):
        entry = config["retriever"].get(task) or config["retriever"].get(task.upper())
        if entry:
            question = local(entry.get("question_encoder"), "question encoder")
            passage = local(entry["passage_encoder"], "passage encoder") if entry.get("passage_encoder") else None
            index = None
            idx = (config.get("index") or {}).get(task)
            if idx:
                index = read_official_index(local(idx, "index"))
            retriever = DenseRetriever.from_towers(question, passage, index, dtype=dtypes[1])
    defaults = {k: config[k] for k in ("top_k", "window_size", "window_stride") if config.get(k) is not None}
    return _make(reader_folder, None, dtypes, kwargs, defaults, retriever=retriever)
