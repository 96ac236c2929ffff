"""BEER2's span queries: a mention's own query vector (the mean of its tokens in the window query's
encoder pass), its top-k passages, and the rules that merge them with the window query's top-k.

Our choices (the paper does not say): a span's vector is the mean of the hidden states of the
window-query tokens that overlap its characters, through the query tower's pooling LayerNorm; the
merged list keeps the reader's `top_k` passages by the rule `merge`:
- `interleave` (default): round-robin over the window's list and each span's list, best first,
  without repeats — every span's best passage gets in before any list's second;
- `score`: every passage at its best score from any query, highest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from relik_jax.core.errors import ConfigError

MERGE_RULES = ("interleave", "score")


def token_ranges(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[tuple[int, int] | None]:
    """`[first token, last token + 1)` of each character span among a text's token `offsets`
    (special tokens have empty offsets and never match); None when no token overlaps it (cut)."""
    out = []
    for s, e in spans:
        idx = [i for i, (a, b) in enumerate(offsets) if b > a and a < e and b > s]
        out.append((idx[0], idx[-1] + 1) if idx else None)
    return out


def span_arrays(ranges: Sequence[Sequence[tuple[int, int] | None]], rows: int, max_spans: int) -> dict[str, np.ndarray]:
    """`span_start`, `span_end`, `span_valid` `[rows, max_spans]` from each row's token ranges."""
    start = np.zeros((rows, max_spans), np.int32)
    end = np.zeros((rows, max_spans), np.int32)
    valid = np.zeros((rows, max_spans), bool)
    for r, rr in enumerate(ranges):
        for j, x in enumerate([x for x in rr if x is not None][:max_spans]):
            start[r, j], end[r, j], valid[r, j] = x[0], x[1], True
    return {"span_start": start, "span_end": end, "span_valid": valid}


def merge(window: Sequence[Any], spans: Sequence[Sequence[Any]], k: int, rule: str = "interleave") -> list[Any]:
    """The `k` hits (with `.text`, `.score`) kept from a window's hits and its spans' hits."""
    if rule not in MERGE_RULES:
        raise ConfigError(f"unknown span merge rule {rule!r} ({' | '.join(MERGE_RULES)})")
    lists = [list(window), *map(list, spans)]
    if rule == "score":
        best: dict[str, Any] = {}
        for hits in lists:
            for h in hits:
                if h.text not in best or h.score > best[h.text].score:
                    best[h.text] = h
        return sorted(best.values(), key=lambda h: -h.score)[:k]
    out, seen = [], set()
    for rank in range(max((len(x) for x in lists), default=0)):
        for hits in lists:
            if rank < len(hits) and hits[rank].text not in seen:
                seen.add(hits[rank].text)
                out.append(hits[rank])
                if len(out) == k:
                    return out
    return out
