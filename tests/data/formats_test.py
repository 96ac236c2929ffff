"""Data readers: real data loads; bad records are refused with file and line."""

from __future__ import annotations

import json

import pytest

from relik_jax.core.errors import DataError
from relik_jax.data.formats import read_el, read_re


def test_real_datasets_load(data_dir):
    el = read_el(data_dir / "oke2015" / "train.jsonl")
    re = read_re(data_dir / "conll04" / "dev.jsonl")
    assert len(el) == 95 and sum(len(d.spans) for d in el) == 341
    assert len(re) == 231 and sum(len(d.triplets) for d in re) == 343
    d = el[0]
    for s, e, title in d.spans:
        assert d.text[s:e] and title


def _write(tmp_path, records):
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return p


@pytest.mark.parametrize(
    "record,message",
    [
        (
            {"doc_text": "Rome is big", "doc_span_annotations": [[5, 3, "X"]]},
            r"data.jsonl:2: span \[5, 3\) ends before it starts",
        ),
        (
            {"doc_text": "Rome", "doc_span_annotations": [[0, 9, "X"]]},
            r"data.jsonl:2: span \[0, 9\) is outside the text \(4 characters\)",
        ),
        ({"doc_text": "Rome", "doc_span_annotations": [[-1, 2, "X"]]}, r"outside the text"),
        ({"text_missing": 1}, r"data.jsonl:2: no 'doc_text' string"),
        ('{"doc_text": "broken', r"data.jsonl:2: malformed JSON"),
        ("[1, 2]", r"data.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_el_records(tmp_path, record, message):
    path = _write(tmp_path, [{"doc_text": "ok", "doc_span_annotations": []}, record])
    with pytest.raises(DataError, match=message):
        read_el(path)


def test_bad_re_records(tmp_path):
    good = {"doc_words": ["a", "b"], "doc_span_annotations": [[0, 1, "X"]], "doc_triplet_annotations": []}
    bad = dict(good, doc_triplet_annotations=[{"subject": [0, 1], "relation": "r", "object": [1, 5]}])
    with pytest.raises(DataError, match=r"data.jsonl:2: span \[1, 5\) is outside the text \(2 words\)"):
        read_re(_write(tmp_path, [good, bad]))
    with pytest.raises(DataError, match="does not exist"):
        read_re(tmp_path / "missing.jsonl")
