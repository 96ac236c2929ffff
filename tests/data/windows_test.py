"""Word windows: official windows on the fixture texts; exact character round trips (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relik_jax.core.errors import ConfigError
from relik_jax.data.jsonl import read_jsonl
from relik_jax.data.windows import given_words, make_windows, spacy_words, window_spans


def test_official_windows(fixtures_dir):
    n = 0
    for task in ("span", "triplet"):
        inputs = read_jsonl(fixtures_dir / "pipeline" / f"{task}_input.jsonl")
        outputs = read_jsonl(fixtures_dir / "pipeline" / f"{task}_output.jsonl")
        for i, o in zip(inputs, outputs):
            ours = [
                (w.window_id, w.offset, w.text, list(w.words))
                for w in make_windows(i["text"], spacy_words(i["text"]), 32, 16)
            ]
            assert ours == [(w["window_id"], w["offset"], w["text"], w["words"]) for w in o["windows"]]
            n += len(ours)
    assert n > 40


@pytest.mark.parametrize("n,size,stride,expected", [
    (0, 32, 16, []), (5, 32, 16, [(0, 5)]), (32, 32, 16, [(0, 32)]), (40, 32, 16, [(0, 32), (8, 40)]),
    (48, 32, 16, [(0, 32), (16, 48)]), (49, 32, 16, [(0, 32), (16, 48), (17, 49)]), (10, 4, 0, [(0, 4), (4, 8), (6, 10)]),
])  # fmt: skip
def test_window_spans(n, size, stride, expected):
    assert window_spans(n, size, stride) == expected


def test_bad_window_settings():
    with pytest.raises(ConfigError, match="window_size must be > 0"):
        window_spans(10, 0, 0)
    with pytest.raises(ConfigError, match="must not exceed"):
        window_spans(10, 4, 8)


FRAGMENTS = [
    *"abcXYZ", " ", "  ", "\n", "\n\n ", "\t", "\u00a0", "é", "è", "ö", "ñ", "ß", "ç", "東", "京", "大学", "日本",
    "😀", "🎉", ".", ",", ";", "'", '"', "-", "(", ")", "«", "»", "’", "Paris", "U.S.", "don't", "supercalifragilistic" * 4,
]  # fmt: skip
TEXT = st.lists(st.sampled_from(FRAGMENTS), max_size=120).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, size=st.integers(1, 12), stride=st.integers(0, 12))
def test_windows_cover_every_word_with_exact_offsets(text, size, stride):
    stride = min(stride, size)
    words = spacy_words(text)
    for w, start in zip(words.texts, words.starts):
        assert text[start : start + len(w)] == w
    windows = make_windows(text, words, size, stride)
    covered = set()
    for win in windows:
        assert text[win.offset : win.offset + len(win.text)] == win.text
        for i, word in enumerate(win.words):
            assert text[win.word_starts[i] : win.word_end(i)] == word
            covered.add(win.first_word + i)
    assert covered == set(range(len(words)))


def test_given_words():
    text, words = given_words(["PERUGIA", ",", "Italy"])
    assert text == "PERUGIA , Italy" and words.starts == (0, 8, 10)
