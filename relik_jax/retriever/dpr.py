"""Retriever training: DPR-style data, static batches, the NCE train step, hard-negative mining.

DPR-style jsonl: `{"question": str, "positive_ctxs": [{"text": ...}], "negative_ctxs": [...],
"hard_negative_ctxs": [...]}` (passages are identified by their text, as in relik).
A batch holds `Q` questions and the union `P` of their passages (positives, negatives, hard
negatives, deduplicated); every question is scored against every passage of the global batch
(in-batch negatives), `targets [Q, P]` marks its positives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from relik_jax.core.errors import DataError
from relik_jax.core.types import NME
from relik_jax.data.formats import DPRSample, ELDocument, REDocument
from relik_jax.data.windows import given_words, make_windows, spacy_words
from relik_jax.retriever.model import BiEncoder, multi_label_nce_loss


def el_to_dpr(
    docs: Iterable[ELDocument], passage_of: Callable[[str], str | None], window_size: int = 32, window_stride: int = 16
) -> list[DPRSample]:
    """ReLiK EL documents → one sample per window: question = window text, positives = the
    passages of the gold entities inside the window (`passage_of(title)`; NIL and unknown skipped)."""
    out = []
    for d in docs:
        for w in make_windows(d.text, spacy_words(d.text), window_size, window_stride):
            end = w.word_end(len(w.words) - 1)
            pos = [passage_of(t) for s, e, t in d.spans if w.offset <= s and e <= end and t != NME]
            pos = list(dict.fromkeys(p for p in pos if p))
            if pos:
                out.append(DPRSample(w.text, pos))
    return out


def re_to_dpr(
    docs: Iterable[REDocument], relation_passages: dict[str, str], window_size: int = 32, window_stride: int = 16
) -> list[DPRSample]:
    """ReLiK RE documents → one sample per window: positives = the passages of its relations."""
    out = []
    for d in docs:
        text, words = given_words(list(d.words))
        for w in make_windows(text, words, window_size, window_stride):
            lo, hi = w.first_word, w.first_word + len(w.words)
            rels = [r for s, r, o in d.triplets if lo <= min(s[0], o[0]) and max(s[1], o[1]) <= hi]
            pos = list(dict.fromkeys(relation_passages[r] for r in rels if r in relation_passages))
            if pos:
                out.append(DPRSample(w.text, pos))
    return out


def make_batch(
    samples: Sequence[DPRSample],
    tokenize: Callable[[Sequence[str], int, int], dict[str, np.ndarray]],
    *,
    questions: int,
    passages: int,
    question_max_length: int,
    passage_max_length: int,
    max_hard_negatives: int = 4,
) -> dict[str, np.ndarray]:
    """A static batch: `questions` rows, `passages` passage rows (padded; extra passages dropped
    from the negatives, never from the positives)."""
    if len(samples) > questions:
        raise DataError(f"{len(samples)} samples for {questions} question rows")
    texts: dict[str, int] = {}

    def add(t):
        if t not in texts and len(texts) < passages:
            texts[t] = len(texts)

    for s in samples:
        for t in s.positives:
            if t not in texts:
                if len(texts) >= passages:
                    raise DataError(
                        f"the positives of the batch exceed its {passages} passage rows; raise passages_per_batch"
                    )
                texts[t] = len(texts)
    for s in samples:
        for t in s.hard_negatives[:max_hard_negatives] + s.negatives:
            add(t)
    q = tokenize([s.question for s in samples], question_max_length, questions)
    p = tokenize(list(texts), passage_max_length, passages)
    q_ids, q_mask = q["input_ids"], q["attention_mask"]
    p_ids, p_mask = p["input_ids"], p["attention_mask"]
    targets = np.zeros((questions, passages), bool)
    for i, s in enumerate(samples):
        targets[i, [texts[t] for t in s.positives]] = True
    return {
        "q_ids": q_ids, "q_mask": q_mask, "q_valid": np.arange(questions) < len(samples),
        "p_ids": p_ids, "p_mask": p_mask, "p_valid": np.arange(passages) < len(texts), "targets": targets,
    }  # fmt: skip


def nce_loss(model: BiEncoder, params: Any, batch: dict[str, jax.Array], rng: jax.Array | None = None) -> jax.Array:
    """Multi-label NCE of the batch's questions against every passage of the batch."""
    deterministic = rng is None
    rngs = None if deterministic else {"dropout": rng}
    q = model.apply(
        {"params": params}, batch["q_ids"], batch["q_mask"], deterministic, method=BiEncoder.embed_questions, rngs=rngs
    )
    p = model.apply(
        {"params": params}, batch["p_ids"], batch["p_mask"], deterministic, method=BiEncoder.embed_passages, rngs=rngs
    )
    scores = jnp.einsum("qh,ph->qp", q, p, preferred_element_type=jnp.float32)
    return multi_label_nce_loss(scores, batch["targets"], batch["p_valid"], batch["q_valid"])


def mine_hard_negatives(retriever, samples: Sequence[DPRSample], *, k: int = 20, keep: int = 8) -> int:
    """Replaces each sample's hard negatives by its top-`k` passages of the current index that are
    not positives (at most `keep`); returns how many were set."""
    hits = retriever.retrieve([s.question for s in samples], k=k)
    n = 0
    for s, h in zip(samples, hits):
        pos = set(s.positives)
        s.hard_negatives = [x.text for x in h if x.text not in pos][:keep]
        n += len(s.hard_negatives)
    return n


def evaluate_recall(retriever, samples: Sequence[DPRSample], k: int = 100) -> float:
    """Fraction of gold passages found in the top-k of their question."""
    if not samples:
        return float("nan")
    hits = retriever.retrieve([s.question for s in samples], k=k)
    found = total = 0
    for s, h in zip(samples, hits):
        got = {x.text for x in h}
        found += sum(p in got for p in s.positives)
        total += len(s.positives)
    return found / max(total, 1)
