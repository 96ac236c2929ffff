"""relik's `InMemoryDocumentIndex` folders (documents.jsonl + embeddings.pt) ⇄ our `Index`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from relik_jax.core.errors import CheckpointError
from relik_jax.data.jsonl import read_jsonl
from relik_jax.retriever.index import Index


def read_official_index(folder: str | Path) -> Index:
    """relik's `InMemoryDocumentIndex` folder (documents.jsonl + embeddings.pt) → `Index`."""
    folder = Path(folder)
    docs = read_jsonl(folder / "documents.jsonl")
    emb_file = folder / "embeddings.pt"
    if not emb_file.is_file():
        raise CheckpointError(f"{folder} has no embeddings.pt")
    try:
        import torch  # optional and heavy: only official indexes need it
    except ImportError:
        raise CheckpointError(f"{emb_file} is a PyTorch file: install torch==2.13.0 to convert it") from None
    emb = torch.load(emb_file, map_location="cpu", weights_only=True).float().numpy()
    # relik maps score rows to documents by id; rows are the documents sorted by id.
    docs = sorted(docs, key=lambda d: d["id"])
    return Index(
        [str(d["id"]) for d in docs],
        [d["text"] for d in docs],
        emb,
        {"fingerprint": None, "description": f"official index {folder}"},
    )


def write_official_index(folder: str | Path, index: Index) -> Path:
    """`Index` → relik's `InMemoryDocumentIndex` folder (ids become row numbers, as relik requires)."""
    import torch  # optional and heavy: only official indexes need it

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "documents.jsonl").open("w", encoding="utf-8") as f:
        for row, (pid, text) in enumerate(zip(index.ids, index.passages)):
            f.write(json.dumps({"text": text, "id": row, "metadata": {"relik_jax_id": pid}}, ensure_ascii=False) + "\n")
    torch.save(torch.from_numpy(np.ascontiguousarray(index.embeddings, np.float32)), folder / "embeddings.pt")
    (folder / "config.yaml").write_text(
        "_target_: relik.retriever.indexers.inmemory.InMemoryDocumentIndex\nmetadata_fields: []\nseparator: null\nname_or_path: null\n"
    )
    return folder
