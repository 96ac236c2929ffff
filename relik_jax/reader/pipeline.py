"""Reader-only annotation: texts + given candidates → spans / links (EL) or spans / triplets (RE).

Rows from all documents are pooled, sorted by length and cut into static-shape batches, so the
jitted programs compile once per (length, columns[, entities]) bucket and never again.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import itertools
import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.core.shapes import bucket, capped_buckets, power_of_two_buckets
from relik_jax.core.types import NME
from relik_jax.data.windows import Window, Words, given_words, make_windows, spacy_words
from relik_jax.encoders import layers, quantize
from relik_jax.reader import decode, programs
from relik_jax.reader.checkpoint import load_reader
from relik_jax.reader.inputs import (
    DEFAULT_COLUMN_BUCKETS,
    DEFAULT_LENGTH_BUCKETS,
    CandidateEncoder,
    Row,
    Vocab,
    collate,
    el_rows,
    re_rows,
    tokenize_words,
    typed_rows,
)
from relik_jax.reader.model import Reader, relation_columns
from relik_jax.reader.outputs import RelikOutput, WindowOutput

log = logging.getLogger(__name__)
TEXT_BUCKETS = (64, 128)  # + the row length: end-head extents (32-word windows are ~40-60 pieces)
FINE_BUCKETS = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)  # entities, relations per row
CELL_BUDGET = 1 << 16  # (subject, object, relation) cells per relation batch


class ReaderPipeline:
    """Runs a Reader over documents whose candidates are given (no retriever)."""

    def __init__(
        self,
        model: Reader,
        params: Any,
        tokenizer: Any,
        *,
        window_size: int = 32,
        window_stride: int = 16,
        max_length: int = 512,
        batch_size: int = 8,
        max_starts: int = 32,
        max_entities: int = 64,
        top_k: int = 5,
        relation_threshold: float | None = None,
        length_buckets: Sequence[int] = DEFAULT_LENGTH_BUCKETS,
        column_buckets: Sequence[int] = DEFAULT_COLUMN_BUCKETS,
        official_decisions: bool = False,
        use_nme: bool | None = None,
        overflow: str = "split",
    ):
        """typed readers: `use_nme` (default: the reader's `use_nme`, false for official folders, as
        relik 1.0.7's inference) and `overflow` ("split" long candidate lists over rows, or "cut" them
        as relik 1.0.7 does) choose the input layout (`inputs.typed_rows`)."""
        if overflow not in ("split", "cut"):
            raise ConfigError(f"overflow must be 'split' or 'cut', got {overflow!r}")
        self.model = model
        self.spec = model.config.spec
        self.task = self.spec.name
        self.params = params
        self.tokenizer = tokenizer
        self.window_size, self.window_stride = window_size, window_stride
        max_positions = model.config.encoder.max_position_embeddings
        if model.config.encoder.position_biased_input and max_length > max_positions:
            raise ConfigError(f"max_length {max_length} exceeds the encoder's {max_positions} positions")
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_starts, self.max_entities = max_starts, max_entities
        self.top_k = top_k
        self.relation_threshold = model.config.threshold if relation_threshold is None else relation_threshold
        self.use_nme = model.config.use_nme if use_nme is None else bool(use_nme)
        self.candidate_overflow = overflow
        self.length_buckets = capped_buckets(length_buckets, max_length)
        self.column_buckets = tuple(column_buckets)
        self.vocab = Vocab.from_tokenizer(tokenizer)
        self.candidate_encoder = CandidateEncoder(tokenizer, self.spec.candidate_symbol)
        self.relation_encoder = CandidateEncoder(tokenizer, "[R-0]") if self.spec.extra_relations else None
        self._predict = jax.jit(
            functools.partial(
                programs.predict_spans,
                model,
                max_starts=max_starts,
                max_entities=max_entities,
                official_decisions=official_decisions,
            ),
            static_argnames="text_length",
        )
        self._vectors = jax.jit(self._vectors_impl)
        self._relations = jax.jit(self._relations_impl)
        self.overflow = collections.Counter()

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        dtype: Any = jnp.float32,
        calibration: Calibration | bool | None = None,
        **kwargs,
    ) -> ReaderPipeline:
        """A reader folder (ours or official relik 1.0.7), with the pipeline settings in `kwargs`.

        `dtype`: float32, bfloat16 (matmul operands; accumulation and the heads in float32) or
        "int8" (the encoder's dense layers as int8 dots, `relik_jax.encoders.quantize`; attention in
        bfloat16; the heads in float32). int8 is SmoothQuant calibrated on `calibration` (documents
        and candidates; None: the package's calibration texts, `default_calibration`), or plain
        absmax quantization with `calibration=False`; a `Calibration`'s empty fields are filled
        by `default_calibration`."""
        if isinstance(dtype, str) and dtype == "int8":
            model, params, tokenizer = load_reader(folder, dtype=jnp.bfloat16)
            batches, alpha = None, quantize.SMOOTHING
            if calibration is not False:
                docs = default_calibration(model.config.spec, None if calibration is True else calibration)
                batches, alpha = cls(model, params, tokenizer, **kwargs).calibration_batches(docs), docs.alpha
            model, params = int8_reader(model, params, batches, alpha=alpha)
        else:
            model, params, tokenizer = load_reader(folder, dtype=dtype)
        params = jax.device_put(params)
        if jnp.dtype(model.dtype) == jnp.bfloat16:  # the layers' kernels cast once, not at every call
            params = layers.layer_kernels_in(params, jnp.bfloat16)
        return cls(model, params, tokenizer, **kwargs)

    def calibration_batches(self, calibration: Calibration) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The encoder inputs (ids, mask, token types) of `calibration`'s documents, as this pipeline
        builds its rows and batches."""
        if not calibration.texts:
            raise DataError("int8 calibration needs at least one text")
        _, docs_words = documents(list(calibration.texts))
        cands = list(calibration.candidates)
        rels = list(calibration.relations)
        rows = [r for d, (text, w) in enumerate(docs_words) for r in self.rows(self.prepare(d, text, w, cands, rels))]
        batches = []
        for s in range(0, len(rows), self.batch_size):
            b = collate(rows[s : s + self.batch_size], batch_size=self.batch_size,
                        length_buckets=self.length_buckets, column_buckets=self.column_buckets)  # fmt: skip
            batches.append((b["input_ids"], b["attention_mask"], b["token_type_ids"]))
        return batches

    def with_params(self, params: Any) -> ReaderPipeline:
        """This pipeline with other weights (the same compiled programs and settings)."""
        new = copy.copy(self)
        new.params, new.overflow = params, collections.Counter()
        return new

    def text_buckets(self, length: int) -> tuple[int, ...]:
        """Static end-head extents used with rows of padded `length` (see `programs.predict_spans`)."""
        return capped_buckets(TEXT_BUCKETS, length)

    def warmup(self, relation_counts: Sequence[int] = ()) -> int:
        """Compiles (ahead of time, running nothing) the programs annotation runs, so that no call
        compiles later; returns how many.

        Span programs: every (length, columns, text extent) bucket. Relation models (RE, cIE) also
        get the relation vectors of every (length, columns) bucket and the relation scores of every
        entity bucket for each count in `relation_counts` (the relation lists calls will read, e.g.
        the model's stored names); other counts compile on first use."""
        n, b = 0, self.batch_size
        relations = self.model.config.relations
        vecs = None
        # cIE rows carry their relation columns apart from the entity ones: the stored count's bucket
        rcols = sorted({bucket(c, self.column_buckets) for c in relation_counts if c > 0})
        for length, cols, rc in itertools.product(
            self.length_buckets, self.column_buckets, rcols if self.spec.extra_relations else [None]
        ):
            batch = {k: _shape((b, length), np.int32) for k in ("input_ids", "attention_mask", "token_type_ids",
                                                                "prediction_mask")}  # fmt: skip
            batch |= {"symbol_pos": _shape((b, cols), np.int32), "symbol_valid": _shape((b, cols), bool)}
            if rc is not None:
                batch |= {"relation_pos": _shape((b, rc), np.int32), "relation_valid": _shape((b, rc), bool)}
            for text_length in self.text_buckets(length):
                lowered = self._predict.lower(self.params, batch, text_length=text_length)
                lowered.compile()
                n += 1
            if relations:
                out = lowered.out_info
                rel_pos, _ = relation_columns(self.model.config, batch)
                lowered = self._vectors.lower(
                    self.params, out["features"], out["ent_start"], out["ent_end"], rel_pos, out.get("ent_emb")
                )
                lowered.compile()
                vecs = lowered.out_info
                n += 1
        if vecs is not None:
            ent, rel = vecs[0], vecs[2]
            for r in sorted({bucket(c, FINE_BUCKETS) for c in relation_counts if c > 0}):
                for e in (x for x in FINE_BUCKETS if x <= bucket(self.max_entities, FINE_BUCKETS)):
                    for rows in power_of_two_buckets(self._relation_batch(e, r)):
                        subj = _shape((rows, e, ent.shape[-1]), ent.dtype)
                        args = (subj, subj, _shape((rows, r, rel.shape[-1]), rel.dtype), _shape((rows, e), bool),
                                _shape((rows, r), bool), _shape((), np.float32))  # fmt: skip
                        self._relations.lower(self.params, *args).compile()
                        n += 1
        return n

    def _relation_batch(self, e: int, r: int) -> int:
        """Rows per relation batch of `e` entities and `r` relations (a power of two: few variants)."""
        limit = max(1, min(self.batch_size, CELL_BUDGET // (e * e * r)))
        return 1 << (limit.bit_length() - 1)

    def _vectors_impl(self, params, feats, ent_start, ent_end, pos, ent_emb=None):
        return self.model.apply(
            {"params": params}, feats, ent_start, ent_end, pos, True, ent_emb, method="relation_vectors"
        )

    def _relations_impl(self, params, subj, obj, rel, ent_valid, rel_valid, threshold):
        return programs.relation_decisions(
            self.model, params, subj, obj, rel, ent_valid, rel_valid, threshold=threshold
        )

    # ------------------------------------------------------------------------------------------

    def prepare(
        self,
        doc: int,
        text: str,
        words: Words,
        candidates: Sequence[str],
        relations: Sequence[str] = (),
        *,
        size: int | None = None,
        stride: int | None = None,
    ) -> Prepared:
        """A document whose every window reads `candidates`: the relation names for RE; for cIE the
        entity candidates, with `relations`."""
        size = size or self.window_size
        stride = self.window_stride if stride is None else stride
        windows = make_windows(text, words, size, stride, doc=doc)
        if self.spec.candidates == "relations":
            candidates, relations = [], candidates
        return Prepared(text, words, windows, [list(candidates)] * len(windows), list(relations))

    def rows(self, doc: Prepared) -> list[Row]:
        """The reader rows of a prepared document (each window with its own candidates)."""
        if not doc.windows:
            return []
        pieces = tokenize_words(self.tokenizer, doc.words)
        kw: dict[str, Any] = {"max_length": self.max_length}
        if self.spec.typed:
            return [r for w, cands in zip(doc.windows, doc.candidates) for r in self._typed_rows(w, pieces, cands, doc.relations)]  # fmt: skip
        if self.spec.extra_relations:
            if not doc.relations:
                raise DataError("a cIE reader needs relation candidates (relations=...)")
            kw.update(relations=doc.relations, relation_encoder=self.relation_encoder)
        if self.spec.candidates == "relations":
            return [r for w in doc.windows for r in re_rows(w, pieces, doc.relations, self.vocab, self.candidate_encoder, **kw)]  # fmt: skip
        return [
            r
            for w, cands in zip(doc.windows, doc.candidates)
            for r in el_rows(w, pieces, cands, self.vocab, self.candidate_encoder, **kw)
        ]

    def _typed_rows(self, window: Window, pieces, candidates: Sequence[str], relations: Sequence[str]) -> list[Row]:
        c = self.model.config
        if self.candidate_overflow == "cut":
            n_types = min(c.additional_special_symbols_types, 100) - (1 if self.use_nme else 0)
            n_rel = min(len(self.vocab.relation_ids), 50)
            if len(candidates) > n_types or len(relations) > n_rel:
                self.overflow["windows cut"] += 1
                log.debug("window %d of document %d: %d span / %d relation candidates, %d / %d read",
                          window.window_id, window.doc, len(candidates), len(relations), n_types, n_rel)  # fmt: skip
        return typed_rows(
            window, pieces, candidates, relations, self.vocab, self.candidate_encoder, self.relation_encoder,
            type_symbols=c.additional_special_symbols_types, max_length=self.max_length, use_nme=self.use_nme,
            overflow=self.candidate_overflow,
        )  # fmt: skip

    def predict_rows(self, rows: Sequence[Row], threshold: float) -> list[dict[str, np.ndarray]]:
        """Per-row outputs (numpy) of the jitted programs, in the order of `rows`.

        Spans (and links) run in batches of rows of similar length. Relations (RE, cIE) run in a
        second pass over rows regrouped by their own entity and relation counts: the cell tensor is
        `[E, E, R, D]` per row, so one crowded row must not make its whole batch pay for it.
        """
        order = sorted(range(len(rows)), key=lambda i: rows[i].length)
        per_row: list[dict[str, Any]] = [{} for _ in rows]
        relations = self.model.config.relations
        keys = ["ent_start", "ent_end", "ent_valid", "start_overflow", "entity_overflow"]
        if self.model.config.links:
            keys += ["link_column", "link_top_columns", "link_top_probs", "link_probs"]
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            batch = collate(
                [rows[i] for i in idx],
                batch_size=self.batch_size,
                length_buckets=self.length_buckets,
                column_buckets=self.column_buckets,
            )
            length = batch["input_ids"].shape[1]
            text_length = bucket(max(rows[i].n_text for i in idx) + 2, self.text_buckets(length))
            out = self._predict(self.params, batch, text_length=text_length)
            host_out = {k: out[k] for k in keys}
            if relations:
                rel_pos, rel_valid = relation_columns(self.model.config, batch)
                subj, obj, rel = self._vectors(
                    self.params, out["features"], out["ent_start"], out["ent_end"], rel_pos, out.get("ent_emb")
                )
                host_out.update(subj=subj, obj=obj, rel_vec=rel, rel_valid=rel_valid)
            host = jax.device_get(host_out)
            self.overflow["starts"] += int(host["start_overflow"].sum())
            self.overflow["entities"] += int(host["entity_overflow"].sum())
            for j, i in enumerate(idx):
                per_row[i] = {k: v[j : j + 1] for k, v in host.items()}
        if relations:
            self._relations_pass(per_row, threshold)
        return per_row

    def _relations_pass(self, per_row: list[dict[str, Any]], threshold: float) -> None:
        """Adds `rel` (relation probabilities and decisions `[1, E, E, R]`) to every row output."""
        groups: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
        for i, p in enumerate(per_row):
            n_ent = int(p["ent_valid"].sum())
            n_rel = p["n_rel"] = int(p.pop("rel_valid").sum())
            if n_ent == 0 or n_rel == 0:
                empty = np.zeros((1, 0, 0, n_rel), np.float32)
                p["rel"] = {"relation_probs": empty, "relation_pred": empty.astype(bool)}
                continue
            groups[(bucket(n_ent, FINE_BUCKETS), bucket(n_rel, FINE_BUCKETS))].append(i)
        for (e, r), members in sorted(groups.items()):
            limit = self._relation_batch(e, r)
            for s in range(0, len(members), limit):
                chunk = members[s : s + limit]
                b = bucket(len(chunk), power_of_two_buckets(limit))
                subj, obj, rel, ent_valid, rel_valid = self._relation_inputs([per_row[i] for i in chunk], b, e, r)
                out = self._relations(self.params, subj, obj, rel, ent_valid, rel_valid, jnp.float32(threshold))
                host = jax.device_get({k: out[k] for k in ("relation_probs", "relation_pred")})
                for j, i in enumerate(chunk):
                    per_row[i]["rel"] = {k: v[j : j + 1] for k, v in host.items()}
        for p in per_row:
            for k in ("subj", "obj", "rel_vec", "n_rel"):
                p.pop(k, None)

    @staticmethod
    def _relation_inputs(outs: Sequence[dict[str, Any]], b: int, e: int, r: int):
        """Per-row entity / relation vectors padded (or cut: valid ones come first) to `[b, e|r, D]`."""

        def stack(key: str, n: int) -> np.ndarray:
            first = outs[0][key]
            x = np.zeros((b, n, first.shape[-1]), first.dtype)
            for j, o in enumerate(outs):
                v = o[key][0, :n]
                x[j, : len(v)] = v
            return x

        ent_valid = np.zeros((b, e), bool)
        rel_valid = np.zeros((b, r), bool)
        for j, o in enumerate(outs):
            ent_valid[j, : int(o["ent_valid"].sum())] = True
            rel_valid[j, : o["n_rel"]] = True
        return stack("subj", e), stack("obj", e), stack("rel_vec", r), ent_valid, rel_valid

    def __call__(
        self,
        texts: str | Sequence[str] | None = None,
        candidates: Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        words: Sequence[Sequence[str]] | None = None,
        relations: Sequence[str] | Sequence[Sequence[str]] | None = None,
        relation_threshold: float | None = None,
        window_size: int | None = None,
        window_stride: int | None = None,
    ) -> RelikOutput | list[RelikOutput]:
        """Annotates texts (or pre-tokenised `words`), every window reading its document's candidates
        (RE: `candidates` are the relation names; cIE: entity `candidates` and `relations`)."""
        single, docs_words = documents(texts, words)
        if candidates is None:
            raise DataError("the reader-only pipeline needs candidates (one list per text, or one list for all)")
        candidates = per_document(candidates, len(docs_words), "candidate")
        relations = per_document(relations or [], len(docs_words), "relation")
        size = window_size or self.window_size
        stride = self.window_stride if window_stride is None else window_stride
        prepared = [
            self.prepare(d, text, w, cands, rels, size=size, stride=stride)
            for d, ((text, w), cands, rels) in enumerate(zip(docs_words, candidates, relations))
        ]
        outputs = self.annotate(prepared, relation_threshold)
        return outputs[0] if single else outputs

    def annotate(self, docs: Sequence[Prepared], relation_threshold: float | None = None) -> list[RelikOutput]:
        """Reads prepared documents (their windows numbered `doc` = position in `docs`)."""
        threshold = self.relation_threshold if relation_threshold is None else relation_threshold
        before = sum(self.overflow.values())
        all_rows = [r for doc in docs for r in self.rows(doc)]
        preds = self.predict_rows(all_rows, threshold) if all_rows else []
        by_window: dict[tuple[int, int], list[tuple[Row, dict]]] = collections.defaultdict(list)
        for row, p in zip(all_rows, preds):
            by_window[(row.window.doc, row.window.window_id)].append((row, p))
        cut = self.overflow.pop("windows cut", 0)
        if cut:
            log.warning("%d windows had more candidates than the reader's symbols: the first ones were read "
                        "(overflow='cut', as relik 1.0.7; 'split' reads them all)", cut)  # fmt: skip
        if sum(self.overflow.values()) > before:
            log.warning("caps reached: %s (raise max_starts / max_entities)", dict(self.overflow))
        return [self._document(d, doc, by_window) for d, doc in enumerate(docs)]

    def _document(self, d: int, doc: Prepared, by_window) -> RelikOutput:
        window_outputs, merged, re_spans, re_triplets = [], [], {}, set()
        typed_spans, typed_triplets = set(), set()
        for w in doc.windows:
            rows = by_window.get((d, w.window_id), [])
            wo = WindowOutput(w.window_id, w.offset, w.text, list(w.words), [], candidates_read=[
                [c for c in r.columns if c is not None] for r, _ in rows])  # fmt: skip
            if self.spec.typed:
                spans, triplets = decode.typed_window([(r, p, p["rel"]) for r, p in rows])
                wo.spans = sorted(spans)
                wo.triplets = sorted(triplets)
                typed_spans |= spans
                typed_triplets |= triplets
            elif not self.spec.relations:
                labels, probs, scores = decode.merge_el_window([decode.el_row_predictions(r, p, 0) for r, p in rows])
                merged.append((labels, probs, scores))
                wo.spans = sorted((s, e, lab) for (s, e), lab in labels.items() if lab != NME)
                wo.span_probabilities = probs
            else:
                spans, triplets = {}, set()
                for r, p in rows:
                    labels, t = decode.re_row_predictions(r, p, p["rel"], 0)
                    for span, label in labels.items():
                        if spans.get(span) in (None, NME):
                            spans[span] = label
                    triplets |= t
                wo.spans = sorted((s, e, label) for (s, e), label in spans.items())
                wo.triplets = sorted(triplets)
                for span, label in spans.items():
                    if re_spans.get(span) in (None, NME):
                        re_spans[span] = label
                re_triplets |= triplets
            window_outputs.append(wo)
        candidates = list(dict.fromkeys(c for cands in doc.candidates for c in cands))
        if self.spec.candidates == "relations":
            candidates = list(doc.relations)
        words, starts = list(doc.words.texts), list(doc.words.starts)
        if not self.spec.relations:
            spans = decode.finalize_el(doc.text, merged)
            return RelikOutput(doc.text, spans, [], candidates, window_outputs, words, starts)
        if self.spec.typed:
            spans, triplets = decode.finalize_typed(doc.text, typed_spans, typed_triplets)
            return RelikOutput(doc.text, spans, triplets, candidates, window_outputs, words, starts)
        spans, triplets = decode.finalize_re(doc.text, re_spans, re_triplets)
        return RelikOutput(doc.text, spans, triplets, candidates, window_outputs, words, starts)


def int8_reader(
    model: Reader, params: Any, calibration: Sequence[Any] | None = None, *, alpha: float = quantize.SMOOTHING
) -> tuple[Reader, Any]:
    """`model` with its encoder's dense layers quantized to int8 (`quantize.int8`), and its params;
    SmoothQuant with `calibration` (batches of `Reader.features` inputs)."""
    ids = _shape((1, 8), np.int32)
    return quantize.int8(
        model, params, ids, ids, ids, method="features", methods=READER_METHODS, calibration=calibration, alpha=alpha
    )


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What int8 SmoothQuant measures the activations on: texts, and the candidates every window of
    them reads (as `ReaderPipeline.__call__` takes them: RE the relation names, EL entity titles, a
    typed reader its span types, cIE entity titles and `relations`). A field left None is filled by
    `default_calibration`."""

    texts: Sequence[str] | None = None
    candidates: Sequence[str] | None = None
    relations: Sequence[str] | None = None
    alpha: float = quantize.SMOOTHING  # the share of the activations' range moved into the weights


def default_calibration(spec: Any, given: Calibration | None = None) -> Calibration:
    """`given` with its empty fields filled: the package's calibration texts
    (`quantize.calibration_texts`) and candidates from the bundled sample (entity titles,
    entity types, relation names) as `spec`'s rows read them. An RE reader's candidates are relation
    names: `given.relations` serve as its candidates when `given.candidates` is None."""
    given = given or Calibration()
    sample = resources.files("relik_jax.resources") / "sample"

    def column(name: str, i: int) -> list[str]:
        return [ln.split("\t")[i] for ln in (sample / name).read_text("utf-8").splitlines() if ln]

    texts = quantize.calibration_texts() if given.texts is None else given.texts
    relations = given.relations if given.relations is not None else column("relations.tsv", 0)
    if spec.candidates == "relations":
        cands = given.candidates if given.candidates is not None else relations
        return Calibration(texts, cands, (), given.alpha)
    if spec.typed:
        cands = given.candidates if given.candidates is not None else sorted(set(column("types.tsv", 1)))
        return Calibration(texts, cands, relations, given.alpha)
    cands = given.candidates if given.candidates is not None else column("kb.tsv", 0)[:20]
    return Calibration(texts, cands, relations if spec.extra_relations else (), given.alpha)


# every Reader method the programs call (by name), so the int8 interception sees each of them
READER_METHODS = ("features", "start_logits", "end_logits", "link_logits", "type_logits", "typed_links",
                  "relation_logits", "relation_vectors", "relation_cells", "__call__")  # fmt: skip


def _shape(shape: tuple[int, ...], dtype: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype)


@dataclasses.dataclass
class Prepared:
    """A document ready for the reader: its words, windows and each window's candidates."""

    text: str
    words: Words
    windows: list[Window]
    candidates: list[list[str]]  # per window (EL / cIE entity candidates)
    relations: list[str] = dataclasses.field(default_factory=list)  # RE / cIE relation candidates
    retrieved: list[list[Any]] | None = None  # per window: the retriever's hits (when it chose them)


def documents(
    texts: str | Sequence[str] | None, words: Sequence[Any] | None = None
) -> tuple[bool, list[tuple[str, Words]]]:
    """`(single, [(text, words)])` from texts (spaCy words) or pre-tokenised documents."""
    if words is not None:
        single = bool(words) and isinstance(words[0], str)
        wl = [words] if single else list(words)
        return single, [given_words(w) if w else ("", Words((), ())) for w in wl]
    if texts is None:
        raise DataError("pass texts or words")
    single = isinstance(texts, str)
    tl = [texts] if single else list(texts)
    for i, t in enumerate(tl):
        if not isinstance(t, str):
            raise DataError(f"text {i} is a {type(t).__name__}, not a string")
    return single, [(t, spacy_words(t)) for t in tl]


def per_document(lists: Sequence[Any], n: int, what: str) -> list[list[str]]:
    """One list for every document (a flat list of strings is shared by all)."""
    if not lists or isinstance(lists[0], str):
        return [list(lists)] * n
    if len(lists) != n:
        raise DataError(f"{len(lists)} {what} lists for {n} texts")
    for i, x in enumerate(lists):
        if isinstance(x, str) or not all(isinstance(c, str) for c in x):
            raise DataError(f"{what} list {i} is not a list of strings")
    return [list(x) for x in lists]
