"""End-to-end EL evaluation: the GERBIL InKB strong-match counts on hand-made documents, and
`relik-jax evaluate` on a real (fixture) bundle: its table, JSON, `--kb`, and one-line errors."""

from __future__ import annotations

import json

import pytest

from relik_jax.cli import evaluate as evaluate_cli
from relik_jax.core.errors import DataError
from relik_jax.core.types import NME, Span
from relik_jax.data.formats import read_el
from relik_jax.evaluation import el
from relik_jax.inference.relik import Relik
from relik_jax.reader.outputs import RelikOutput, WindowOutput
from relik_jax.retriever.dense import DenseRetriever, Hit

DOCS = [
    {"doc_id": "a", "doc_text": "Marie Curie was born in Warsaw.",
     "doc_span_annotations": [[0, 11, "Marie Curie"], [24, 30, "Warsaw"]]},
    {"doc_id": "b", "doc_text": "He met Pierre in Paris.",
     "doc_span_annotations": [[0, 2, NME], [7, 13, "Pierre Curie"], [17, 22, "Paris"]]},
    {"doc_id": "c", "doc_text": "Nothing here.", "doc_span_annotations": []},
]  # fmt: skip
# per document: predicted (start, end, label) and the window's retrieved passage texts, best first
PREDICTIONS = {
    "Marie Curie was born in Warsaw.": ([(0, 11, "Marie Curie"), (24, 30, "Warsaw, Indiana")],
                                        ["Warsaw", "Marie Curie <def> physicist", "Paris"]),
    "He met Pierre in Paris.": ([(0, 2, "Marie Curie"), (7, 13, NME), (17, 21, "Paris")],  # NME gold linked,
                                ["Paris", "Pierre", "Warsaw"]),                          # NME pred, partial span
    "Nothing here.": ([(0, 7, "Nothing (song)")], ["Warsaw"]),
}  # fmt: skip


def _write(path, docs):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def _stub(texts):
    """Fixed predictions, shaped as `Relik` returns them (one window per document)."""
    outs = []
    for t in texts:
        spans, passages = PREDICTIONS[t]
        hits = [Hit(p, p, 1.0 - i / 10) for i, p in enumerate(passages)]
        window = WindowOutput(0, 0, t, t.split(), [], retrieved=hits)
        outs.append(RelikOutput(t, [Span(s, e, lab, t[s:e]) for s, e, lab in spans], windows=[window]))
    return outs


def test_hand_computed_inkb_md_and_recall(tmp_path):
    docs = read_el(_write(tmp_path / "three.jsonl", DOCS))
    counts = el.evaluate_documents(_stub, docs, progress=False, chunk=2)
    m = counts.metrics()
    # InKB: gold = Marie Curie, Warsaw, Pierre Curie, Paris (the NME "He" is not counted) = 4;
    # predicted = 5 (the NME-linked "Pierre" is not counted; "Marie Curie" on the NME gold "He" is);
    # correct = Marie Curie only (Warsaw has the wrong title, "Pari" the wrong span)
    assert (counts.inkb.tp, counts.inkb.predicted, counts.inkb.gold) == (1, 5, 4)
    assert m["inkb_precision"] == pytest.approx(1 / 5)
    assert m["inkb_recall"] == pytest.approx(1 / 4)
    assert m["inkb_f1"] == pytest.approx(2 * 0.2 * 0.25 / 0.45)
    # MD (spans only, NME included): gold 5, predicted 6, correct 4 (all but "Pari" and "Nothing")
    assert (counts.md.tp, counts.md.predicted, counts.md.gold) == (4, 6, 5)
    assert m["md_f1"] == pytest.approx(16 / 22)
    # recall@k over (window, gold title) pairs: 4 pairs; top-1 finds Warsaw and Paris; "Pierre" is
    # not "Pierre Curie"; "Marie Curie <def> physicist" is Marie Curie at rank 2
    assert counts.recall_total == 4
    assert m["recall_at_1"] == pytest.approx(2 / 4)
    assert m["recall_at_10"] == m["recall_at_100"] == pytest.approx(3 / 4)
    assert m["documents"] == 3


def test_micro_sums_counts_not_f1s(tmp_path):
    docs = read_el(_write(tmp_path / "three.jsonl", DOCS))
    a = el.evaluate_documents(_stub, docs[:1], progress=False)
    b = el.evaluate_documents(_stub, docs[1:], progress=False)
    total = el.micro([a, b])
    whole = el.evaluate_documents(_stub, docs, progress=False)
    assert total.metrics()["inkb_f1"] == pytest.approx(whole.metrics()["inkb_f1"])
    assert total.metrics()["inkb_f1"] != pytest.approx((a.metrics()["inkb_f1"] + b.metrics()["inkb_f1"]) / 2)


def test_a_span_with_two_titles_is_one_clear_error(tmp_path):
    bad = [{"doc_text": "Paris.", "doc_span_annotations": [[0, 5, "Paris"], [0, 5, "Paris, Texas"]]}]
    docs = read_el(_write(tmp_path / "bad.jsonl", bad))
    with pytest.raises(DataError, match=r"span \[0, 5\) two titles"):
        el.check_documents(docs, "bad.jsonl")
    nested = [{"doc_text": "Turku harbor", "doc_span_annotations": [[0, 5, "Turku"], [0, 12, "Port of Turku"]]}]
    el.check_documents(read_el(_write(tmp_path / "nested.jsonl", nested)), "nested.jsonl")  # kept


# ---- the command line over a real bundle ------------------------------------------------------

TITLES = ["Paris", "Rome", "Berlin", "Seine", "France"]
CLI_DOCS = [
    {"doc_text": "Paris is the capital of France .", "doc_span_annotations": [[0, 5, "Paris"], [24, 30, "France"]]},
    {"doc_text": "Rome is old and Berlin is a city .", "doc_span_annotations": [[0, 4, "Rome"], [16, 22, "Berlin"]]},
    {"doc_text": "The Seine is a river in Italy .", "doc_span_annotations": [[4, 9, "Seine"], [24, 29, "Italy"]]},
]  # fmt: skip


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, fixtures_dir):
    """The fixture EL reader + a tiny-bert retriever over five titles ("Italy" is missing)."""
    folder = tmp_path_factory.mktemp("bundle")
    reader = Relik.from_pretrained(fixtures_dir / "models" / "relik-reader-span-tiny", batch_size=16).reader
    retriever = DenseRetriever.from_encoder(fixtures_dir / "models" / "tiny-bert", batch_size=16)
    retriever.build_index(TITLES, TITLES, progress=False)
    return Relik(reader, retriever, top_k=4).save_pretrained(folder / "b")


def _run(*args):
    return evaluate_cli.main([*map(str, args), "--no-progress"])


def test_cli_table_json_and_kb(tmp_path, bundle, capsys):
    a = _write(tmp_path / "a" / "test.jsonl", CLI_DOCS[:2])
    b = _write(tmp_path / "b" / "test.jsonl", CLI_DOCS[2:])
    out = tmp_path / "res.json"
    assert _run(bundle, a, b, "--json", out) == 0
    io = capsys.readouterr()
    assert "1 of 6 gold titles are not in the index" in io.err and "'Italy'" in io.err
    assert "a/test" in io.out and "b/test" in io.out and "micro" in io.out and "InKB F1" in io.out
    res = json.loads(out.read_text())
    rows = {r["dataset"]: r for r in res["rows"]}
    assert set(rows) == {"a/test", "b/test", "micro"} and res["missing_gold_titles"] == 1
    assert res["index_size"] == 5
    for r in rows.values():
        p, rc = r["inkb_precision"], r["inkb_recall"]
        assert r["inkb_f1"] == pytest.approx(2 * p * rc / (p + rc) if p + rc else 0.0)
        assert r["recall_at_1"] <= r["recall_at_10"] <= r["recall_at_50"] <= r["recall_at_100"]
    assert rows["micro"]["documents"] == 3 and rows["micro"]["gold_inkb"] == 6
    # the index holds 5 passages: recall@10 is the share of retrievable titles (5 of 6)
    assert rows["micro"]["recall_at_10"] == pytest.approx(5 / 6)
    # --kb adds the missing title: no warning, every gold title retrievable
    kb = tmp_path / "kb.tsv"
    kb.write_text("Italy\ta country\nParis\t3\n")
    assert _run(bundle, a, b, "--kb", kb, "--json", out) == 0
    assert "not in the index" not in capsys.readouterr().err
    res = json.loads(out.read_text())
    assert res["index_size"] == 6 and res["missing_gold_titles"] == 0
    assert {r["dataset"]: r for r in res["rows"]}["micro"]["recall_at_10"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"doc_text": "Paris", "doc_span_annotations": [[0, 9, "Paris"]]}\n', r"outside the text"),
        (b'{"doc_text": "Par\xffis", "doc_span_annotations": []}\n', r"not valid UTF-8"),
        (b'{"doc_text": "Paris", "doc_span_annotations": [[0, 5, "Paris"], [0, 5, "Rome"]]}\n', r"two titles"),
        (b'{"doc_words": ["Paris"], "doc_span_annotations": []}\n', r"no 'doc_text' string"),
    ],
)
def test_cli_bad_data_is_one_line_and_writes_nothing(tmp_path, bundle, content, message):
    data = tmp_path / "bad.jsonl"
    data.write_bytes(content)
    out = tmp_path / "res.json"
    with pytest.raises(DataError, match=message):
        _run(bundle, data, "--json", out)
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_cli_refuses_a_relation_model(tmp_path, fixtures_dir):
    data = _write(tmp_path / "d.jsonl", CLI_DOCS[:1])
    with pytest.raises(DataError, match=r"relations, no entity links"):
        _run(fixtures_dir / "models" / "relik-reader-triplet-tiny", data)


def test_cli_one_line_error_through_the_module(tmp_path, bundle):
    import subprocess
    import sys

    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"doc_text": "Paris", "doc_span_annotations": [[3, 1, "Paris"]]}\n')
    r = subprocess.run(
        [sys.executable, "-m", "relik_jax.evaluate", str(bundle), str(data)], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.stderr
