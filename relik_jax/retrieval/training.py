"""Retriever training: DPR-style data, static batches, the NCE train step, hard-negative mining.

DPR-style jsonl: `{"question": str, "positive_ctxs": [{"text": ...}], "negative_ctxs": [...],
"hard_negative_ctxs": [...]}` (passages are identified by their text, as in relik).
A batch holds `Q` questions and the union `P` of their passages (positives, negatives, hard
negatives, deduplicated); every question is scored against every passage of the global batch
(in-batch negatives), `targets [Q, P]` marks its positives.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from relik_jax.data.formats import ELDocument, REDocument
from relik_jax.data.jsonl import iter_jsonl
from relik_jax.data.windows import given_words, make_windows, spacy_words
from relik_jax.errors import DataError
from relik_jax.models.retriever import BiEncoder, multi_label_nce_loss
from relik_jax.training.optim import schedule
from relik_jax.training.state import TrainState


@dataclasses.dataclass
class DPRSample:
    question: str
    positives: list[str]
    negatives: list[str] = dataclasses.field(default_factory=list)
    hard_negatives: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "positive_ctxs": [{"text": t} for t in self.positives],
            "negative_ctxs": [{"text": t} for t in self.negatives],
            "hard_negative_ctxs": [{"text": t} for t in self.hard_negatives],
        }


def read_dpr(path: str | Path) -> list[DPRSample]:
    return [dpr_sample(r, f"{path}:{n}") for n, r in iter_jsonl(path)]


def dpr_sample(r: dict[str, Any], where: str, default_id: Any = None) -> DPRSample:
    """One DPR record (`question`, `positive_ctxs`, optional `negative_ctxs` / `hard_negative_ctxs`)."""
    del default_id
    if not isinstance(r.get("question"), str) or not r.get("positive_ctxs"):
        raise DataError(f"{where}: a DPR record needs a 'question' string and a non-empty 'positive_ctxs'")
    lists = [_ctx_texts(r, key, where) for key in ("positive_ctxs", "negative_ctxs", "hard_negative_ctxs")]
    return DPRSample(r["question"], *lists)


def _ctx_texts(record: dict, key: str, where: str) -> list[str]:
    ctxs = record.get(key, []) or []
    if any(not isinstance(c, dict) or not isinstance(c.get("text"), str) for c in ctxs):
        raise DataError(f"{where}: every entry of {key} needs a 'text' string")
    return list(dict.fromkeys(c["text"] for c in ctxs))


def el_to_dpr(
    docs: Iterable[ELDocument], passage_of: Callable[[str], str | None], window_size: int = 32, window_stride: int = 16
) -> list[DPRSample]:
    """ReLiK EL documents → one sample per window: question = window text, positives = the
    passages of the gold entities inside the window (`passage_of(title)`; NIL and unknown skipped)."""
    out = []
    for d in docs:
        for w in make_windows(d.text, spacy_words(d.text), window_size, window_stride):
            end = w.word_end(len(w.words) - 1)
            pos = [passage_of(t) for s, e, t in d.spans if w.offset <= s and e <= end and t != "--NME--"]
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


def make_train_step(
    model: BiEncoder,
    tx: optax.GradientTransformation,
    *,
    dropout: bool = True,
    state_sharding=None,
    batch_sharding=None,
):
    """A jitted `step(state, batch, rng) -> (state, loss)`; state donated, shardings as given."""

    def step(state: TrainState, batch, rng):
        key = jax.random.fold_in(rng, state.step) if dropout else None
        loss, grads = jax.value_and_grad(functools.partial(nce_loss, model, batch=batch, rng=key))(state.params)
        return state.apply_gradients(grads, tx), loss

    kw = {}
    if state_sharding is not None:
        kw = dict(in_shardings=(state_sharding, batch_sharding, None), out_shardings=(state_sharding, None))
    return jax.jit(step, donate_argnums=0, **kw)


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


def batches(samples: Sequence[DPRSample], questions: int, *, seed: int, epoch: int) -> list[list[DPRSample]]:
    """Shuffled question groups of one epoch (the last one may be short)."""
    order = list(range(len(samples)))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return [[samples[i] for i in order[s : s + questions]] for s in range(0, len(order), questions)]


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


def fit(
    retriever,
    samples: Sequence[DPRSample],
    *,
    epochs: int = 3,
    learning_rate: float = 2e-5,
    questions: int = 32,
    passages: int = 160,
    max_hard_negatives: int = 4,
    mine_from: tuple[Sequence[str], Sequence[str]] | None = None,
    seed: int = 0,
    progress: bool = True,
    dropout: bool = True,
) -> list[float]:
    """Fine-tunes `retriever` in place (AdamW, linear warm-up 10% and decay); with `mine_from =
    (ids, passages)`, an index over those passages is rebuilt before each epoch after the first
    and hard negatives are mined from it. Returns the mean loss of each epoch."""
    steps = epochs * -(-len(samples) // questions)
    lr = schedule(learning_rate, steps, max(1, steps // 10))
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr, weight_decay=0.01))
    step = make_train_step(retriever.model, tx, dropout=dropout)
    state = TrainState.create(retriever.params, tx)
    rng = jax.random.key(seed, impl="philox4x32")
    history = []
    for epoch in range(epochs):
        if mine_from is not None and epoch > 0:
            retriever.params = state.params
            retriever._fingerprint = None
            retriever.build_index(*mine_from, progress=False)
            mine_hard_negatives(retriever, samples)
        groups = batches(samples, questions, seed=seed, epoch=epoch)
        if progress:
            from tqdm.auto import tqdm

            groups = tqdm(groups, desc=f"retriever epoch {epoch + 1}/{epochs}", unit="step")
        losses = []
        for group in groups:
            batch = make_batch(group, retriever.tokenize, questions=questions, passages=passages,
                               question_max_length=retriever.question_max_length,
                               passage_max_length=retriever.passage_max_length, max_hard_negatives=max_hard_negatives)  # fmt: skip
            state, loss = step(state, batch, rng)
            losses.append(loss)
        history.append(float(np.mean(jax.device_get(losses))))
    retriever.params = state.params
    retriever._fingerprint = None
    retriever.index = None  # the old index was built by the old weights
    return history
