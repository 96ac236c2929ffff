"""Decoding: pieces → rows → predictions → window merge → document spans, exact character round trips."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relik_jax.data.windows import make_windows, spacy_words
from relik_jax.encoders.hf import load_tokenizer
from relik_jax.reader.decode import finalize_el, merge_el_window, word_chars
from relik_jax.reader.inputs import CandidateEncoder, Vocab, el_rows, tokenize_words
from tests.data.windows_test import TEXT


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, size=st.integers(2, 10), stride=st.integers(1, 10))
def test_pieces_and_window_merge_round_trip_characters(minilm_path, text, size, stride):
    """Mark every word as a span in every window it appears in, through pieces, decoding and the
    window merge: the document gets exactly its words back, with exact offsets."""
    tok = _TOKENIZERS.get("span") or _TOKENIZERS.setdefault(
        "span", load_tokenizer(minilm_path, ["--NME--", "[E-0]", "[E-1]"])
    )
    vocab, enc = Vocab.from_tokenizer(tok), CandidateEncoder(tok, "[E-0]")
    stride = min(stride, size)
    words = spacy_words(text)
    pieces = tokenize_words(tok, words)
    merged, expected = [], set()
    for win in make_windows(text, words, size, stride):
        rows = el_rows(win, pieces, ["Label"], vocab, enc)
        assert len(rows) == 1
        row = rows[0]
        preds = [((a, b), "Label", [], 1.0) for a, b in word_chars(row).values()]
        merged.append(merge_el_window([preds]))
        for i in range(len(win.words)):
            spans_of_word = pieces.spans[win.first_word + i]
            if spans_of_word:
                expected.add((spans_of_word[0][0], spans_of_word[-1][1]))
    spans = finalize_el(text, merged)
    for s in spans:  # every span is the exact slice of one word
        assert s.text == text[s.start : s.end] and s.text
        assert any(a <= s.start and s.end <= a + len(w) for w, a in zip(words.texts, words.starts))
    assert {(s.start, s.end) for s in spans} == expected


_TOKENIZERS: dict = {}
