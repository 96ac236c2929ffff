"""Reader rows and labels: rebuilt exactly as the official dataset builds them; sound where it is not."""

from __future__ import annotations

import numpy as np
import pytest

from relik_jax.core.errors import DataError
from relik_jax.data.jsonl import read_jsonl
from relik_jax.data.windows import given_words, make_windows, spacy_words
from relik_jax.official.batches import from_official
from relik_jax.reader.inputs import CandidateEncoder, Vocab, collate, el_rows, re_rows, tokenize_words
from relik_jax.reader.labels import collate_train, el_row_labels, re_row_labels
from relik_jax.reader.spec import get_spec


@pytest.fixture(scope="module")
def span_tok(fixtures_dir):
    from relik_jax.encoders.hf import load_tokenizer

    return load_tokenizer(fixtures_dir / "models" / "relik-reader-span-tiny")


@pytest.fixture(scope="module")
def triplet_tok(fixtures_dir):
    from relik_jax.encoders.hf import load_tokenizer

    return load_tokenizer(fixtures_dir / "models" / "relik-reader-triplet-tiny")


def _doc_words(d):
    return given_words(d["words"]) if "words" in d else (d["text"], spacy_words(d["text"]))


def _rebuild(fixtures_dir, tok, name):
    """(our row, fixture row metadata, npz) for every row of a fixture file."""
    task = name.split("_")[0]
    docs_file = f"{task}_train_docs.jsonl" if "train" in name else f"{task}_docs.jsonl"
    docs = read_jsonl(fixtures_dir / "reader" / docs_file)
    metas = read_jsonl(fixtures_dir / "reader" / f"{name}_rows.jsonl")
    vocab = Vocab.from_tokenizer(tok)
    enc = CandidateEncoder(tok, "[E-0]" if task == "span" else "[R-0]")
    out = []
    for m in metas:
        d = docs[m["doc"]]
        text, words = _doc_words(d)
        w = make_windows(text, words, 32, 16, doc=m["doc"])[m["window_id"]]
        assert (w.offset, w.text, list(w.words)) == (m["offset"], m["text"], m["words"])
        build = el_rows if task == "span" else re_rows
        rows = build(w, tokenize_words(tok, words), d["candidates"], vocab, enc)
        out.append((rows[m.get("patch_offset", 0)], m))
    return out, np.load(fixtures_dir / "reader" / f"{name}.npz")


@pytest.mark.parametrize("name", ["span_eval", "span_train", "triplet_eval", "triplet_train"])
def test_official_rows_rebuilt(fixtures_dir, span_tok, triplet_tok, name):
    tok = span_tok if name.startswith("span") else triplet_tok
    rows, z = _rebuild(fixtures_dir, tok, name)
    for row, m in rows:
        key = f"b{m['batch']}_"
        am = z[key + "attention_mask"][m["row"]].astype(bool)
        np.testing.assert_array_equal(row.input_ids, z[key + "input_ids"][m["row"]][am])
        length = z[key + "input_ids"].shape[1]
        batch = collate([row], batch_size=1, length_buckets=(length,), column_buckets=(len(row.symbol_pos),))
        for k in ("token_type_ids", "prediction_mask", "attention_mask"):
            np.testing.assert_array_equal(batch[k][0], z[key + k][m["row"]], err_msg=k)
        np.testing.assert_array_equal(row.symbol_pos, np.nonzero(z[key + "special_symbols_mask"][m["row"]])[0])
        if name.startswith("span"):
            assert row.columns[1:] == m["predictable_candidates"]
        else:
            assert row.columns == m["triplet_candidates_read"]
    assert len(rows) >= 3


@pytest.mark.parametrize("task", ["span", "triplet"])
def test_official_training_labels_rebuilt(fixtures_dir, span_tok, triplet_tok, task):
    """Labels built from the documents' gold annotations equal the official label tensors."""
    tok = span_tok if task == "span" else triplet_tok
    rows, z = _rebuild(fixtures_dir, tok, f"{task}_train")
    labels = []
    for row, m in rows:
        if task == "span":
            labels.append(el_row_labels(row, [tuple(x) for x in m["window_labels"]]))
        else:
            off = row.window.first_word
            spans = [(a + off, b + off) for a, b, _ in m["window_labels_tokens"]]
            trip = [((t["subject"][0] + off, t["subject"][1] + off), t["relation"], (t["object"][0] + off, t["object"][1] + off))
                    for t in m["window_triplet_labels_tokens"]]  # fmt: skip
            labels.append(re_row_labels(row, spans, trip))
    ref = from_official({k[3:]: z[k] for k in z.files if k.startswith("b0_")}, task)
    ours, cut = collate_train(
        [r for r, _ in rows], labels, get_spec(task), batch_size=len(rows), max_starts=ref["gold_starts"].shape[1],
        max_entities=ref["gold_ent_start"].shape[1], length_buckets=(ref["input_ids"].shape[1],),
        column_buckets=(ref["symbol_pos"].shape[1],),
    )  # fmt: skip
    assert cut == 0
    for k, v in ref.items():
        np.testing.assert_array_equal(np.asarray(ours[k]).astype(np.int64), np.asarray(v).astype(np.int64), err_msg=k)


def _doc(n_words=40):
    text = " ".join(f"word{i}" for i in range(n_words))
    return text, spacy_words(text)


def test_candidates_beyond_the_symbols_are_split_not_dropped(span_tok):
    """150 candidates with 100 [E-i] symbols: every candidate is read once, symbols wrap around."""
    vocab, enc = Vocab.from_tokenizer(span_tok), CandidateEncoder(span_tok, "[E-0]")
    text, words = _doc(30)
    window = make_windows(text, words, 32, 16)[0]
    cands = [f"candidate number {i} <def> with a description" for i in range(150)]
    rows = el_rows(window, tokenize_words(span_tok, words), cands, vocab, enc)
    read = [c for r in rows for c in r.columns[2:]]
    assert read == cands and len(rows) == 4  # 43 short candidates per 512-token row
    for r in rows:
        assert r.length <= 512
        ids = r.input_ids[r.symbol_pos]
        assert ids[0] == span_tok.cls_token_id and ids[1] == vocab.nme_id
        assert all(i in vocab.entity_ids for i in ids[2:])
        assert len(set(ids[2:].tolist())) == len(ids) - 2  # no symbol twice in a row
    pieces = span_tok.convert_ids_to_tokens(np.concatenate([r.input_ids for r in rows]).tolist())
    assert "100" not in "".join(pieces).replace("number100", "")  # no literal "[E-100]" written as text


def test_long_relation_lists_are_split(triplet_tok):
    vocab, enc = Vocab.from_tokenizer(triplet_tok), CandidateEncoder(triplet_tok, "[R-0]")
    text, words = _doc(20)
    window = make_windows(text, words, 32, 16)[0]
    relations = [f"relation_{i}" for i in range(30)]
    rows = re_rows(window, tokenize_words(triplet_tok, words), relations, vocab, enc)
    assert [len(r.columns) for r in rows] == [24, 6]
    assert [c for r in rows for c in r.columns] == relations
    short = re_rows(window, tokenize_words(triplet_tok, words), relations, vocab, enc, max_length=80)
    assert [c for r in short for c in r.columns] == relations and all(r.length <= 80 for r in short)


def test_window_without_candidates_and_text_too_long(span_tok):
    vocab, enc = Vocab.from_tokenizer(span_tok), CandidateEncoder(span_tok, "[E-0]")
    text, words = _doc(30)
    window = make_windows(text, words, 32, 16)[0]
    assert el_rows(window, tokenize_words(span_tok, words), [], vocab, enc) == []
    long_text, long_words = _doc(400)
    big = make_windows(long_text, long_words, 400, 400)[0]
    with pytest.raises(DataError, match="no candidate fits"):
        el_rows(big, tokenize_words(span_tok, long_words), ["Paris"], vocab, enc)


def test_empty_window_text_still_makes_a_valid_row(span_tok):
    """A window of whitespace words has no pieces: the row is [CLS] [SEP] symbols [SEP]."""
    vocab, enc = Vocab.from_tokenizer(span_tok), CandidateEncoder(span_tok, "[E-0]")
    text = "   \n\n  "
    words = spacy_words(text)
    windows = make_windows(text, words, 32, 16)
    rows = [r for w in windows for r in el_rows(w, tokenize_words(span_tok, words), ["Paris"], vocab, enc)]
    assert all(r.n_text == 0 for r in rows)
