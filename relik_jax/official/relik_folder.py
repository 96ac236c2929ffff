"""Official ReLiK folders (`relik.Relik.save_pretrained`): a `config.yaml` naming the reader, the
retriever's encoders and the index, read into our parts (converted on the fly)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import yaml

from relik_jax.core.errors import CheckpointError
from relik_jax.official.index import read_official_index
from relik_jax.retriever.dense import DenseRetriever


@dataclasses.dataclass
class OfficialRelik:
    """What an official ReLiK folder holds, in our terms."""

    reader_folder: Path | None
    retriever: DenseRetriever | None
    settings: dict[str, Any]  # top_k, window_size, window_stride, where the config sets them
    relations: list[str] = dataclasses.field(default_factory=list)  # typed (relik-cie): the triplet index's texts


def is_relik_folder(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and not (folder / "documents.jsonl").is_file()


def read_relik_folder(
    folder: Path, *, with_retriever: bool = True, retriever_dtype: Any = jnp.float32
) -> OfficialRelik:
    """The reader folder, the retriever (with its index) and the settings of an official ReLiK folder."""
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
    relations: list[str] = []
    if reader_folder is not None and task == "triplet" and _typed_reader(reader_folder):
        # relik-cie: the span retriever fills the span candidates; we read every relation of the
        # triplet retriever's index in every window (relik retrieves top_k of them per window)
        task = "span"
        idx = (config.get("index") or {}).get("triplet")
        if idx:
            relations = list(read_official_index(local(idx, "triplet index")).passages)
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
            retriever = DenseRetriever.from_towers(question, passage, index, dtype=retriever_dtype)
    settings = {k: config[k] for k in ("top_k", "window_size", "window_stride") if config.get(k) is not None}
    return OfficialRelik(reader_folder, retriever, settings, relations)


def _typed_reader(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "config.json").read_text()).get("entity_type_loss"))
    except (OSError, ValueError):
        return False
