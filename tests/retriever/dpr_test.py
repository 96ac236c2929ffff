"""Retriever data: EL/RE → DPR conversion, DPR reading, static batches."""

from __future__ import annotations

import json

import pytest

from relik_jax.cli import to_dpr
from relik_jax.core.errors import DataError
from relik_jax.data.formats import DPRSample, dpr_sample
from relik_jax.data.jsonl import iter_jsonl
from relik_jax.retriever.dpr import make_batch


def read_dpr(path):
    return [dpr_sample(r, f"{path}:{n}", n) for n, r in iter_jsonl(path)]


def test_el_and_re_to_dpr_cli(data_dir, tmp_path):
    out = tmp_path / "el.jsonl"
    assert to_dpr.main(["el", str(data_dir / "oke2015" / "train.jsonl"), str(out),
                        "--kb", str(data_dir / "kb" / "gold_titles.tsv")]) == 0  # fmt: skip
    samples = read_dpr(out)
    assert len(samples) > 50 and all(s.positives for s in samples)
    assert any(len(s.positives) > 1 for s in samples)
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) == {"question", "positive_ctxs", "negative_ctxs", "hard_negative_ctxs"}
    out_re = tmp_path / "re.jsonl"
    assert to_dpr.main(["re", str(data_dir / "conll04" / "dev.jsonl"), str(out_re),
                        "--relations", str(data_dir / "relations" / "conll04.tsv")]) == 0  # fmt: skip
    re_samples = read_dpr(out_re)
    assert re_samples and all(" <def> " in p for s in re_samples for p in s.positives)


def test_read_dpr_bad_records(tmp_path):
    p = tmp_path / "dpr.jsonl"
    p.write_text(
        json.dumps({"question": "q", "positive_ctxs": [{"text": "a"}]})
        + "\n"
        + json.dumps({"question": "q2", "positive_ctxs": []})
        + "\n"
    )
    with pytest.raises(DataError, match=r"dpr.jsonl:2: a DPR record needs"):
        read_dpr(p)


def test_make_batch_keeps_positives_and_pads(minilm):
    from relik_jax.retriever.dense import DenseRetriever

    r = DenseRetriever.from_encoder("minilm", batch_size=4)
    samples = [DPRSample("q1", ["a", "b"], ["n1"], ["h1", "h2"]), DPRSample("q2", ["b", "c"], ["n2"])]
    batch = make_batch(samples, r.tokenize, questions=4, passages=6, question_max_length=16, passage_max_length=16)
    assert batch["q_ids"].shape[0] == 4 and batch["p_ids"].shape[0] == 6
    assert batch["q_valid"].tolist() == [True, True, False, False]
    assert batch["targets"].sum(1).tolist() == [2, 2, 0, 0]
    assert batch["p_valid"].sum() == 6  # a, b, c, h1, h2, n1 (n2 does not fit: negatives are cut, never positives)
    with pytest.raises(DataError, match="positives of the batch exceed"):
        make_batch(samples, r.tokenize, questions=4, passages=2, question_max_length=16, passage_max_length=16)
