"""Official retriever folders ⇄ relik_jax, and relik 1.0.7 retrieving with our export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from relik_jax.core.assets import official_python
from relik_jax.data.jsonl import read_jsonl
from relik_jax.official.retriever import load_retriever
from relik_jax.retriever.dense import DenseRetriever


def _convert(*args):
    return subprocess.run(
        [sys.executable, "-m", "relik_jax.convert", *map(str, args)], capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def exported(fixtures_dir, tmp_path_factory):
    """A retriever over the fixture passages, saved ours → exported official → converted back."""
    tmp = tmp_path_factory.mktemp("retriever")
    r = DenseRetriever.from_encoder(fixtures_dir / "models" / "tiny-bert", batch_size=8)
    passages = [p["text"] for p in read_jsonl(fixtures_dir / "retriever" / "passages.jsonl")]
    r.build_index([f"doc{i}" for i in range(len(passages))], passages, progress=False)
    r.save(tmp / "ours")
    assert _convert("export-official-retriever", tmp / "ours", tmp / "official").returncode == 0
    proc = _convert("official-retriever", tmp / "official", tmp / "back")
    assert proc.returncode == 0, proc.stderr
    return r, tmp


def test_official_retriever_round_trip(exported, fixtures_dir):
    r, tmp = exported
    back = DenseRetriever.load(tmp / "back")
    queries = [q["text"] for q in read_jsonl(fixtures_dir / "retriever" / "queries.jsonl")]
    official = load_retriever(tmp / "official")  # the official folder itself, its document_index/ converted
    assert [[h.text for h in hits] for hits in official.retrieve(queries, k=10)] == [
        [h.text for h in hits] for hits in r.retrieve(queries, k=10)
    ]
    np.testing.assert_allclose(back.embed_questions(queries), r.embed_questions(queries), atol=1e-6)
    assert [[h.text for h in hits] for hits in back.retrieve(queries, k=10)] == [
        [h.text for h in hits] for hits in r.retrieve(queries, k=10)
    ]
    docs = read_jsonl(tmp / "official" / "document_index" / "documents.jsonl")
    assert [d["id"] for d in docs] == list(range(len(docs)))  # relik maps score rows to ids


OFFICIAL = r"""
import json, sys, torch
from relik.retriever.pytorch_modules.model import GoldenRetriever
from relik.retriever.indexers.inmemory import InMemoryDocumentIndex
folder, queries = sys.argv[1], json.loads(sys.argv[2])
index = InMemoryDocumentIndex.from_pretrained(folder + "/document_index", device="cpu", precision=32)
r = GoldenRetriever(question_encoder=folder + "/question_encoder", document_index=index, device="cpu", precision=32)
r.eval()
out = r.retrieve(queries, k=10, batch_size=8)
print(json.dumps([[x.document.text for x in hits] for hits in out]))
"""


def test_official_package_retrieves_with_our_export(exported, fixtures_dir):
    python = official_python()
    if python is None:
        pytest.skip(
            "official relik venv not found: run ../shared/bench/setup_official.sh (or set RELIK_OFFICIAL_PYTHON)"
        )
    r, tmp = exported
    queries = [q["text"] for q in read_jsonl(fixtures_dir / "retriever" / "queries.jsonl")][:8]
    proc = subprocess.run([str(python), "-c", OFFICIAL, str(tmp / "official"), json.dumps(queries)], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = [[h.text for h in hits] for hits in r.retrieve(queries, k=10)]
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ours, theirs)])
    assert agree >= 0.95, agree  # float-level ties aside, the same top-10
