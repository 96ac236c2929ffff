"""Official relik retriever folders (`GoldenRetriever`: question_encoder/, optional passage_encoder/,
document_index/ with documents.jsonl + embeddings.pt) ⇄ our `DenseRetriever`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relik_jax.official.index import read_official_index, write_official_index
from relik_jax.retriever.dense import DenseRetriever, save_tower


def load_retriever(folder: str | Path, *, with_index: bool = True, **kwargs: Any) -> DenseRetriever:
    """A retriever folder, ours or official (an official `document_index/` is converted on the way)."""
    folder = Path(folder)
    retriever = DenseRetriever.load(folder, with_index=with_index, **kwargs)
    official = folder / "document_index"
    if with_index and retriever.index is None and (official / "documents.jsonl").is_file():
        retriever.attach(read_official_index(official))
    return retriever


def save_official_retriever(retriever: DenseRetriever, folder: str | Path) -> Path:
    """Writes `retriever` as an official relik retriever folder (its index as a `document_index/`)."""
    folder = Path(folder)
    c = retriever.model.config
    save_tower(folder / "question_encoder", c.question, retriever.params["question_encoder"], retriever.tokenizer)
    if not c.shared:
        save_tower(folder / "passage_encoder", c.passage, retriever.params["passage_encoder"], retriever.tokenizer)
    if retriever.index is not None:
        write_official_index(folder / "document_index", retriever.index)
    return folder
