"""Documents → words → overlapping word windows, with exact character offsets.

Words are spaCy's rule-based English tokens (a run of whitespace after the first space is a word
too), as the official ReLiK pipeline cuts them; pre-tokenised documents (the RE datasets'
`doc_words`) give their words directly and are joined by single spaces. Windows hold `size`
words every `stride` words; the last window is shifted back to end on the last word unless the
previous one already reached it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from relik_jax.core.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class Words:
    """The words of a document: their text and character start (`text[start:start+len(word)]`)."""

    texts: tuple[str, ...]
    starts: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def end(self, i: int) -> int:
        return self.starts[i] + len(self.texts[i])


@dataclasses.dataclass(frozen=True)
class Window:
    """Words `[first_word, first_word + len(words))` of document `doc`; offsets stay document-level."""

    doc: int
    window_id: int
    first_word: int
    words: tuple[str, ...]
    word_starts: tuple[int, ...]  # character start of each word in the document
    text: str  # the document slice from the first word's start to the last word's end

    @property
    def offset(self) -> int:
        """Character offset of the window in its document."""
        return self.word_starts[0] if self.words else 0

    def word_end(self, i: int) -> int:
        return self.word_starts[i] + len(self.words[i])


@functools.lru_cache(maxsize=1)
def _spacy_tokenizer():
    try:
        import spacy  # heavy (seconds to import): only raw text needs spaCy's words
    except ImportError:
        raise ConfigError("word windows over raw text need spaCy: pip install spacy") from None
    return spacy.blank("en").tokenizer


def spacy_words(text: str) -> Words:
    """spaCy's English tokenizer (the rules the official pipeline uses; no model download)."""
    doc = _spacy_tokenizer()(text)
    return Words(tuple(t.text for t in doc), tuple(t.idx for t in doc))


def given_words(words: Sequence[str]) -> tuple[str, Words]:
    """A pre-tokenised document: its text (words joined by single spaces) and its words."""
    starts, pos = [], 0
    for w in words:
        if not w:
            raise DataError("a pre-tokenised document contains an empty word")
        starts.append(pos)
        pos += len(w) + 1
    return " ".join(words), Words(tuple(words), tuple(starts))


def window_spans(n_words: int, size: int, stride: int) -> list[tuple[int, int]]:
    """`[start, end)` word ranges of the windows over `n_words` words."""
    if size <= 0:
        raise ConfigError(f"window_size must be > 0, got {size}")
    if stride < 0:
        raise ConfigError(f"window_stride must be >= 0, got {stride}")
    stride = stride or size  # 0: no overlap
    if stride > size:
        raise ConfigError(f"window_stride ({stride}) must not exceed window_size ({size}): words would be skipped")
    out = []
    for start in range(0, n_words, stride):
        if start and start + size > n_words:
            overflow = start + size - n_words
            if overflow >= stride:
                break
            start -= overflow
        out.append((start, min(start + size, n_words)))
    return out


def make_windows(text: str, words: Words, size: int, stride: int, doc: int = 0) -> list[Window]:
    """Windows of a document; a document with no word gets no window."""
    out = []
    for i, (a, b) in enumerate(window_spans(len(words), size, stride)):
        starts = words.starts[a:b]
        texts = words.texts[a:b]
        out.append(Window(doc, i, a, texts, starts, text[starts[0] : starts[-1] + len(texts[-1])]))
    return out
