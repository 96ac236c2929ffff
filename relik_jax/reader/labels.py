"""Gold annotations → Reader training labels for one row (official conventions), and batches.

EL: gold spans are document character offsets `(start, end, title)`; a span starts on the piece
that contains its first character and ends on the piece that contains its last; its class is its
link column (`--NME--` when its title is not among the row's candidates). RE: gold spans are word
offsets `(first word, end word)` in the document; triplets name a relation between two of them.
Spans that do not lie inside the window are not the window's labels.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

import numpy as np

from relik_jax.core.errors import ConfigError
from relik_jax.core.types import IGNORE, NME
from relik_jax.reader.inputs import Row, collate
from relik_jax.reader.spec import TaskSpec


@dataclasses.dataclass
class RowLabels:
    """Labels of one row, positions in row coordinates ([CLS] = 0, text pieces 1..n_text)."""

    starts: list[int]  # distinct gold starts, ascending
    first_ends: list[int]  # EL: the first gold end of each start
    entities: list[tuple[int, int]]  # (start, end) in (start, end) order
    columns: list[int]  # EL: gold column of each entity
    relations: list[tuple[int, int, int]]  # RE: (subject entity, object entity, relation column)


def _piece_index(row: Row, start: int, end: int) -> tuple[int, int] | None:
    starts = [a for a, _ in row.piece_chars]
    ends = [b for _, b in row.piece_chars]
    i = bisect.bisect_right(starts, start) - 1  # last piece starting at or before `start`
    j = bisect.bisect_left(ends, end)  # first piece ending at or after `end`
    if i < 0 or j >= len(ends) or j < i:
        return None
    return i + 1, j + 1


def el_row_labels(row: Row, gold: Sequence[tuple[int, int, str]]) -> RowLabels:
    """EL labels of a row from gold `(char start, char end, title)` spans of its document."""
    w = row.window
    lo, hi = w.offset, w.word_end(len(w.words) - 1) if w.words else w.offset
    col_of = {c: i for i, c in reversed(list(enumerate(row.columns))) if c is not None}
    by_start: dict[int, list[tuple[int, int]]] = {}
    for cs, ce, title in sorted((s, e, t) for s, e, t in gold if lo <= s < hi and lo <= e <= hi):
        pos = _piece_index(row, cs, ce)
        if pos is None:
            continue
        col = col_of.get(title, col_of[NME])
        ends = by_start.setdefault(pos[0], [])
        if all(e != pos[1] for e, _ in ends):
            ends.append((pos[1], col))
    starts = sorted(by_start)
    entities = [(s, e) for s in starts for e, _ in by_start[s]]
    columns = [c for s in starts for _, c in by_start[s]]
    return RowLabels(starts, [by_start[s][0][0] for s in starts], entities, columns, [])


def re_row_labels(
    row: Row, spans: Sequence[tuple], triplets: Sequence[tuple[tuple[int, int], str, tuple[int, int]]]
) -> RowLabels:
    """RE (and cIE) labels of a row from gold word spans `(first, end[, title])` and triplets.

    cIE rows (with `row.relations`) also get each entity's link column: its title's column, or
    `--NME--` when the title is not among the row's candidates; typed rows (no `[CLS]` column) -1
    there (relik 1.0.7: an all-zero row of `disambiguation_labels`).
    """
    titles = {(sp[0], sp[1]): sp[2] for sp in spans if len(sp) > 2}
    spans = [(sp[0], sp[1]) for sp in spans]
    w = row.window
    first, last = w.first_word, w.first_word + len(w.words)
    pieces_of: dict[int, list[int]] = {}
    for p, word in enumerate(row.piece_words):
        pieces_of.setdefault(word, []).append(p + 1)

    def snap(span: tuple[int, int]) -> tuple[int, int] | None:
        a, b = span[0] - first, span[1] - first  # window words, end exclusive
        while a < b and a not in pieces_of:
            a += 1
        while b > a and (b - 1) not in pieces_of:
            b -= 1
        return (pieces_of[a][0], pieces_of[b - 1][-1]) if a < b else None

    inside = sorted({(s, e) for s, e in spans if first <= s < e <= last})
    positions = {s: p for s in inside if (p := snap(s)) is not None}
    entities = sorted(set(positions.values()))
    index = {p: i for i, p in enumerate(entities)}
    rel_names = row.relations if row.relation_pos is not None else row.columns
    col_of = {c: i for i, c in enumerate(rel_names)}
    relations = set()
    for subj, rel, obj in triplets:
        if tuple(subj) in positions and tuple(obj) in positions and rel in col_of:
            relations.add((index[positions[tuple(subj)]], index[positions[tuple(obj)]], col_of[rel]))
    columns = []
    if row.relation_pos is not None:
        link_col = {c: i for i, c in reversed(list(enumerate(row.columns))) if c is not None}
        missing = link_col[NME] if row.columns[0] is None else -1
        by_pos = {}
        for span, p in sorted(positions.items()):
            by_pos.setdefault(p, link_col.get(titles.get(span), missing))
        columns = [by_pos[p] for p in entities]
    starts = sorted({s for s, _ in entities})
    return RowLabels(starts, [], entities, columns, sorted(relations))


def collate_train(
    rows: Sequence[Row],
    labels: Sequence[RowLabels],
    spec: TaskSpec,
    *,
    batch_size: int,
    max_starts: int,
    max_entities: int,
    **bucket_kwargs,
) -> tuple[dict[str, np.ndarray], int]:
    """A static training batch (inputs + labels); returns it and the number of gold items cut by caps."""
    batch = collate(rows, batch_size=batch_size, **bucket_kwargs)
    b, length = batch["input_ids"].shape
    if max_starts < 1 or max_entities < 1:
        raise ConfigError("max_starts and max_entities must be >= 1")
    start_labels = np.where(batch["prediction_mask"].astype(bool), IGNORE, 0).astype(np.int32)
    gold_starts = np.zeros((b, max_starts), np.int32)
    start_valid = np.zeros((b, max_starts), bool)
    ent_start = np.zeros((b, max_entities), np.int32)
    ent_end = np.zeros_like(ent_start)
    ent_valid = np.zeros((b, max_entities), bool)
    first_end = np.zeros((b, max_starts), np.int32)
    ent_col = np.zeros((b, max_entities), np.int32)
    cols = batch["relation_pos" if spec.extra_relations else "symbol_pos"].shape[1]
    end_labels = np.full((b, max_starts, length), IGNORE, np.int32)
    rel_labels = np.full((b, max_entities, max_entities, cols), IGNORE, np.int32)
    cut = 0
    for i, lab in enumerate(labels):
        starts = [s for s in lab.starts][:max_starts]
        ents = [(k, e) for k, e in enumerate(lab.entities) if e[0] in set(starts)][:max_entities]
        cut += len(lab.starts) - len(starts) + sum(1 for e in lab.entities if e[0] in set(starts)) - len(ents)
        start_labels[i, starts] = 1
        gold_starts[i, : len(starts)] = starts
        start_valid[i, : len(starts)] = True
        for k, (_, (s, e)) in enumerate(ents):
            ent_start[i, k], ent_end[i, k] = s, e
        ent_valid[i, : len(ents)] = True
        if not spec.binary_end:
            first_end[i, : len(starts)] = lab.first_ends[: len(starts)]
        if spec.links:
            ent_col[i, : len(ents)] = [lab.columns[k] for k, _ in ents]
        if spec.binary_end:
            text = ~batch["prediction_mask"][i].astype(bool)
            for r, s in enumerate(starts):
                row = np.where(text, 0, IGNORE)
                row[:s] = IGNORE
                row[[e for (_, (ss, e)) in ents if ss == s]] = 1
                end_labels[i, r] = row
        if spec.relations:
            n = len(ents)
            nr = len(rows[i].relations if spec.extra_relations else rows[i].columns)
            kept = {orig: k for k, (orig, _) in enumerate(ents)}
            rel_labels[i, :n, :n, :nr] = 0
            for a, c, r in lab.relations:
                if a in kept and c in kept:
                    rel_labels[i, kept[a], kept[c], r] = 1
    batch.update(start_labels=start_labels, gold_starts=gold_starts, gold_start_valid=start_valid,
                 gold_ent_start=ent_start, gold_ent_end=ent_end, gold_ent_valid=ent_valid)  # fmt: skip
    if spec.binary_end:
        batch.update(end_labels=end_labels)
    else:
        batch.update(gold_end_target=first_end)
    if spec.links:
        batch.update(gold_ent_label=ent_col)
    if spec.relations:
        batch.update(relation_labels=rel_labels)
    return batch, cut
