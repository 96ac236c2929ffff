"""Reader outputs (static arrays) → character spans, links and triplets; merging rows and windows.

- EL: a span runs from the first character of its start piece to the last of its end piece (piece
  level, as the official); rows of one window ("patches") merge per span: the first row's label
  wins unless it is `--NME--`; a later label then replaces it.
- RE: span boundaries snap outwards to whole words; piece-level entities that snap to the same
  words become one span; triplet confidence is the relation probability rounded to 2 decimals
  in float32 (the official value).
- typed: spans word-aligned as RE, labelled with their best span candidate (kept when it is
  `--NME--`); rows of one window (split candidate lists) keep the label of highest probability;
  triplets carry their window's labels.
- Windows merge by union of `(start, end, label)` (EL, typed) and of triplets (RE, typed), sorted by start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from relik_jax.core.types import NME, CharSpan, Span, Triplet
from relik_jax.reader.inputs import Row


def column_label(row: Row, col: int) -> str:
    """The candidate of a link column. EL rows: column 0 (`[CLS]`, chosen only with official
    decisions) maps to the row's last candidate, as relik 1.0.7 maps it; typed rows have no `[CLS]`
    column (their column 0 is the first candidate read)."""
    if row.columns and row.columns[0] is not None:
        return row.columns[col]
    return row.columns[col] if col >= 1 else row.columns[-1]


def el_row_predictions(
    row: Row, out: Mapping[str, np.ndarray], i: int
) -> list[tuple[CharSpan, str, list[tuple[str, float]], float]]:
    """`((start, end), label, top-k [(label, prob)], prob of label)` of each entity of batch row `i`."""
    preds = []
    for k in np.nonzero(out["ent_valid"][i])[0]:
        s, e = int(out["ent_start"][i, k]) - 1, int(out["ent_end"][i, k]) - 1
        chars = (row.piece_chars[s][0], row.piece_chars[e][1])
        col = int(out["link_column"][i, k])
        top = [
            (column_label(row, c), float(p))
            for c, p in zip(out["link_top_columns"][i, k], out["link_top_probs"][i, k])
            if p >= 0 and c < len(row.columns)
        ]
        preds.append((chars, column_label(row, col), top, float(out["link_probs"][i, k, col])))
    return preds


def merge_el_window(
    rows_preds: Sequence[list[tuple[CharSpan, str, list, float]]],
) -> tuple[dict[CharSpan, str], dict[CharSpan, list], dict[CharSpan, float]]:
    """Patches of one window, in patch order → span → label, top-k, score."""
    labels: dict[CharSpan, str] = {}
    probs: dict[CharSpan, list] = {}
    scores: dict[CharSpan, float] = {}
    for preds in rows_preds:
        for chars, label, top, score in preds:
            if labels.get(chars) in (None, NME):
                labels[chars], scores[chars] = label, score
            probs.setdefault(chars, top)
    return labels, probs, scores


def word_chars(row: Row) -> dict[int, CharSpan]:
    """Window word index → (char start of its first piece, char end of its last piece)."""
    out: dict[int, list[int]] = {}
    for (a, b), w in zip(row.piece_chars, row.piece_words):
        if w in out:
            out[w][1] = b
        else:
            out[w] = [a, b]
    return {w: (a, b) for w, (a, b) in out.items()}


def re_row_predictions(
    row: Row, out: Mapping[str, np.ndarray], rel: Mapping[str, np.ndarray], i: int
) -> tuple[dict[CharSpan, str], set[tuple[CharSpan, str, CharSpan, float]]]:
    """Word-aligned char spans (→ label: `--NME--` for RE, the linked candidate for cIE) and
    `(subject, relation, object, confidence)` triplets of batch row `i`."""
    labels = {}
    ents = word_entity_spans(row, out, i)
    for k, span in ents:
        label = column_label(row, int(out["link_column"][i, k])) if "link_column" in out else NME
        if labels.get(span) in (None, NME):  # entities that snap to one span: the first real label wins
            labels[span] = label
    names = row.relations if row.relation_pos is not None else row.columns
    spans = [span for _, span in ents]
    return labels, {(spans[a], r, spans[b], conf) for a, r, b, conf in row_triplets(rel, i, len(spans), names)}


def word_entity_spans(row: Row, out: Mapping[str, np.ndarray], i: int) -> list[tuple[int, CharSpan]]:
    """`(entity index, word-aligned char span)` of each valid entity of batch row `i`."""
    chars_of = word_chars(row)
    spans = []
    for k in np.nonzero(out["ent_valid"][i])[0]:
        ws = row.piece_words[int(out["ent_start"][i, k]) - 1]
        we = row.piece_words[int(out["ent_end"][i, k]) - 1]
        spans.append((int(k), (chars_of[ws][0], chars_of[we][1])))
    return spans


def row_triplets(rel: Mapping[str, np.ndarray], i: int, n: int, names: Sequence[str]):
    """`(subject entity, relation name, object entity, confidence)` of the relations predicted for
    batch row `i` among its first `n` entities; confidence rounded to 2 decimals in float32 (relik)."""
    for a, b, r in np.argwhere(rel["relation_pred"][i, :n, :n, : len(names)]):
        yield int(a), names[r], int(b), float(np.float32(rel["relation_probs"][i, a, b, r]).round(2))


def finalize_el(text: str, merged: Sequence[tuple[dict, dict, dict]], remove_nme: bool = True) -> list[Span]:
    """Document spans: the union of the windows' `(start, end, label)`, sorted by start."""
    seen: dict[tuple[int, int, str], float] = {}
    for labels, _, scores in merged:
        for (s, e), label in labels.items():
            if remove_nme and label == NME:
                continue
            seen.setdefault((s, e, label), scores[(s, e)])
    return [
        Span(s, e, label, text[s:e], score) for (s, e, label), score in sorted(seen.items(), key=lambda x: x[0][:2])
    ]


def finalize_re(
    text: str, spans: Mapping[CharSpan, str], triplets: set[tuple[CharSpan, str, CharSpan, float]]
) -> tuple[list[Span], list[Triplet]]:
    """Document spans (with their labels) and triplets, sorted."""

    def span(c: CharSpan) -> Span:
        return Span(c[0], c[1], spans.get(c, NME), text[c[0] : c[1]])

    ordered = sorted(triplets, key=lambda t: (t[0], t[2], t[1], t[3]))
    return [span(c) for c in sorted(spans)], [Triplet(span(a), r, span(b), conf) for a, r, b, conf in ordered]


TypedSpan = tuple[int, int, str]


def typed_window(
    rows: Sequence[tuple[Row, Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
) -> tuple[set[TypedSpan], set[tuple[TypedSpan, str, TypedSpan, float]]]:
    """typed: the spans `(start, end, label)` and triplets of one window from its rows' outputs."""
    best: dict[CharSpan, tuple[str, float]] = {}
    per_row = []
    for row, out, rel in rows:
        ents = []
        for k, span in word_entity_spans(row, out, 0):
            col = int(out["link_column"][0, k])
            prob = float(out["link_probs"][0, k, col])
            ents.append(span)
            if span not in best or prob > best[span][1]:
                best[span] = (row.columns[col], prob)
        per_row.append((row, ents, rel))
    label = {span: lab for span, (lab, _) in best.items()}
    triplets = set()
    for row, ents, rel in per_row:
        for a, r, b, conf in row_triplets(rel, 0, len(ents), row.relations):
            sa, sb = ents[a], ents[b]
            triplets.add(((*sa, label[sa]), r, (*sb, label[sb]), conf))
    return {(s, e, lab) for (s, e), lab in label.items()}, triplets


def finalize_typed(
    text: str, spans: set[TypedSpan], triplets: set[tuple[TypedSpan, str, TypedSpan, float]]
) -> tuple[list[Span], list[Triplet]]:
    """typed document spans (the union of the windows' `(start, end, label)`) and triplets, sorted."""

    def span(c: TypedSpan) -> Span:
        return Span(c[0], c[1], c[2], text[c[0] : c[1]])

    ordered = sorted(triplets, key=lambda t: (t[0], t[2], t[1], t[3]))
    return [span(c) for c in sorted(spans)], [Triplet(span(a), r, span(b), conf) for a, r, b, conf in ordered]
