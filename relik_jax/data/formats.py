"""ReLiK's jsonl formats, read and validated (a bad record names its file and line).

EL: `{"doc_id", "doc_text", "doc_span_annotations": [[char_start, char_end, title], ...]}`.
RE: `{"doc_id", "doc_words", "doc_span_annotations": [[word_start, word_end, label], ...],
      "doc_triplet_annotations": [{"subject": [s, e, label], "relation": str, "object": [s, e, label]}]}`.
Offsets are end-exclusive.
DPR (retriever training): `{"question": str, "positive_ctxs": [{"text": ...}], "negative_ctxs": [...],
"hard_negative_ctxs": [...]}` (passages are identified by their text, as in relik).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relik_jax.core.errors import DataError
from relik_jax.core.types import NME
from relik_jax.data.jsonl import iter_jsonl

WordSpan = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class ELDocument:
    doc_id: Any
    text: str
    spans: tuple[tuple[int, int, str], ...]  # (char start, char end, title)


@dataclasses.dataclass(frozen=True)
class REDocument:
    doc_id: Any
    words: tuple[str, ...]
    spans: tuple[tuple[int, int, str], ...]  # (word start, word end, type label)
    triplets: tuple[tuple[WordSpan, str, WordSpan], ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _span(where: str, raw: Any, limit: int, unit: str) -> tuple[int, int, str]:
    if not isinstance(raw, (list, tuple)) or len(raw) < 2:
        raise DataError(f"{where}: a span must be [start, end, label], got {raw!r}")
    start, end = raw[0], raw[1]
    label = str(raw[2]) if len(raw) > 2 else NME
    if not isinstance(start, int) or not isinstance(end, int):
        raise DataError(f"{where}: span offsets must be integers, got {raw!r}")
    if end < start:
        raise DataError(f"{where}: span [{start}, {end}) ends before it starts")
    if end == start:
        raise DataError(f"{where}: span [{start}, {end}) is empty")
    if start < 0 or end > limit:
        raise DataError(f"{where}: span [{start}, {end}) is outside the text ({limit} {unit})")
    return start, end, label


def el_document(r: dict[str, Any], where: str, default_id: Any = None) -> ELDocument:
    """One EL record (`doc_text`, `doc_span_annotations` in characters), validated."""
    text = r.get("doc_text", r.get("text"))
    if not isinstance(text, str):
        raise DataError(f"{where}: no 'doc_text' string (an EL record needs doc_text and doc_span_annotations)")
    spans = tuple(_span(where, s, len(text), "characters") for s in r.get("doc_span_annotations", []))
    return ELDocument(r.get("doc_id", default_id), text, spans)


def read_el(path: str | Path) -> list[ELDocument]:
    return [el_document(r, f"{path}:{n}", n) for n, r in iter_jsonl(path)]


def read_re(path: str | Path) -> list[REDocument]:
    return [re_document(r, f"{path}:{n}", n) for n, r in iter_jsonl(path)]


def re_document(r: dict[str, Any], where: str, default_id: Any = None) -> REDocument:
    """One RE record (`doc_words`, word spans, `doc_triplet_annotations`), validated."""
    words = r.get("doc_words")
    if not isinstance(words, list) or not all(isinstance(w, str) and w for w in words):
        raise DataError(f"{where}: 'doc_words' must be a list of non-empty strings (an RE record)")
    spans = tuple(_span(where, s, len(words), "words") for s in r.get("doc_span_annotations", []))
    triplets = []
    for t in r.get("doc_triplet_annotations", []):
        if not isinstance(t, dict) or not {"subject", "relation", "object"} <= t.keys():
            raise DataError(f"{where}: a triplet needs subject, relation and object, got {t!r}")
        s = _span(where, t["subject"], len(words), "words")
        o = _span(where, t["object"], len(words), "words")
        triplets.append(((s[0], s[1]), str(t["relation"]), (o[0], o[1])))
    return REDocument(r.get("doc_id", default_id), tuple(words), spans, tuple(triplets))


@dataclasses.dataclass
class DPRSample:
    question: str
    positives: list[str]
    negatives: list[str] = dataclasses.field(default_factory=list)
    hard_negatives: list[str] = dataclasses.field(default_factory=list)
    id: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "positive_ctxs": [{"text": t} for t in self.positives],
            "negative_ctxs": [{"text": t} for t in self.negatives],
            "hard_negative_ctxs": [{"text": t} for t in self.hard_negatives],
        }


def dpr_sample(r: dict[str, Any], where: str, default_id: Any = None) -> DPRSample:
    """One DPR record (`question`, `positive_ctxs`, optional `negative_ctxs` / `hard_negative_ctxs`)."""
    if not isinstance(r.get("question"), str) or not r.get("positive_ctxs"):
        raise DataError(f"{where}: a DPR record needs a 'question' string and a non-empty 'positive_ctxs'")
    lists = [_ctx_texts(r, key, where) for key in ("positive_ctxs", "negative_ctxs", "hard_negative_ctxs")]
    return DPRSample(r["question"], *lists, id=r.get("id", default_id))


def _ctx_texts(record: dict, key: str, where: str) -> list[str]:
    ctxs = record.get(key, []) or []
    if any(not isinstance(c, dict) or not isinstance(c.get("text"), str) for c in ctxs):
        raise DataError(f"{where}: every entry of {key} needs a 'text' string")
    return list(dict.fromkeys(c["text"] for c in ctxs))


# The record parser of each dataset kind: `parse(record, where, default_id)`.
PARSERS: dict[str, Callable[[dict[str, Any], str, Any], Any]] = {
    "el": el_document,
    "re": re_document,
    "dpr": dpr_sample,
}
