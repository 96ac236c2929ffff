"""Inference bundles: one folder, loaded in one call by `Relik.from_pretrained`.

    BUNDLE/relik.json     format, task, settings (top_k, windows, threshold), relation names
    BUNDLE/reader/        a reader folder (`reader.checkpoint.save_reader`: params, config, tokenizer)
    BUNDLE/retriever/     a retriever folder (`DenseRetriever.save`), with its passage index in index/

`load(path)` also takes a training workdir (its `bundle/`, else its exported reader), a bare reader
or retriever folder (ours or official), and an official ReLiK folder (`config.yaml` naming its
reader, retriever encoders and index, converted on the fly). It returns the parts (`Parts`);
`Relik` builds itself from them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from relik_jax.core.errors import CheckpointError, ConfigError
from relik_jax.inference.settings import Settings
from relik_jax.official.relik_folder import is_relik_folder, read_relik_folder
from relik_jax.official.retriever import load_retriever
from relik_jax.reader.checkpoint import save_reader
from relik_jax.reader.pipeline import Calibration, ReaderPipeline
from relik_jax.retriever.dense import DenseRetriever

log = logging.getLogger(__name__)
FORMAT = "relik_jax.bundle"
VERSION = 1
SETTINGS = (
    "top_k",
    "window_size",
    "window_stride",
    "relation_threshold",
    "annotation_type",
    "span_queries",
    "span_merge",
)
READER_OPTIONS = (
    "batch_size", "max_length", "max_starts", "max_entities", "official_decisions", "use_nme", "overflow",
    "calibration",
)  # fmt: skip
RETRIEVER_OPTIONS = ("question_max_length", "passage_max_length")


@dataclasses.dataclass
class Parts:
    """What a model folder holds, loaded: a reader and / or a retriever, relation names, settings."""

    reader: ReaderPipeline | None
    retriever: DenseRetriever | None
    relations: list[str]
    settings: Settings
    candidates: list[str] = dataclasses.field(default_factory=list)  # fixed span candidates (no retriever)


def _dtype(dtype: Any) -> Any:
    if isinstance(dtype, str):
        names = {
            "float32": jnp.float32,
            "fp32": jnp.float32,
            "bfloat16": jnp.bfloat16,
            "bf16": jnp.bfloat16,
            "int8": "int8",
        }
        if dtype not in names:
            raise ConfigError(f"dtype must be float32, bfloat16 or int8, got {dtype!r}")
        return names[dtype]
    return dtype


def save(
    folder: str | Path,
    *,
    task: str,
    reader: ReaderPipeline | None,
    retriever: DenseRetriever | None,
    relations: Sequence[str],
    settings: Settings,
    candidates: Sequence[str] = (),
) -> Path:
    """Writes a reader and / or a retriever with its index, the settings and relation names as a bundle."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "task": task,
        "settings": dataclasses.asdict(settings),
        "relations": list(relations),
        "candidates": list(candidates),
        "reader": None,
        "retriever": None,
    }
    if reader is not None:
        config = dataclasses.replace(reader.model.config, threshold=reader.relation_threshold)
        save_reader(
            folder / "reader", config, reader.params, reader.tokenizer, with_encoder_folder=reader.spec.official
        )
        meta["reader"] = "reader"
        # the batch size too: XLA:CPU's kernels (YNNPACK's fused softmax / LayerNorm on AMX CPUs) are
        # chosen per shape, so other batches can move a score in its last bits
        meta["reader_options"] = {
            "batch_size": reader.batch_size,
            "max_length": reader.max_length,
            "max_starts": reader.max_starts,
            "max_entities": reader.max_entities,
        }
    if retriever is not None:
        retriever.save(folder / "retriever")
        meta["retriever"] = "retriever"
    (folder / "relik.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def load(path: str | Path, *, dtype: Any = "float32", with_retriever: bool = True, **kwargs: Any) -> Parts:
    """The parts of any folder `Relik.from_pretrained` accepts (see the module docstring).

    `dtype` is the reader's compute dtype; the retriever computes in float32 (it is a small part
    of the time, and bfloat16 scores would reorder the top-k, changing the reader's candidates),
    unless `retriever_dtype` says otherwise (bfloat16, or int8: the query encoder's dense layers as
    int8 dots, `DenseRetriever.int8_queries`; the stored passage vectors are unchanged).

    kwargs: settings (`top_k`, `window_size`, `window_stride`, `relation_threshold`,
    `annotation_type`), reader options (`batch_size`, `max_length`, `max_starts`, `max_entities`,
    `official_decisions`; typed readers: `use_nme`, `overflow`; int8: `calibration`, a
    `reader.pipeline.Calibration`, by default the package's texts with the bundle's candidate lists),
    retriever options
    (`question_max_length`, `passage_max_length`), `relations` (relation names for RE / cIE /
    typed), `candidates` (span candidates read when there is no retriever).
    """
    retriever_dtype = _dtype(kwargs.pop("retriever_dtype", "float32"))
    parts = _load(path, dtype, retriever_dtype, with_retriever, kwargs)
    if retriever_dtype == "int8" and parts.retriever is not None:  # the query encoder; passages as stored
        parts.retriever = parts.retriever.int8_queries()
    return parts


def _load(path: str | Path, dtype: Any, retriever_dtype: Any, with_retriever: bool, kwargs: dict) -> Parts:
    if isinstance(retriever_dtype, str):  # int8: the query encoder quantized from its bfloat16 load
        retriever_dtype = jnp.bfloat16
    unknown = set(kwargs) - set(SETTINGS) - set(READER_OPTIONS) - set(RETRIEVER_OPTIONS) - {"relations", "candidates"}
    if unknown:
        raise ConfigError(
            f"unknown option(s) {sorted(unknown)}; known: {SETTINGS + READER_OPTIONS + RETRIEVER_OPTIONS}"
        )
    dtypes = (_dtype(dtype), retriever_dtype)
    folder = Path(path).expanduser()
    if not folder.exists():
        raise CheckpointError(f"{folder} does not exist")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is a file; give the model folder")
    if (folder / "relik.json").is_file():
        return _load_bundle(folder, dtypes, with_retriever, kwargs)
    if (folder / "bundle" / "relik.json").is_file():  # a training workdir
        return _load_bundle(folder / "bundle", dtypes, with_retriever, kwargs)
    if is_relik_folder(folder):
        official = read_relik_folder(folder, with_retriever=with_retriever, retriever_dtype=retriever_dtype)
        defaults = {**official.settings, **({"relations": official.relations} if official.relations else {})}
        return _make(official.reader_folder, None, dtypes, kwargs, defaults, retriever=official.retriever)
    if _is_reader(folder):
        return _make(folder, None, dtypes, kwargs, {})
    if (folder / "question_encoder" / "config.json").is_file():
        return _make(None, folder, dtypes, kwargs, {})
    if _is_reader(folder / "export"):  # a training workdir from before bundles
        return _make(folder / "export", None, dtypes, kwargs, {})
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


def _load_bundle(folder: Path, dtypes, with_retriever: bool, kwargs: dict) -> Parts:
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
    defaults["candidates"] = meta.get("candidates", [])
    return _make(reader, retriever, dtypes, kwargs, defaults)


def _make(reader_folder, retriever_folder, dtypes, kwargs: dict, defaults: dict, retriever=None) -> Parts:
    dtype, retriever_dtype = dtypes
    opts = {**defaults, **kwargs}
    settings = Settings().replace(**{k: opts[k] for k in SETTINGS if k in opts})
    reader = None
    if reader_folder is not None:
        reader_kw = {k: opts[k] for k in READER_OPTIONS if k in opts}
        if dtype == "int8" and "calibration" not in reader_kw:  # SmoothQuant reads the bundle's candidate lists
            reader_kw["calibration"] = Calibration(
                candidates=list(opts.get("candidates") or ()) or None,
                relations=list(opts.get("relations") or ()) or None,
            )
        reader = ReaderPipeline.from_pretrained(
            reader_folder,
            dtype=dtype,
            window_size=settings.window_size,
            window_stride=settings.window_stride,
            relation_threshold=settings.relation_threshold,
            **reader_kw,
        )
    if retriever_folder is not None:
        retriever = load_retriever(
            retriever_folder, dtype=retriever_dtype, **{k: opts[k] for k in RETRIEVER_OPTIONS if k in opts}
        )
    return Parts(reader, retriever, list(opts.get("relations") or ()), settings, list(opts.get("candidates") or ()))
