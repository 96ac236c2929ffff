"""Value types every layer shares: the no-entity label, the ignored-label index, spans, triplets."""

from __future__ import annotations

import dataclasses

NME = "--NME--"  # the label of a mention with no entity in the KB (and the reader's no-link symbol)
IGNORE = -100  # a label position that takes no part in a loss (the PyTorch / official convention)
CharSpan = tuple[int, int]  # [start, end) character offsets in a document


@dataclasses.dataclass(frozen=True, order=True)
class Span:
    """Characters `[start, end)` of the document, linked to `label` (`--NME--`: no KB entity)."""

    start: int
    end: int
    label: str
    text: str = dataclasses.field(compare=False)
    score: float | None = dataclasses.field(default=None, compare=False)  # EL: link probability


@dataclasses.dataclass(frozen=True)
class Triplet:
    subject: Span
    relation: str
    object: Span
    confidence: float
