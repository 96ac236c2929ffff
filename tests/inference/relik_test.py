"""`Relik`: the full pipeline vs the official outputs, retriever + reader, bundles, official ReLiK
folders, per-call settings, bad input."""

from __future__ import annotations

import collections
import json
import shutil

import numpy as np
import pytest

from relik_jax.core.errors import CheckpointError, ConfigError, DataError
from relik_jax.data.jsonl import read_jsonl
from relik_jax.inference.relik import Relik
from relik_jax.retriever.dense import DenseRetriever


def _official(fixtures_dir, task):
    return (
        read_jsonl(fixtures_dir / "pipeline" / f"{task}_input.jsonl"),
        read_jsonl(fixtures_dir / "pipeline" / f"{task}_output.jsonl"),
    )


@pytest.fixture(scope="module")
def span_reader(fixtures_dir):
    return fixtures_dir / "models" / "relik-reader-span-tiny"


@pytest.fixture(scope="module")
def retriever(fixtures_dir):
    """A retriever on the fixture encoder with an index over every EL fixture candidate."""
    inputs, _ = _official(fixtures_dir, "span")
    passages = list(dict.fromkeys(c for i in inputs for c in i["candidates"]))
    r = DenseRetriever.from_encoder(fixtures_dir / "models" / "tiny-bert", batch_size=16)
    r.build_index([str(i) for i in range(len(passages))], passages, progress=False)
    return r


def test_relik_matches_official_pipeline(fixtures_dir, span_reader):
    """Relik(texts, candidates) end to end = relik 1.0.7's Relik on the fixture texts (EL and RE)."""
    for task, folder in (("span", span_reader), ("triplet", fixtures_dir / "models" / "relik-reader-triplet-tiny")):
        relik = Relik.from_pretrained(folder, batch_size=4, official_decisions=True)
        assert relik.task == task and relik.retriever is None
        inputs, refs = _official(fixtures_dir, task)
        # the official reads the first 24 relation candidates (its [R-i] symbols); so does the caller here
        cands = [i["candidates"][:24] if task == "triplet" else i["candidates"] for i in inputs]
        outs = relik([i["text"] for i in inputs], cands)
        n = 0
        for o, r in zip(outs, refs):
            d = o.to_official_dict(task)
            assert d["text"] == r["text"]
            assert collections.Counter(map(tuple, d["spans"])) == collections.Counter(map(tuple, r["spans"]))
            if task == "triplet":
                key = collections.Counter((a[0], a[1], rel, b[0], b[1]) for a, rel, b, _ in d["triplets"])
                assert key == collections.Counter((a[0], a[1], rel, b[0], b[1]) for a, rel, b, _ in r["triplets"])
                ours = sorted(c for *_, c in d["triplets"])
                assert ours == pytest.approx(sorted(c for *_, c in r["triplets"]), abs=0.01)
                n += len(r["triplets"])
            first = r["windows"][0]["words"]
            assert d["tokens"][: len(first)] == first
            n += len(r["spans"])
        assert n >= 20


def test_retriever_reader_and_retriever_only(fixtures_dir, span_reader, retriever):
    relik = Relik.from_pretrained(span_reader, batch_size=4, top_k=7)
    relik.retriever = retriever
    inputs, _ = _official(fixtures_dir, "span")
    texts = [i["text"] for i in inputs[:3]]
    outs = relik(texts, top_k=5)
    for o in outs:
        for w in o.windows:
            expect = retriever.retrieve(w.text, k=5)
            assert [h.id for h in w.retrieved] == [h.id for h in expect]
            assert w.candidates_read and w.candidates_read[0] == ["--NME--"] + [h.text for h in expect]
            assert {s.label for s in o.spans} <= set(o.candidates)
    assert len(relik(texts[0]).windows[0].retrieved) == 7  # the default top_k
    only = Relik(retriever=retriever)
    o = only(texts[0], top_k=3)
    assert o.spans == [] and o.triplets == []
    assert [len(w.retrieved) for w in o.windows] == [3] * len(o.windows)
    assert only.task == "retrieval"


def test_stream_equals_call(fixtures_dir, span_reader, retriever):
    relik = Relik.from_pretrained(span_reader, batch_size=4, top_k=5)
    relik.retriever = retriever
    inputs, _ = _official(fixtures_dir, "span")
    texts = [i["text"] for i in inputs] * 2
    batch = relik(texts)
    streamed = list(relik.stream(iter(texts), chunk_size=3))
    assert [o.to_official_dict("span") for o in streamed] == [o.to_official_dict("span") for o in batch]
    given = list(relik.stream(texts[:4], candidates=[i["candidates"] for i in inputs[:4]], chunk_size=2))
    assert [o.candidates for o in given] == [list(dict.fromkeys(i["candidates"])) for i in inputs[:4]]


def test_word_annotation(fixtures_dir, span_reader):
    relik = Relik.from_pretrained(span_reader, batch_size=4)
    inputs, _ = _official(fixtures_dir, "span")
    i = inputs[0]
    chars = relik(i["text"], i["candidates"])
    words = relik(i["text"], i["candidates"], annotation_type="word")
    assert len(chars.spans) == len(words.spans) > 0
    for c, w in zip(chars.spans, words.spans):
        assert c.label == w.label and 0 <= w.start < w.end <= len(chars.words)
        assert chars.word_starts[w.start] <= c.start < chars.word_starts[w.end - 1] + len(chars.words[w.end - 1])


def test_bundle_round_trip(tmp_path, fixtures_dir, span_reader, retriever):
    relik = Relik.from_pretrained(span_reader, batch_size=4, top_k=6, window_size=24, window_stride=12)
    relik.retriever = retriever
    inputs, _ = _official(fixtures_dir, "span")
    texts = [i["text"] for i in inputs[:4]]
    before = [o.to_official_dict("span", with_windows=True) for o in relik(texts)]
    relik.save_pretrained(tmp_path / "bundle")
    meta = json.loads((tmp_path / "bundle" / "relik.json").read_text())
    assert meta["settings"]["top_k"] == 6 and meta["reader"] == "reader" and meta["retriever"] == "retriever"
    loaded = Relik.from_pretrained(tmp_path / "bundle")
    assert loaded.settings == relik.settings and len(loaded.retriever.index) == len(retriever.index)
    after = [o.to_official_dict("span", with_windows=True) for o in loaded(texts)]
    assert after == before
    # a training workdir holding the bundle loads the same way
    shutil.move(tmp_path / "bundle", tmp_path / "workdir" / "bundle")
    assert Relik.from_pretrained(tmp_path / "workdir").settings.window_size == 24


def test_official_relik_folder(tmp_path, fixtures_dir, span_reader, retriever):
    """An official ReLiK folder (config.yaml naming reader, question encoder and index) loads."""
    from relik_jax.official.index import write_official_index

    folder = tmp_path / "relik-official"
    shutil.copytree(span_reader, folder / "reader-x")
    shutil.copytree(fixtures_dir / "models" / "tiny-bert", folder / "tiny-bert")  # its transformer_model: ../tiny-bert
    shutil.copytree(
        fixtures_dir / "models" / "tiny-bert", folder / "retriever-x-span" / "retriever-x-span-question-encoder"
    )
    write_official_index(folder / "retriever-x-span-index", retriever.index)
    (folder / "config.yaml").write_text(
        "_target_: relik.inference.annotator.Relik\n"
        "retriever:\n  span:\n    _target_: relik.retriever.pytorch_modules.model.GoldenRetriever\n"
        f"    question_encoder: {folder}/retriever-x-span-question-encoder\n"  # as relik 1.0.7 writes it
        "index:\n  span:\n    _target_: relik.retriever.indexers.inmemory.InMemoryDocumentIndex.from_pretrained\n"
        "    name_or_path: retriever-x-span-index\n"
        "reader:\n  _target_: relik.reader.pytorch_modules.span.RelikReaderForSpanExtraction\n"
        f"  transformer_model: {folder}/reader-x\n"
        "task: SPAN\nmetadata_fields: []\ntop_k: 9\nwindow_size: 32\nwindow_stride: 16\n"
    )
    relik = Relik.from_pretrained(folder, batch_size=4)
    assert relik.task == "span" and relik.settings.top_k == 9 and len(relik.retriever.index) == len(retriever.index)
    inputs, _ = _official(fixtures_dir, "span")
    out = relik(inputs[0]["text"])
    ours = Relik(relik.reader, retriever, top_k=9)(inputs[0]["text"])
    assert [w.candidates_read for w in out.windows] == [w.candidates_read for w in ours.windows]
    np.testing.assert_allclose(
        [h.score for h in out.windows[0].retrieved], [h.score for h in ours.windows[0].retrieved], rtol=1e-5
    )


def test_official_relik_cie_folder(tmp_path, fixtures_dir):
    """An official closed-IE folder (typed reader, span + triplet retrievers): the span retriever
    fills the span candidates, the triplet index's documents are the relation names."""
    from relik_jax.official.index import write_official_index

    inputs = read_jsonl(fixtures_dir / "pipeline" / "cie_input.jsonl")
    names = sorted({c for i in inputs for c in i["span_candidates"]})
    relations = sorted({c for i in inputs[:2] for c in i["triplet_candidates"]})
    spans = DenseRetriever.from_encoder(fixtures_dir / "models" / "tiny-bert", batch_size=16)
    spans.build_index([str(i) for i in range(len(names))], names, progress=False)
    folder = tmp_path / "relik-cie-x"
    shutil.copytree(fixtures_dir / "models" / "relik-reader-cie-tiny", folder / "reader")
    shutil.copytree(fixtures_dir / "models" / "tiny-bert", folder / "tiny-bert")
    shutil.copytree(fixtures_dir / "models" / "tiny-bert", folder / "span-question-encoder")
    write_official_index(folder / "span-index", spans.index)
    rel_index = DenseRetriever.from_encoder(fixtures_dir / "models" / "tiny-bert")
    rel_index.build_index([str(i) for i in range(len(relations))], relations, progress=False)
    write_official_index(folder / "triplet-index", rel_index.index)
    (folder / "config.yaml").write_text(
        "_target_: relik.inference.annotator.Relik\n"
        "retriever:\n  span:\n    question_encoder: span-question-encoder\n"
        "  triplet:\n    question_encoder: span-question-encoder\n"
        "index:\n  span:\n    name_or_path: span-index\n  triplet:\n    name_or_path: triplet-index\n"
        "reader:\n  transformer_model: reader\n"
        "task: TRIPLET\nmetadata_fields: []\ntop_k: 6\nwindow_size: 32\nwindow_stride: 16\n"
    )
    relik = Relik.from_pretrained(folder, batch_size=4)
    assert relik.task == "typed" and relik.relations == relations and len(relik.retriever.index) == len(names)
    text = inputs[0]["text"]
    out = relik(text)
    assert out.windows and all(len(w.candidates_read[0]) == 6 for w in out.windows)
    ours = Relik(relik.reader, spans, relations=relations, top_k=6)(text)
    assert out.to_official_dict("typed", with_windows=True) == ours.to_official_dict("typed", with_windows=True)
    assert {t.relation for t in out.triplets} <= set(relations)


def test_bad_input(tmp_path, fixtures_dir, span_reader):
    relik = Relik.from_pretrained(span_reader, batch_size=64)
    assert relik("", ["Paris"]).spans == [] and relik("", ["Paris"]).windows == []
    ws = relik("  \n\t ", ["Paris"])
    assert ws.spans == [] and ws.text == "  \n\t "
    big = ("The city of Paris lies on the Seine , far from Rome . " * 20_000)[:1_000_000]
    out = relik(big, ["Paris", "Rome"], window_stride=32)
    assert out.text == big and len(out.windows) > 5_000
    assert all(big[s.start : s.end] == s.text for s in out.spans)
    with pytest.raises(DataError, match="no retriever is loaded"):
        relik("Paris is nice.")
    with pytest.raises(DataError, match="2 candidate lists for 1 texts"):
        relik(["Paris"], [["Paris"], ["Rome"]])
    with pytest.raises(DataError, match="not a string"):
        relik(["Paris", 3], ["Paris"])
    with pytest.raises(ConfigError, match="annotation_type"):
        relik("Paris", ["Paris"], annotation_type="token")
    with pytest.raises(ConfigError, match="window_stride"):
        relik("Paris", ["Paris"], window_size=4, window_stride=8)
    (tmp_path / "file.txt").write_text("x")
    for path, msg in [
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "file.txt", "is a file"),
        (fixtures_dir / "models" / "tiny-bert", "not a model folder relik_jax can load"),
        (tmp_path, "not a model folder"),
    ]:
        with pytest.raises(CheckpointError, match=msg):
            Relik.from_pretrained(path)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "relik.json").write_text('{"format": "something else"}')
    with pytest.raises(CheckpointError, match="not a relik_jax bundle"):
        Relik.from_pretrained(tmp_path / "b")
    with pytest.raises(ConfigError, match="unknown option"):
        Relik.from_pretrained(span_reader, topk=3)
