"""Official relik reader batches (tensor dicts) → relik_jax static-shape batches.

Used to run relik_jax on exactly the batches the official code built (parity fixtures, the
training-speed benchmark's dumped batches). Official label conventions (relik 1.0.7):
- `start_labels [B, L]`: -100 ignored, 0, or > 0 at a gold start (EL: the gold column);
- `end_labels [B, S_b, L]`: one row per gold start (rows of -100 pad the batch), values > 0 at
  the start's gold ends (EL: the gold column), -100 ignored;
- RE `relation_labels [B, E, E, R]`: 0/1, -100 on padding;
- typed (`special_symbols_mask_entities` marks the span-candidate symbols, `special_symbols_mask`
  the relation ones): `disambiguation_labels [B, E, n_T + n_R]`, 1 in the gold candidate's column.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from relik_jax.core.errors import DataError
from relik_jax.core.types import IGNORE
from relik_jax.reader.spec import get_spec


def _pad(rows: list[list[Any]], width: int, fill: int) -> np.ndarray:
    out = np.full((len(rows), max(width, 1)), fill, np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def symbol_positions(special_symbols_mask: np.ndarray, columns: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the special symbols of each row, padded to `columns` → (pos, valid)."""
    rows = [np.nonzero(m)[0].tolist() for m in special_symbols_mask]
    width = columns or max(len(r) for r in rows)
    if max(len(r) for r in rows) > width:
        raise DataError(f"a row has {max(len(r) for r in rows)} symbols, more than the {width} columns")
    pos = _pad(rows, width, 0)
    valid = np.arange(pos.shape[1])[None, :] < np.array([len(r) for r in rows])[:, None]
    return pos, valid


def from_official(
    batch: dict[str, np.ndarray], task: str, *, max_starts: int | None = None, max_entities: int | None = None
) -> dict[str, np.ndarray]:
    """Inputs + labels of an official batch in the layout `reader_losses` / `predict_spans` read."""
    out = {k: np.asarray(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids", "prediction_mask")}
    spec = get_spec(task)
    if spec.typed:
        out["symbol_pos"], out["symbol_valid"] = symbol_positions(
            np.asarray(batch["special_symbols_mask_entities"], bool)
        )
        out["relation_pos"], out["relation_valid"] = symbol_positions(np.asarray(batch["special_symbols_mask"], bool))
    else:
        out["symbol_pos"], out["symbol_valid"] = symbol_positions(np.asarray(batch["special_symbols_mask"], bool))
    if "start_labels" not in batch:
        return out
    start_labels = np.asarray(batch["start_labels"])
    end_labels = np.asarray(batch["end_labels"])
    b, length = start_labels.shape
    out["start_labels"] = np.where(start_labels == IGNORE, IGNORE, (start_labels > 0).astype(np.int64))
    starts, ents, ent_labels, first_ends, end_rows = [], [], [], [], []
    for r in range(b):
        pos = np.nonzero(start_labels[r] > 0)[0]
        rows = [row for row in end_labels[r] if not (row == IGNORE).all()]
        if len(rows) != len(pos):
            raise DataError(f"row {r}: {len(pos)} gold starts but {len(rows)} end-label rows")
        starts.append(pos.tolist())
        ents.append([(s, e) for s, row in zip(pos, rows) for e in np.nonzero(row > 0)[0]])
        ent_labels.append([int(row[e]) for row in rows for e in np.nonzero(row > 0)[0]])
        first_ends.append([int(np.argmax(row > 0)) for row in rows])
        end_rows.append([np.where(row == IGNORE, IGNORE, (row > 0).astype(np.int64)) for row in rows])
    s_cap = max_starts or max(1, max(len(s) for s in starts))
    e_cap = max_entities or max(1, max(len(e) for e in ents))
    out["gold_starts"] = _pad(starts, s_cap, 0)
    out["gold_start_valid"] = np.arange(s_cap)[None, :] < np.array([len(s) for s in starts])[:, None]
    out["gold_ent_start"] = _pad([[s for s, _ in e] for e in ents], e_cap, 0)
    out["gold_ent_end"] = _pad([[t for _, t in e] for e in ents], e_cap, 0)
    out["gold_ent_valid"] = np.arange(e_cap)[None, :] < np.array([len(e) for e in ents])[:, None]
    if not spec.binary_end:
        out["gold_end_target"] = _pad(first_ends, s_cap, 0)
        out["gold_ent_label"] = _pad(ent_labels, e_cap, 0)
    else:
        labels = np.full((b, s_cap, length), IGNORE, np.int64)
        for r, rows in enumerate(end_rows):
            for i, row in enumerate(rows):
                labels[r, i] = row
        out["end_labels"] = labels
        rel = np.asarray(batch["relation_labels"])
        n_rel = out["relation_pos" if spec.extra_relations else "symbol_pos"].shape[1]
        padded = np.full((b, e_cap, e_cap, n_rel), IGNORE, np.int64)
        e = min(e_cap, rel.shape[1])
        padded[:, :e, :e, : rel.shape[3]] = rel[:, :e, :e]
        out["relation_labels"] = padded
    if spec.typed:  # the gold column of each entity, -1 where its label is not among the candidates
        n_t = out["symbol_pos"].shape[1]
        dis = np.asarray(batch["disambiguation_labels"])[:, :, :n_t]
        labels = np.full((b, e_cap), -1, np.int32)
        e = min(e_cap, dis.shape[1])
        hit = (dis[:, :e] > 0).any(-1)
        labels[:, :e] = np.where(hit, np.argmax(dis[:, :e] > 0, axis=-1), -1)
        out["gold_ent_label"] = labels
    return out
