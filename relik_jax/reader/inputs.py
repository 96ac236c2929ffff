"""Reader rows: a window's pieces + candidate symbols, in the official layout, and static batches.

EL: `[CLS] text [SEP] --NME-- [E-k] cand_k … [SEP]`; RE: `[CLS] text [SEP] [R-0] rel_0 … [SEP]`;
typed: `[CLS] text [SEP] S_0 cand_0 S_1 cand_1 … [SEP] [R-0] rel_0 … [SEP]` (`typed_rows`).
Each word is tokenised on its own and the pieces concatenated (character offsets = word start +
in-word offset); a candidate is `"[E-k] " + candidate` tokenised whole and cut to 22 pieces.

Where the official code is unsound, rows here differ (README "Differences"):
- EL candidate k uses the symbol `[E-(k mod n_symbols)]`: beyond the model's symbols the official
  writes a literal `[E-100]` and drops candidates 102+;
- RE lists longer than the `[R-i]` symbols, or too long for `max_length`, are split over several
  rows (the official drops relations beyond the symbols and crashes on long lists);
- a text too long to leave room for any candidate raises `DataError` (the official loops forever);
- typed lists longer than the symbols are split over rows (`overflow="split"`; relik 1.0.7 reads the
  first ones: `overflow="cut"`), rows too long for `max_length` always (relik 1.0.7's truncation
  drops every relation candidate there).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.core.shapes import bucket
from relik_jax.core.types import NME
from relik_jax.data.windows import Window, Words

RESERVED_TOKENS = 20  # the official budget keeps 20 positions free
MAX_PIECES_PER_CANDIDATE = 22  # symbol included


def entity_symbol(k: int) -> str:
    return f"[E-{k}]"


def relation_symbol(k: int) -> str:
    return f"[R-{k}]"


def entity_symbols_for(n: int) -> list[str]:
    """`--NME--` and `n` entity symbols `[E-0]`…, the official EL order."""
    return [NME] + [entity_symbol(k) for k in range(n)]


def relation_symbols_for(n: int) -> list[str]:
    return [relation_symbol(k) for k in range(n)]


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Token ids a reader needs: [CLS]/[SEP]/[PAD] and its special symbols."""

    cls_id: int
    sep_id: int
    pad_id: int
    nme_id: int | None
    entity_ids: tuple[int, ...]
    relation_ids: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> Vocab:
        vocab = tokenizer.get_vocab()
        ent = _numbered(vocab, r"\[E-(\d+)\]")
        rel = _numbered(vocab, r"\[R-(\d+)\]")
        return cls(
            tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id or 0, vocab.get(NME), ent, rel
        )


def _numbered(vocab: dict[str, int], pattern: str) -> tuple[int, ...]:
    rx = re.compile(pattern)
    found = {int(m.group(1)): i for tok, i in vocab.items() if (m := rx.fullmatch(tok))}
    n = 0
    while n in found:
        n += 1
    return tuple(found[k] for k in range(n))


@dataclasses.dataclass
class DocPieces:
    """Sub-word pieces of every word of a document (each word tokenised on its own)."""

    ids: list[list[int]]  # per word
    spans: list[list[tuple[int, int]]]  # per word: document-level character [start, end) of each piece


def tokenize_words(tokenizer: Any, words: Words) -> DocPieces:
    if not len(words):
        return DocPieces([], [])
    enc = tokenizer(list(words.texts), add_special_tokens=False, return_offsets_mapping=True)
    spans = [[(start + a, start + b) for a, b in offs] for start, offs in zip(words.starts, enc["offset_mapping"])]
    return DocPieces([list(x) for x in enc["input_ids"]], spans)


@dataclasses.dataclass
class Row:
    """One reader input row: a window's text and one group of candidates."""

    window: Window
    patch: int
    input_ids: np.ndarray  # [n] int32
    n_text: int  # text pieces at positions 1..n_text
    symbol_pos: np.ndarray  # [C] positions of the columns: EL [CLS], --NME--, [E-k]...; RE [R-i]...
    columns: list[str | None]  # label of each column (EL column 0, [CLS], is None)
    piece_chars: list[tuple[int, int]]  # document-level char span of each text piece
    piece_words: list[int]  # window-level word index of each text piece
    relation_pos: np.ndarray | None = None  # cIE: positions of the [R-i] columns
    relations: list[str] = dataclasses.field(default_factory=list)  # cIE: their relation names

    @property
    def length(self) -> int:
        return len(self.input_ids)


def _window_pieces(doc: DocPieces, window: Window) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    ids, chars, word_idx = [], [], []
    for w in range(len(window.words)):
        d = window.first_word + w
        ids.extend(doc.ids[d])
        chars.extend(doc.spans[d])
        word_idx.extend([w] * len(doc.ids[d]))
    return ids, chars, word_idx


class CandidateEncoder:
    """Caches the pieces of candidate strings (the official re-tokenises them for every window)."""

    def __init__(self, tokenizer: Any, probe_symbol: str):
        self.tokenizer = tokenizer
        self.probe = probe_symbol
        self.probe_id = tokenizer.convert_tokens_to_ids(probe_symbol)
        self._cache: dict[str, list[int]] = {}

    def pieces(self, text: str) -> list[int]:
        """Pieces of `text` as they follow a symbol in `"<symbol> text"` tokenised whole."""
        out = self._cache.get(text)
        if out is None:
            ids = self.tokenizer(f"{self.probe} {text}", add_special_tokens=False)["input_ids"]
            if not ids or ids[0] != self.probe_id:
                raise DataError(f"the tokenizer does not keep {self.probe} as one token")
            out = self._cache[text] = list(ids[1:])
        return out


def _row(window, patch, vocab, text_ids, chars, words, groups, columns, symbol_pos_offsets) -> Row:
    body = [vocab.cls_id, *text_ids, vocab.sep_id]
    pos = []
    for g in groups:
        pos.append(len(body))
        body.extend(g)
    body.append(vocab.sep_id)
    return Row(
        window,
        patch,
        np.asarray(body, np.int32),
        len(text_ids),
        np.asarray(symbol_pos_offsets + pos, np.int32),
        columns,
        chars,
        words,
    )


def el_rows(
    window: Window,
    doc: DocPieces,
    candidates: Sequence[str],
    vocab: Vocab,
    encoder: CandidateEncoder,
    *,
    max_length: int = 512,
    max_pieces_per_candidate: int = MAX_PIECES_PER_CANDIDATE,
    relations: Sequence[str] = (),
    relation_encoder: CandidateEncoder | None = None,
) -> list[Row]:
    """EL rows of a window: all candidates, over as many rows ("patches") as `max_length` needs.

    A window without candidates gets no row (nothing to link to, as in the official pipeline).
    With `relations` (cIE), every row also carries all of them after the entity candidates.
    """
    if vocab.nme_id is None or not vocab.entity_ids:
        raise ConfigError("the tokenizer has no --NME-- / [E-i] symbols: not an EL reader tokenizer")
    text_ids, chars, words = _window_pieces(doc, window)
    rel_groups = []
    if relations:
        if len(relations) > len(vocab.relation_ids):
            raise DataError(
                f"a cIE row reads at most {len(vocab.relation_ids)} relation candidates (the [R-i] symbols), got {len(relations)}"
            )
        rel_groups = [[vocab.relation_ids[i], *relation_encoder.pieces(r)] for i, r in enumerate(relations)]
    budget = max_length - RESERVED_TOKENS - len(text_ids) - sum(map(len, rel_groups))
    n_sym = len(vocab.entity_ids)
    rows: list[Row] = []
    used = 0
    while used < len(candidates):
        groups = [[vocab.nme_id]]
        for k in range(used, len(candidates)):
            enc = [vocab.entity_ids[k % n_sym], *encoder.pieces(candidates[k])][:max_pieces_per_candidate]
            groups.append(enc)
        total = sum(map(len, groups))
        if total > budget:  # the official test: candidates + text + 20 > max_length
            kept, running = 0, 0
            while kept < len(groups) and running + len(groups[kept]) < budget:
                running += len(groups[kept])
                kept += 1
            groups = groups[:kept]
        n_cands = len(groups) - 1
        if n_cands < 1:
            raise DataError(
                f"window {window.window_id} of document {window.doc} has {len(text_ids)} pieces: no candidate fits "
                f"in max_length {max_length}; use smaller windows"
            )
        columns = [None, NME, *candidates[used : used + n_cands]]
        row = _row(window, len(rows), vocab, text_ids, chars, words, groups + rel_groups, columns, [0])
        if rel_groups:
            row.symbol_pos, row.relation_pos = row.symbol_pos[: len(groups) + 1], row.symbol_pos[len(groups) + 1 :]
            row.relations = list(relations)
        rows.append(row)
        used += n_cands
    return rows


def re_rows(
    window: Window,
    doc: DocPieces,
    relations: Sequence[str],
    vocab: Vocab,
    encoder: CandidateEncoder,
    *,
    max_length: int = 512,
) -> list[Row]:
    """RE rows of a window: relations in groups of at most the model's `[R-i]` symbols and `max_length`."""
    if not vocab.relation_ids:
        raise ConfigError("the tokenizer has no [R-i] symbols: not an RE reader tokenizer")
    text_ids, chars, words = _window_pieces(doc, window)
    n_sym = len(vocab.relation_ids)
    rows: list[Row] = []
    used = 0
    while used < len(relations):
        groups, length = [], len(text_ids) + 3
        for k in range(used, min(used + n_sym, len(relations))):
            enc = [vocab.relation_ids[k - used], *encoder.pieces(relations[k])]
            if length + len(enc) > max_length:
                break
            groups.append(enc)
            length += len(enc)
        if not groups:
            raise DataError(
                f"window {window.window_id} of document {window.doc}: relation {relations[used]!r} does not fit "
                f"in max_length {max_length} beside {len(text_ids)} text pieces"
            )
        columns = list(relations[used : used + len(groups)])
        rows.append(_row(window, len(rows), vocab, text_ids, chars, words, groups, columns, []))
        used += len(groups)
    return rows


def typed_rows(
    window: Window,
    doc: DocPieces,
    candidates: Sequence[str],
    relations: Sequence[str],
    vocab: Vocab,
    encoder: CandidateEncoder,
    relation_encoder: CandidateEncoder,
    *,
    type_symbols: int,
    max_length: int = 512,
    use_nme: bool = False,
    overflow: str = "split",
) -> list[Row]:
    """typed rows of a window (relik 1.0.7's `RelikREDataset` with span-candidate symbols).

    Candidate k sits behind symbol S_k = `--NME--`, `[E-0]`, `[E-1]`, … (`"S_k cand"` tokenised
    whole); with `use_nme` the list read starts with the bare `--NME--` (what relik's cIE training
    reads), otherwise the first real candidate sits behind `--NME--` (relik's inference default).
    The `[SEP]` between the two lists is a position like the others. A row reads at most
    `type_symbols` (T, ≤ 100) span candidates and min(R, 50) relations: longer lists are split over
    rows (`overflow="split"`, each row with the official layout of its part) or cut as relik 1.0.7
    does (`"cut"`, logged by the pipeline); rows over `max_length` are split either way.
    """
    if overflow not in ("split", "cut"):
        raise ConfigError(f"overflow must be 'split' or 'cut', got {overflow!r}")
    if vocab.nme_id is None or not vocab.relation_ids:
        raise ConfigError("the tokenizer has no --NME-- / [R-i] symbols: not a typed reader tokenizer")
    symbols = [vocab.nme_id, *vocab.entity_ids][: min(type_symbols, 100)]
    n_rel_cap = min(len(vocab.relation_ids), 50)
    real = list(candidates)
    if not real and not use_nme:
        raise DataError(
            f"window {window.window_id} of document {window.doc}: a typed reader needs span candidates "
            "(the labels of its spans); got none"
        )
    per_row = len(symbols) - (1 if use_nme else 0)
    if per_row < 1:
        raise ConfigError("the reader has no [E-k] symbols besides --NME--")
    text_ids, chars, words = _window_pieces(doc, window)
    if overflow == "cut":
        real, relations = real[:per_row], list(relations)[:n_rel_cap]
    # relation parts: at most the symbols and half the free space each
    free = max_length - RESERVED_TOKENS - len(text_ids) - 1
    rel_items = [[vocab.relation_ids[0], *relation_encoder.pieces(r)] for r in relations]
    rel_parts: list[list[int]] = [[]]
    used = 0
    for k, item in enumerate(rel_items):
        part = rel_parts[-1]
        if part and (len(part) >= n_rel_cap or used + len(item) > free // 2):
            rel_parts.append([])
            part, used = rel_parts[-1], 0
        if len(item) > free // 2:
            raise DataError(
                f"window {window.window_id} of document {window.doc}: relation {relations[k]!r} does not fit in "
                f"max_length {max_length} beside {len(text_ids)} text pieces; use smaller windows"
            )
        part.append(k)
        used += len(item)
    rel_len = max(sum(len(rel_items[k]) for k in part) for part in rel_parts)
    ent_free = free - rel_len
    head = 1 if use_nme else 0  # the bare --NME-- item that starts every row's list
    ent_parts: list[list[int]] = []
    part, used = [], head
    for k, c in enumerate(real):
        n = 1 + len(encoder.pieces(c))
        if part and (len(part) >= per_row or used + n > ent_free):
            ent_parts.append(part)
            part, used = [], head
        if used + n > ent_free:
            raise DataError(
                f"window {window.window_id} of document {window.doc}: span candidate {c!r} does not fit in "
                f"max_length {max_length} beside {len(text_ids)} text pieces; use smaller windows"
            )
        part.append(k)
        used += n
    if part or not ent_parts:
        ent_parts.append(part)
    rows: list[Row] = []
    for ents in ent_parts:
        cols = ([NME] if use_nme else []) + [real[k] for k in ents]
        for rels in rel_parts:
            body = [vocab.cls_id, *text_ids, vocab.sep_id]
            sym_pos, rel_pos = [], []
            for j, c in enumerate(cols):
                sym_pos.append(len(body))
                body.append(symbols[j])
                if not (use_nme and j == 0):
                    body.extend(encoder.pieces(c))
            body.append(vocab.sep_id)
            for i, k in enumerate(rels):
                rel_pos.append(len(body))
                body.extend([vocab.relation_ids[i], *rel_items[k][1:]])
            body.append(vocab.sep_id)
            row = Row(window, len(rows), np.asarray(body, np.int32), len(text_ids),
                      np.asarray(sym_pos, np.int32), cols, chars, words)  # fmt: skip
            row.relation_pos = np.asarray(rel_pos, np.int32)
            row.relations = [relations[k] for k in rels]
            rows.append(row)
    return rows


# ---- batching --------------------------------------------------------------------------------

DEFAULT_LENGTH_BUCKETS = (64, 128, 192, 256, 320, 384, 448, 480, 512)  # EL rows with 100 candidates: 450-512
DEFAULT_COLUMN_BUCKETS = (4, 8, 16, 32, 64, 128)
# Training batches pad less (every padded entity costs E² relation cells): more shapes, each
# compiled once per run.
TRAIN_LENGTH_BUCKETS = (32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 448, 512)
TRAIN_COLUMN_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64, 96, 128)
TRAIN_CAP_BUCKETS = (6, 12, 24, 48, 96, 128)


def collate(
    rows: Sequence[Row],
    *,
    batch_size: int,
    length_buckets=DEFAULT_LENGTH_BUCKETS,
    column_buckets=DEFAULT_COLUMN_BUCKETS,
) -> dict[str, np.ndarray]:
    """Pads rows into one static-shape batch of `batch_size` rows (length and columns bucketed)."""
    if not rows:
        raise DataError("collate() needs at least one row")
    if len(rows) > batch_size:
        raise ConfigError(f"{len(rows)} rows do not fit in a batch of {batch_size}")
    length = bucket(max(r.length for r in rows), length_buckets)
    cols = bucket(max(len(r.symbol_pos) for r in rows), column_buckets)
    ids = np.zeros((batch_size, length), np.int32)
    att = np.zeros_like(ids)
    tt = np.zeros_like(ids)
    pm = np.ones_like(ids)
    sym = np.zeros((batch_size, cols), np.int32)
    sym_valid = np.zeros((batch_size, cols), bool)
    with_relations = rows[0].relation_pos is not None
    if with_relations:
        rcols = bucket(max(len(r.relation_pos) for r in rows), column_buckets)
        rel = np.zeros((batch_size, rcols), np.int32)
        rel_valid = np.zeros((batch_size, rcols), bool)
    for i, r in enumerate(rows):
        n = r.length
        ids[i, :n] = r.input_ids
        att[i, :n] = 1
        tt[i, r.n_text + 2 : n] = 1
        pm[i, 1 : 1 + r.n_text] = 0
        sym[i, : len(r.symbol_pos)] = r.symbol_pos
        sym_valid[i, : len(r.symbol_pos)] = True
        if with_relations:
            rel[i, : len(r.relation_pos)] = r.relation_pos
            rel_valid[i, : len(r.relation_pos)] = True
    extra = {"relation_pos": rel, "relation_valid": rel_valid} if with_relations else {}
    return extra | {
        "input_ids": ids,
        "attention_mask": att,
        "token_type_ids": tt,
        "prediction_mask": pm,
        "symbol_pos": sym,
        "symbol_valid": sym_valid,
    }
