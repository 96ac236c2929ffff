"""`python -m relik_jax.index` (build, add) in-process, and its result as a model."""

from __future__ import annotations

import json

import pytest

from relik_jax.cli import index
from relik_jax.core.errors import DataError
from relik_jax.inference.relik import Relik
from relik_jax.retriever.dense import DenseRetriever


def test_index_build_add_and_retrieve(tmp_path, fixtures_dir, capsys):
    p1 = tmp_path / "p1.jsonl"
    p1.write_text("\n".join(json.dumps({"id": t, "title": t, "text": f"the city of {t}"}) for t in ["Paris", "Rome"]))
    enc = fixtures_dir / "models" / "tiny-bert"
    assert index.main(["build", str(p1), str(tmp_path / "ret"), "--encoder", str(enc)]) == 0
    p2 = tmp_path / "p2.tsv"
    p2.write_text("Berlin\tthe capital of Germany\n")
    assert index.main(["add", str(tmp_path / "ret"), str(p2)]) == 0
    assert "(2 → 3)" in capsys.readouterr().err
    relik = Relik.from_pretrained(tmp_path / "ret")
    assert relik.task == "retrieval"
    hit = relik("Berlin <def> the capital of Germany", top_k=1).windows[0].retrieved[0]
    assert hit.id == "Berlin" and hit.text == "Berlin <def> the capital of Germany"
    with pytest.raises(DataError, match="already in the index"):
        index.main(["add", str(tmp_path / "ret"), str(p2)])
    assert len(DenseRetriever.load(tmp_path / "ret").index) == 3  # unchanged by the refused add
    with pytest.raises(DataError, match="not empty"):
        index.main(["build", str(p1), str(tmp_path / "ret"), "--encoder", str(enc)])
