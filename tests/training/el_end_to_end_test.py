"""EL end to end in training: the reader trained on the retriever's candidates (`reader.candidates =
"retrieved"`), the retriever stage (`reader.retriever = "train"`), and end-to-end dev scores."""

from __future__ import annotations

import json

import jax

from relik_jax.core.types import NME
from relik_jax.inference.relik import Relik
from relik_jax.retriever.dense import DenseRetriever
from relik_jax.training.reader_task import ReaderTask
from tests.training.helpers import config, train_here


def test_retrieved_rows_never_hold_a_gold_title_the_retriever_missed():
    """Each row reads exactly its window's top-k retrieved titles; a gold title outside them is not
    added, and its mention is labelled --NME-- (relik 1.0.7's `use_nme`)."""
    c = config("reader.candidates=retrieved", "data.num_candidates=2", name="aida.py:tiny")
    task = ReaderTask(c)
    docs = task.docs["train"]
    prepared = task.retrieved_windows(docs, task.init_params)
    windows = [(doc, w, [h.text for h in p.retrieved[i][:2]]) for doc, p in zip(docs, prepared)
               for i, w in enumerate(p.windows) if p.candidates[i]]  # fmt: skip
    missed = nme_labels = 0
    j, previous = -1, None
    for row, lab in zip(task.rows, task.labels):  # the rows of one window are consecutive
        if (row.window.doc, row.window.window_id) != previous:
            j, previous = j + 1, (row.window.doc, row.window.window_id)
        doc, w, top = windows[j]
        assert row.window.text == w.text
        assert list(row.columns[2:]) == top  # [CLS] column, --NME--, then exactly the top-k
        lo, hi = w.offset, w.word_end(len(w.words) - 1)
        lost = {t for s, e, t in doc.spans if lo <= s and e <= hi and t != NME} - set(top)
        assert not lost & set(row.columns)
        assert {row.columns[col] for col in lab.columns} <= set(top) | {NME}
        missed += len(lost)
        nme_labels += sum(row.columns[col] == NME for col in lab.columns)
    assert j == len(windows) - 1
    assert missed > 0 and nme_labels > 0  # the untrained retriever's top-2 misses golds: the rule was exercised


def test_gold_plus_distractors_rows_always_hold_the_gold():
    task = ReaderTask(config("data.num_candidates=4", name="aida.py:tiny"))
    for doc in task.docs["train"]:
        assert {t for _, _, t in doc.spans if t != NME} <= set(task.candidates(doc, salt=0))


def test_oke_tiny_trains_the_retriever_then_the_reader_on_its_candidates(tmp_path, capsys):
    w = tmp_path / "w"
    train_here(w, name="oke.py:tiny")
    out = capsys.readouterr().out
    assert "stage 1/2: the retriever" in out and "stage 2/2: the reader on its candidates" in out
    assert "best checkpoint: step 6 (inkb_f1" in out
    rows = [json.loads(x) for x in (w / "metrics.jsonl").read_text().splitlines()]
    dev = [r for r in rows if "dev/inkb_f1" in r]
    assert dev and all(k in dev[-1] for k in ("dev/md_f1", "dev/recall_at_1", "dev/link_f1_given_gold"))
    # the bundle's retriever is the one trained in stage 1 (same question embeddings), over the KB titles
    trained = DenseRetriever.load(w / "retriever" / "export")
    relik = Relik.from_pretrained(w / "bundle")
    q = ["Marie Curie was born in Warsaw ."]
    assert jax.numpy.allclose(relik.retriever.embed_questions(q), trained.embed_questions(q), atol=1e-5)
    assert len(relik.retriever.index) >= 10
    # a second run in the same workdir skips the finished retriever stage
    train_here(w, name="oke.py:tiny")
    assert "stage 1/2" not in capsys.readouterr().out
