"""Reader-only pipeline vs the official `Relik(...)` outputs; static shapes (compilation counts)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from relik_jax.core.errors import DataError
from relik_jax.core.shapes import count_compilations
from relik_jax.data.jsonl import read_jsonl
from relik_jax.reader.pipeline import ReaderPipeline


def _load(fixtures_dir, task):
    inputs = read_jsonl(fixtures_dir / "pipeline" / f"{task}_input.jsonl")
    outputs = read_jsonl(fixtures_dir / "pipeline" / f"{task}_output.jsonl")
    return inputs, outputs


@pytest.fixture(scope="module")
def span_pipelines(fixtures_dir):
    folder = fixtures_dir / "models" / "relik-reader-span-tiny"
    return ReaderPipeline.from_pretrained(folder, batch_size=4), ReaderPipeline.from_pretrained(
        folder, batch_size=4, official_decisions=True
    )


def test_official_pipeline_parity_span(fixtures_dir, span_pipelines):
    """With relik 1.0.7's decisions, every document's spans and every window equal the official."""
    _, official = span_pipelines
    inputs, refs = _load(fixtures_dir, "span")
    outs = official([i["text"] for i in inputs], [i["candidates"] for i in inputs])
    n_spans = n_probs = 0
    for o, r in zip(outs, refs):
        assert o.text == r["text"]
        assert collections.Counter((s.start, s.end, s.label, s.text) for s in o.spans) == collections.Counter(
            map(tuple, r["spans"])
        )
        assert len(o.windows) == len(r["windows"])
        for ow, rw in zip(o.windows, r["windows"]):
            assert (ow.window_id, ow.offset, ow.text, ow.words) == (
                rw["window_id"],
                rw["offset"],
                rw["text"],
                rw["words"],
            )
            assert sorted(ow.spans) == sorted(map(tuple, rw["spans"]))
            assert ow.candidates_read == [p["predictable_candidates"] for p in rw["patches"]]
            for s, e, top in rw["span_probabilities"]:
                mine = sorted(ow.span_probabilities[(s, e)], key=lambda x: -x[1])
                theirs = sorted(top, key=lambda x: -x[1])
                # linking logits are ~1e2: float differences of ~4e-5 there move probabilities by ≤ 2e-5
                np.testing.assert_allclose([p for _, p in mine], [p for _, p in theirs], atol=5e-5)
                n_probs += len(theirs)
        n_spans += len(r["spans"])
    assert n_spans > 100 and n_probs > 500


def test_pipeline_sound_spans_never_end_before_start(fixtures_dir, span_pipelines):
    sound, official = span_pipelines
    inputs, _ = _load(fixtures_dir, "span")
    texts, cands = [i["text"] for i in inputs], [i["candidates"] for i in inputs]
    ours, theirs = sound(texts, cands), official(texts, cands)
    unsound = 0
    for o, t in zip(ours, theirs):
        assert all(s.start < s.end and s.text for s in o.spans)
        for ow, tw in zip(o.windows, t.windows):
            # every official span that ends after it starts, with a label that is not the [CLS]
            # column (which the official maps to the row's last candidate), is ours too
            last = {c[-1] for c in tw.candidates_read}
            for s, e, label in tw.spans:
                if s < e and label not in last:
                    assert (s, e, label) in ow.spans
            unsound += sum(1 for s, e, _ in tw.spans if s > e)
    assert unsound > 0  # the fixture heads are random: the official does produce such spans


def test_official_pipeline_parity_triplet(fixtures_dir):
    pipe = ReaderPipeline.from_pretrained(fixtures_dir / "models" / "relik-reader-triplet-tiny", batch_size=4)
    inputs, refs = _load(fixtures_dir, "triplet")

    def key_spans(spans):
        return collections.Counter((s[0], s[1], s[2], s[3]) for s in spans)

    def key_triplets(ts):
        return collections.Counter((t[0][0], t[0][1], t[1], t[2][0], t[2][1], t[3]) for t in ts)

    n_triplets = 0
    for i, r in zip(inputs, refs):
        # relik 1.0.7 reads only the first 24 relations (its [R-i] symbols); we split longer lists
        # over several rows. On the first 24 the outputs are identical; with all of them a superset.
        first = pipe(i["text"], i["candidates"][:24]).to_official_dict("triplet")
        assert key_spans(first["spans"]) == key_spans(r["spans"]), i["id"]
        assert key_triplets(first["triplets"]) == key_triplets(r["triplets"]), i["id"]
        n_triplets += len(r["triplets"])
        if len(i["candidates"]) > 24:
            full = pipe(i["text"], i["candidates"]).to_official_dict("triplet")
            assert not key_spans(r["spans"]) - key_spans(full["spans"])
            assert not key_triplets(r["triplets"]) - key_triplets(full["triplets"])
            assert {t[1] for t in full["triplets"]} - set(i["candidates"][:24]) or len(full["spans"]) >= len(r["spans"])
    assert n_triplets >= 20


def test_reader_stream_compiles_once_per_bucket(fixtures_dir):
    """1,000 windows of varied lengths and candidate counts: no compilation after warm-up."""
    pipe = ReaderPipeline.from_pretrained(
        fixtures_dir / "models" / "relik-reader-span-tiny",
        batch_size=16,
        length_buckets=(128, 256),
        column_buckets=(16, 64),
    )
    assert pipe.warmup() == 16  # (128, 256, 512) lengths x their text extents (64, 128, L) x (16, 64) columns
    rng = np.random.default_rng(0)
    vocab = [
        "the",
        "city",
        "of",
        "paris",
        "river",
        "seine",
        "france",
        "capital",
        "nobel",
        "prize",
        "curie",
        "physics",
        "chemistry",
        ",",
        ".",
    ]
    texts, cands = [], []
    n_windows = 0
    while n_windows < 1000:
        n_words = int(rng.integers(1, 70))
        texts.append(" ".join(rng.choice(vocab, n_words)))
        cands.append(
            [
                f"Entity {j} <def> " + " ".join(rng.choice(vocab, rng.integers(0, 25)))
                for j in range(int(rng.integers(1, 60)))
            ]
        )
        n_windows += len(range(0, max(n_words - 16, 1), 16))
    with count_compilations() as c:
        outs = pipe(texts, cands)
    assert c.count == 0
    assert sum(len(o.windows) for o in outs) >= 1000


def test_bad_input(fixtures_dir, span_pipelines):
    sound, _ = span_pipelines
    assert sound("", ["Paris"]).spans == []
    assert sound("   \n  ", ["Paris"]).spans == []
    assert sound("Paris is nice.", []).spans == []  # no candidates: nothing to link
    with pytest.raises(DataError, match="candidate lists for"):
        sound(["a", "b"], [["x"], ["y"], ["z"]])
    with pytest.raises(DataError, match="not a string"):
        sound([b"bytes"], ["x"])
