"""What annotation returns: spans, triplets, windows and candidates, serialisable to the official
jsonl shape (`to_official_dict`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from relik_jax.core.types import Span, Triplet
from relik_jax.reader import html
from relik_jax.reader.spec import RELATION_TASKS


@dataclasses.dataclass
class WindowOutput:
    window_id: int
    offset: int
    text: str
    words: list[str]
    spans: list[tuple[int, int, str]]
    span_probabilities: dict[tuple[int, int], list[tuple[str, float]]] = dataclasses.field(default_factory=dict)
    triplets: list[tuple[tuple[int, int], str, tuple[int, int], float]] = dataclasses.field(default_factory=list)
    candidates_read: list[list[str]] = dataclasses.field(default_factory=list)  # one list per row (patch)
    retrieved: list[Any] = dataclasses.field(default_factory=list)  # retriever hits (id, text, score)


@dataclasses.dataclass
class RelikOutput:
    """Annotations of one document."""

    text: str
    spans: list[Span]
    triplets: list[Triplet] = dataclasses.field(default_factory=list)
    candidates: list[str] = dataclasses.field(default_factory=list)
    windows: list[WindowOutput] = dataclasses.field(default_factory=list)
    words: list[str] = dataclasses.field(default_factory=list)  # the tokens (spaCy words) of the text
    word_starts: list[int] = dataclasses.field(default_factory=list)  # char offset of each word
    id: Any = None

    def _repr_html_(self) -> str:
        """A notebook shows the output as highlighted text (`relik_jax.reader.html`)."""
        return html.fragment(self)

    def to_html(self, **kwargs: Any) -> str:
        """This document as an HTML fragment (see `relik_jax.reader.html.render` for the options)."""
        return html.fragment(self, **kwargs)

    def to_official_dict(self, task: str, with_windows: bool = False) -> dict[str, Any]:
        """The official `RelikOutput` jsonl shape: spans `[start, end, label, text]`, and triplets
        when `task` (the model's, `Relik.task`) extracts relations."""
        out: dict[str, Any] = {
            "text": self.text,
            "tokens": list(self.words),
            "spans": [[s.start, s.end, s.label, s.text] for s in self.spans],
        }
        if task in RELATION_TASKS:
            out["triplets"] = [
                [[t.subject.start, t.subject.end, t.subject.label, t.subject.text], t.relation,
                 [t.object.start, t.object.end, t.object.label, t.object.text], t.confidence]
                for t in self.triplets
            ]  # fmt: skip
        out["candidates"] = list(self.candidates)
        if with_windows:
            out["windows"] = [
                {
                    "window_id": w.window_id,
                    "offset": w.offset,
                    "text": w.text,
                    "words": w.words,
                    "spans": [list(s) for s in w.spans],
                    "span_probabilities": [
                        [s, e, [list(x) for x in p]] for (s, e), p in sorted(w.span_probabilities.items())
                    ],
                    "triplets": [[list(a), r, list(b), c] for a, r, b, c in w.triplets],
                    **({"retrieved": [[h.id, h.text, h.score] for h in w.retrieved]} if w.retrieved else {}),
                }
                for w in self.windows
            ]
        return out
