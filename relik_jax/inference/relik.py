"""`Relik`: text → windows → (retriever) candidates → reader → spans, links, triplets.

    relik = Relik.from_pretrained("runs/rebel")          # a bundle, a training workdir, a reader or
    out = relik("Marie Curie was born in Warsaw.")       # retriever folder, or an official ReLiK folder
    out.spans, out.triplets, out.candidates, out.windows

Modes, from what was loaded and what is passed:
- retriever + reader: each window of the text is a query; its top-k passages are that window's
  candidates (EL, cIE). RE reads the relation names the bundle stores (or `candidates=`).
- reader only: `candidates=` given (one list for all texts or one per text), or no retriever loaded.
- retriever only: no reader loaded; the output has each window's retrieved passages and no spans.

`stream()` annotates an iterable of texts chunk by chunk, preparing the next chunk (spaCy words,
windows, retrieval, reader rows) in a background thread while the reader runs on the current one.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.core.types import Span, Triplet
from relik_jax.data.windows import make_windows
from relik_jax.inference import bundle
from relik_jax.inference.settings import Settings
from relik_jax.reader.outputs import RelikOutput, WindowOutput
from relik_jax.reader.pipeline import Prepared, ReaderPipeline, documents, per_document
from relik_jax.retriever.dense import DenseRetriever, Hit


class Relik:
    """Retriever + reader annotator (either may be absent)."""

    def __init__(
        self,
        reader: ReaderPipeline | None = None,
        retriever: DenseRetriever | None = None,
        *,
        relations: Sequence[str] = (),
        settings: Settings | None = None,
        candidates: Sequence[str] = (),
        **overrides: Any,
    ):
        """`relations`: the relation names RE / cIE / typed readers read by default; `candidates`: the
        span candidates every window reads when no retriever is loaded and a call gives none (e.g. a
        typed reader's entity types)."""
        if reader is None and retriever is None:
            raise ConfigError("Relik needs a reader, a retriever, or both")
        self.reader, self.retriever = reader, retriever
        self.relations = list(relations)
        self.candidates = list(candidates)
        self.settings = (settings or Settings()).replace(**overrides)

    @property
    def task(self) -> str:
        """`span` (EL), `triplet` (RE), `typed` (RE with typed entities, closed IE), `cie`, or `retrieval`."""
        return self.reader.task if self.reader is not None else "retrieval"

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: Any = "float32", **kwargs: Any) -> Relik:
        """A bundle, a training workdir, a reader or retriever folder (ours or official), or an
        official ReLiK folder (`config.yaml`); see `relik_jax.inference.bundle.load`."""
        parts = bundle.load(path, dtype=dtype, **kwargs)
        return cls(
            parts.reader, parts.retriever, relations=parts.relations, settings=parts.settings,
            candidates=parts.candidates,
        )  # fmt: skip

    def save_pretrained(self, folder: str | Path) -> Path:
        """Writes a bundle folder that `Relik.from_pretrained` loads in one call."""
        return bundle.save(
            folder,
            task=self.task,
            reader=self.reader,
            retriever=self.retriever,
            relations=self.relations,
            settings=self.settings,
            candidates=self.candidates,
        )

    # ---- annotation ------------------------------------------------------------------------

    def __call__(
        self,
        texts: str | Sequence[str] | None = None,
        candidates: Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        words: Sequence[Any] | None = None,
        relations: Sequence[str] | Sequence[Sequence[str]] | None = None,
        top_k: int | None = None,
        window_size: int | None = None,
        window_stride: int | None = None,
        relation_threshold: float | None = None,
        annotation_type: str | None = None,
        retrieve_k: int | None = None,
        span_queries: int | None = None,
    ) -> RelikOutput | list[RelikOutput]:
        """Annotates one text (→ one output) or a list (→ a list); see the module docstring.
        `retrieve_k` (≥ top_k): passages retrieved per window and kept in each window's `retrieved`
        (e.g. to measure recall@100); the reader still reads the first `top_k`."""
        s = self.settings.replace(
            top_k=top_k, window_size=window_size, window_stride=window_stride,
            relation_threshold=relation_threshold, annotation_type=annotation_type, span_queries=span_queries,
        )  # fmt: skip
        single, docs = documents(texts, words)
        outputs = self._finish(self._prepare(docs, candidates, relations, s, retrieve_k), s)
        return outputs[0] if single else outputs

    def prepare(
        self,
        texts: Sequence[str] | None = None,
        *,
        words: Sequence[Any] | None = None,
        retrieve_k: int | None = None,
        **settings: Any,
    ) -> list[Prepared]:
        """The windows of each document and their retrieved candidates, before the reader (e.g. the
        reader's training rows from the retriever's candidates: `ReaderPipeline.rows`)."""
        _, docs = documents(texts, words)
        return self._prepare(docs, None, None, self.settings.replace(**settings), retrieve_k)

    def stream(
        self,
        texts: Iterable[str],
        *,
        chunk_size: int = 64,
        candidates: Iterable[Sequence[str] | None] | None = None,
        **settings: Any,
    ) -> Iterator[RelikOutput]:
        """Outputs for an iterable of texts, in order, `chunk_size` documents at a time; the next
        chunk is prepared in a background thread. `candidates`: an iterable parallel to `texts`."""
        s = self.settings.replace(**settings)
        cand_iter = iter(candidates) if candidates is not None else None
        ready: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def producer() -> None:
            try:
                chunk: list[str] = []
                cands: list[Any] = []
                for text in texts:
                    chunk.append(text)
                    cands.append(next(cand_iter) if cand_iter is not None else None)
                    if len(chunk) == chunk_size:
                        self._put(ready, stop, self._prepare_chunk(chunk, cands, s))
                        chunk, cands = [], []
                    if stop.is_set():
                        return
                if chunk:
                    self._put(ready, stop, self._prepare_chunk(chunk, cands, s))
                self._put(ready, stop, None)
            except BaseException as e:  # handed to the consumer, raised there
                self._put(ready, stop, e)

        thread = threading.Thread(target=producer, name="relik-prepare", daemon=True)
        thread.start()
        try:
            while (item := ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield from self._finish(item, s)
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    ready.get_nowait()
                except queue.Empty:
                    thread.join(0.05)

    @staticmethod
    def _put(q: queue.Queue, stop: threading.Event, item: Any) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _prepare_chunk(self, texts: list[str], cands: list[Any], s: Settings) -> list[Prepared]:
        _, docs = documents(texts)
        if all(c is None for c in cands):
            return self._prepare(docs, None, None, s)
        if any(c is None for c in cands):
            raise DataError("give candidates for every document of a stream or for none")
        return self._prepare(docs, cands, None, s)

    def retrieve(self, queries: Sequence[str], k: int | None = None) -> list[list[Hit]]:
        """The retriever's top-`k` (default: the `top_k` setting) passages for each query; an empty
        query gets none."""
        if self.retriever is None:
            raise ConfigError("this model has no retriever")
        k = self.settings.top_k if k is None else k
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        hits: list[list[Hit]] = [[] for _ in queries]
        asked = [i for i, q in enumerate(queries) if q.strip()]
        for i, h in zip(asked, self._retrieve([queries[i] for i in asked], k)):
            hits[i] = h
        return hits

    def warmup(self) -> dict[str, int]:
        """Compiles, before the first call, every program a call with this model's settings runs:
        the reader's on all its buckets (relation scores for the stored relation names), the query
        encoder's and the index search for `top_k`; then annotates a short text once (spaCy,
        tokenizers). Returns the programs run per part. Settings other than the model's may still
        compile on first use (another `top_k`: the search; other relation lists: relation scores)."""
        counts: dict[str, int] = {}
        if self.reader is not None:
            counts["reader"] = self.reader.warmup(relation_counts=[len(self.relations)] if self.relations else ())
        if self.retriever is not None:
            index = self.retriever.index
            counts["retriever"] = self.retriever.warmup(min(self.settings.top_k, len(index)) if index else None)
        text = "Warm-up: Marie Curie was born in Warsaw."
        if self.reader is None or self.retriever is not None or self.relations:
            self(text)
        else:
            self(text, ["Warsaw"])
        return counts

    # ---- stages --------------------------------------------------------------------------

    def _prepare(self, docs, candidates, relations, s: Settings, retrieve_k: int | None = None) -> list[Prepared]:
        """Windows, and each window's candidates (given, or retrieved)."""
        n = len(docs)
        spec = self.reader.spec if self.reader is not None else None
        windows = [make_windows(text, w, s.window_size, s.window_stride, doc=d) for d, (text, w) in enumerate(docs)]
        if spec is not None and spec.candidates == "relations":  # candidates are relation names
            rels = per_document(candidates if candidates is not None else self._default_relations(), n, "relation")
            return [Prepared(t, w, ws, [[]] * len(ws), r) for (t, w), ws, r in zip(docs, windows, rels)]
        if spec is not None and spec.extra_relations:
            rels = per_document(relations if relations is not None else self._default_relations(), n, "relation")
        else:
            rels = [[] for _ in range(n)]
        retrieved: list[list[Any]] | None = None
        if candidates is None and self.retriever is None and self.candidates:
            candidates = self.candidates
        if candidates is not None:
            cands = per_document(candidates, n, "candidate")
            per_window = [[c] * len(ws) for c, ws in zip(cands, windows)]
        else:
            if self.retriever is None:
                raise DataError(
                    "no retriever is loaded: pass candidates=[...] (one list for all texts or one per text)"
                )
            # a window of whitespace only retrieves nothing (its reader row has no candidate)
            retrieved = self.retrieve([w.text for ws in windows for w in ws], max(s.top_k, retrieve_k or 0))
            per_window, k = [], 0
            for ws in windows:
                hits = retrieved[k : k + len(ws)]
                per_window.append([[h.text for h in hs[: s.top_k]] for hs in hits])
                k += len(ws)
        prepared = [Prepared(t, w, ws, pw, r) for (t, w), ws, pw, r in zip(docs, windows, per_window, rels)]
        if retrieved is not None:
            k = 0
            for p in prepared:
                p.retrieved = retrieved[k : k + len(p.windows)]
                k += len(p.windows)
        return prepared

    def _default_relations(self) -> list[str]:
        if not self.relations:
            what = (
                "candidates=[relation names]"
                if self.reader.spec.candidates == "relations"
                else "relations=[relation names]"
            )
            raise DataError(f"this {self.task} model has no stored relation names: pass {what}")
        return self.relations

    def _retrieve(self, queries: list[str], k: int) -> list[list[Hit]]:
        if not queries:
            return []
        if self.retriever.index is None:
            raise ConfigError("the retriever has no index: build one with `python -m relik_jax.index`")
        return self.retriever.retrieve(queries, k=min(k, len(self.retriever.index)))

    def _span_pass(self, prepared: list[Prepared], s: Settings) -> None:
        """BEER2 (`span_queries` > 0): the spans a first reader pass finds (linked or --NME--) query the
        retriever beside their window; each window's candidates become the merged top-k."""
        first = self.reader.annotate(prepared, s.relation_threshold)
        texts, spans, where = [], [], []
        for d, (p, out) in enumerate(zip(prepared, first)):
            for i, (w, wo) in enumerate(zip(p.windows, out.windows)):
                if p.retrieved and p.retrieved[i]:
                    found = sorted({(a, b) for a, b, _ in wo.spans} | set(wo.span_probabilities))
                    texts.append(w.text)
                    spans.append([(a - w.offset, b - w.offset) for a, b in found])
                    where.append((d, i, len(p.retrieved[i])))
        if not texts:
            return
        k = max(n for _, _, n in where)
        merged = self.retriever.retrieve_with_spans(texts, spans, k=k, span_k=s.span_queries, rule=s.span_merge)
        for (d, i, n), hits in zip(where, merged):
            prepared[d].retrieved[i] = hits[:n]
            prepared[d].candidates[i] = [h.text for h in hits[: s.top_k]]

    def _finish(self, prepared: list[Prepared], s: Settings) -> list[RelikOutput]:
        span_pass = self.reader is not None and self.retriever is not None and s.span_queries
        if span_pass and any(p.retrieved for p in prepared):  # candidates the retriever chose (not given ones)
            self._span_pass(prepared, s)
        if self.reader is not None:
            outputs = self.reader.annotate(prepared, s.relation_threshold)
        else:
            outputs = [
                RelikOutput(
                    p.text,
                    [],
                    [],
                    list(dict.fromkeys(c for cs in p.candidates for c in cs)),
                    [WindowOutput(w.window_id, w.offset, w.text, list(w.words), []) for w in p.windows],
                    list(p.words.texts),
                    list(p.words.starts),
                )
                for p in prepared
            ]
        for p, out in zip(prepared, outputs):
            for wo, hits in zip(out.windows, p.retrieved or []):
                wo.retrieved = list(hits)
        if s.annotation_type == "word":
            outputs = [to_word_offsets(o) for o in outputs]
        return outputs


def to_word_offsets(out: RelikOutput) -> RelikOutput:
    """Spans as `[first word, last word + 1)` instead of characters (the official `annotation_type="word"`)."""

    def word_span(sp: Span) -> Span:
        first = max(bisect_right(out.word_starts, sp.start) - 1, 0)
        last = max(bisect_right(out.word_starts, max(sp.end - 1, sp.start)) - 1, first)
        return dataclasses.replace(sp, start=first, end=last + 1)

    spans = [word_span(s) for s in out.spans]
    triplets = [Triplet(word_span(t.subject), t.relation, word_span(t.object), t.confidence) for t in out.triplets]
    return dataclasses.replace(out, spans=spans, triplets=triplets)
