"""End-to-end entity-linking evaluation: text → windows → retriever top-k → reader → document spans,
scored as GERBIL scores A2KB with strong annotation matching (InKB micro P / R / F1).

- **InKB (strong match)**: a prediction is correct when a gold mention has exactly its character
  span *and* its title. Gold mentions labelled `--NME--` are not counted (neither in the gold total
  nor as matches), and predictions linked to `--NME--` are not counted either. Micro-averaged: the
  counts of every document (and, for the "micro" row, of every dataset) are summed first.
- **Mention detection (MD)**: spans only: a predicted span (whatever its label, `--NME--`
  included) is correct when a gold mention (`--NME--` included) has exactly its character span.
- **Retriever recall@k**: over the (window, gold title) pairs — every distinct non-NME title of a
  gold mention lying wholly inside a window —, the share whose title is among that window's top-k
  retrieved passages (a passage's title is its text before ` <def> `).

Gold mentions may nest or overlap (GERBIL datasets annotate "Turku" inside "Turku's harbor"):
they are scored as given.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tqdm.auto import tqdm

from relik_jax.core.errors import DataError
from relik_jax.core.types import NME
from relik_jax.data.formats import ELDocument
from relik_jax.reader.outputs import RelikOutput
from relik_jax.retriever.passages import passage_title

log = logging.getLogger(__name__)
RECALL_KS = (1, 10, 50, 100)


@dataclasses.dataclass
class PRF:
    """Counts of one micro-averaged precision / recall / F1."""

    tp: int = 0
    predicted: int = 0
    gold: int = 0

    def add(self, gold: set, predicted: set) -> None:
        self.tp += len(gold & predicted)
        self.predicted += len(predicted)
        self.gold += len(gold)

    def __iadd__(self, other: PRF) -> PRF:
        self.tp, self.predicted, self.gold = (
            self.tp + other.tp,
            self.predicted + other.predicted,
            self.gold + other.gold,
        )
        return self

    @property
    def precision(self) -> float:
        return self.tp / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclasses.dataclass
class ELCounts:
    """Everything the EL metrics are computed from (summable across documents and datasets)."""

    inkb: PRF = dataclasses.field(default_factory=PRF)
    md: PRF = dataclasses.field(default_factory=PRF)
    recall_found: dict[int, int] = dataclasses.field(default_factory=dict)  # k -> (window, title) pairs found
    recall_total: int = 0
    documents: int = 0
    seconds: float = 0.0

    def __iadd__(self, other: ELCounts) -> ELCounts:
        self.inkb += other.inkb
        self.md += other.md
        for k, v in other.recall_found.items():
            self.recall_found[k] = self.recall_found.get(k, 0) + v
        self.recall_total += other.recall_total
        self.documents += other.documents
        self.seconds += other.seconds
        return self

    def ratios(self) -> dict[str, float]:
        """The shares: `inkb_{precision,recall,f1}`, `md_{...}`, `recall_at_k` (when measured)."""
        out: dict[str, float] = {}
        for name, c in (("inkb", self.inkb), ("md", self.md)):
            out.update({f"{name}_precision": c.precision, f"{name}_recall": c.recall, f"{name}_f1": c.f1})
        if self.recall_total:
            for k in sorted(self.recall_found):
                out[f"recall_at_{k}"] = self.recall_found[k] / self.recall_total
        return out

    def metrics(self) -> dict[str, float]:
        """The row: the shares (`ratios`), the counts, and documents/s when timed."""
        out = self.ratios()
        out.update(documents=self.documents, gold_inkb=self.inkb.gold, predicted_inkb=self.inkb.predicted)
        if self.seconds:
            out["docs_per_s"] = self.documents / self.seconds
        return out


def gold_inkb(doc: ELDocument) -> set[tuple[int, int, str]]:
    return {(s, e, t) for s, e, t in doc.spans if t != NME}


def score_document(doc: ELDocument, out: RelikOutput, ks: Sequence[int] = RECALL_KS) -> ELCounts:
    """The counts of one document's predictions (`out.spans`, and `out.windows[*].retrieved`)."""
    c = ELCounts(documents=1)
    pred = {(s.start, s.end, passage_title(s.label)) for s in out.spans}
    c.inkb.add(gold_inkb(doc), {p for p in pred if p[2] != NME})
    c.md.add({(s, e) for s, e, _ in doc.spans}, {(s, e) for s, e, _ in pred})
    if any(w.retrieved for w in out.windows):
        c.recall_found = {k: 0 for k in ks}
        for w in out.windows:
            lo, hi = w.offset, w.offset + len(w.text)
            titles = {t for s, e, t in doc.spans if lo <= s and e <= hi and t != NME}
            ranked = [passage_title(h.text) for h in w.retrieved]
            c.recall_total += len(titles)
            for k in ks:
                c.recall_found[k] += len(titles & set(ranked[:k]))
    return c


def check_documents(docs: Sequence[ELDocument], where: str) -> None:
    """One clear error for EL evaluation data that cannot be scored: the same span given two titles.
    (Spans out of the text are rejected when the file is read; nested / overlapping gold mentions
    are legitimate in GERBIL data and are kept, with a note in the log.)"""
    overlapping = 0
    for d in docs:
        titles: dict[tuple[int, int], str] = {}
        for s, e, t in d.spans:
            if titles.setdefault((s, e), t) != t:
                raise DataError(
                    f"{where}: document {d.doc_id!r} gives the span [{s}, {e}) two titles "
                    f"({titles[(s, e)]!r} and {t!r}); strong matching needs one"
                )
        spans = sorted(titles)
        overlapping += sum(b[0] < a[1] for a, b in itertools.pairwise(spans))
    if overlapping:
        log.info("%s: %d overlapping or nested gold mentions (scored as given)", where, overlapping)


Annotator = Callable[[list[str]], list[RelikOutput]]


def evaluate_documents(
    annotate: Annotator,
    docs: Sequence[ELDocument],
    *,
    ks: Sequence[int] = RECALL_KS,
    chunk: int = 16,
    progress: bool = True,
    desc: str = "evaluating",
) -> ELCounts:
    """Runs `annotate` (texts → outputs, e.g. `functools.partial(relik, retrieve_k=100)`) over the
    documents `chunk` at a time and sums their counts."""
    total = ELCounts()
    start = time.perf_counter()
    with tqdm(total=len(docs), desc=desc, unit="doc", disable=not progress, leave=False) as bar:
        for i in range(0, len(docs), chunk):
            part = docs[i : i + chunk]
            outs = annotate([d.text for d in part])
            for d, o in zip(part, outs):
                total += score_document(d, o, ks)
            bar.update(len(part))
    total.seconds = time.perf_counter() - start
    return total


def relik_annotator(relik: Any, ks: Sequence[int] = RECALL_KS, **settings: Any) -> Annotator:
    """`relik` over a list of texts, retrieving max(ks) passages per window (recall@k) and reading
    the first `top_k` (the bundle's, or `settings["top_k"]`)."""
    retrieve_k = max(ks) if relik.retriever is not None else None

    def annotate(texts: list[str]) -> list[RelikOutput]:
        return relik(texts, retrieve_k=retrieve_k, **settings)

    return annotate


def micro(rows: Iterable[ELCounts]) -> ELCounts:
    out = ELCounts()
    for r in rows:
        out += r
    return out


def missing_titles(docs: Iterable[ELDocument], titles: Iterable[str]) -> list[str]:
    """The gold (non-NME) titles of `docs` that are not among `titles` (they cannot be linked)."""
    have = set(titles)
    return sorted({t for d in docs for _, _, t in d.spans if t != NME and t not in have})


def prepare_relik(relik: Any, docs: Iterable[ELDocument], kb: dict[str, str] | None = None) -> list[str]:
    """Checks `relik` can link end to end, adds the `kb` passages its index lacks, and returns the
    gold titles of `docs` still missing from the index (their mentions cannot be linked)."""
    if relik.reader is None:
        raise DataError("the model has no reader: end-to-end EL evaluation needs a reader and a retriever")
    if not relik.reader.spec.links:
        raise DataError(
            f"the model is a {relik.task} reader (relations, no entity links): EL evaluation needs an EL or cIE model"
        )
    if relik.retriever is None or relik.retriever.index is None:
        raise DataError("the model has no retriever index: EL evaluation retrieves each window's candidates")
    index = relik.retriever.index
    have = {passage_title(p) for p in index.passages}
    if kb:
        new = {t: p for t, p in kb.items() if t not in have}
        if new:
            relik.retriever.add_passages(list(new), list(new.values()), progress=True)
            have |= set(new)
    return missing_titles(docs, have)
