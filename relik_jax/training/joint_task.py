"""BEER2: the retriever and the reader trained together, in one jitted step (`kind = "joint"`).

What the paper fixes (seed summary §2.1–§3.5) and how it is built here:
- **One encoder for the retriever's queries and the reader**: the query tower *is* the reader's
  `transformer_model` (the same parameters, not a copy): `joint.share_encoder` (False: a separate
  query encoder initialised from the same weights, for the memory comparison).
- **Retriever → Reader**: the reader's candidates come from the *current* retriever: at every
  refresh (`joint.refresh_every` steps; 0: once per pass over the rows) each train window is
  retrieved again with the current weights and its rows are rebuilt from the merged top-k (a gold
  title the retriever missed is not added: its mention is `--NME--`, as in ReLiK's recipe).
- **Reader → Retriever**: span queries — a mention's own vector, the mean of its tokens in the
  window-query pass — retrieve beside the window query (`joint.span_queries`, `joint.span_k`,
  merged by `joint.merge`, `relik_jax.retriever.span_queries`), and are trained with NCE (a span
  query's positive is its gold entity). During training the spans are the *gold* spans (the
  issue's accepted approximation; the reader's own predictions are used at inference).
- **Losses**: reader (start + end + link) × `joint.reader_weight` + window-query NCE ×
  `joint.window_weight` + span-query NCE × `joint.span_weight`; negatives are the batch's other
  passages plus each window's retrieved non-gold passages (`retriever.max_hard_negatives`).
- **The passage (entity) tower is its own**: frozen (`joint.train_passages = False`, default: its
  index is built once) or trained and the KB re-indexed every `joint.reindex_every` refreshes;
  the index is the exact, device-sharded one (`relik_jax.retriever.index`).
Our choices (not in the paper): the pooling, the merge rule, K, the refresh schedule, the loss
weights — each a config key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.core.shapes import bucket, capped_buckets
from relik_jax.core.types import NME
from relik_jax.data.formats import ELDocument
from relik_jax.encoders.text_encoder import pad_ids
from relik_jax.inference.relik import Relik
from relik_jax.reader import programs
from relik_jax.reader.labels import el_row_labels
from relik_jax.reader.pipeline import Prepared
from relik_jax.retriever.dense import DenseRetriever
from relik_jax.retriever.model import BiEncoder, RetrieverConfig, multi_label_nce_loss
from relik_jax.retriever.passages import entity_passage, passage_title
from relik_jax.retriever.span_queries import span_arrays, token_ranges
from relik_jax.training.reader_task import ReaderTask
from relik_jax.training.runtime import runtime_encoder


def retriever_params(params: dict, *, frozen_passages: bool = False) -> dict:
    """The bi-encoder's params inside the joint params: the question tower's encoder is the
    reader's (shared) or the separate `question_encoder`; the passage tower is its own."""
    encoder = (params["question_encoder"] if "question_encoder" in params else params["reader"])["transformer_model"]
    passage = params["passage_encoder"]
    if frozen_passages:
        passage = jax.lax.stop_gradient(passage)
    return {
        "question_encoder": {"encoder": encoder, "layer_norm_layer": params["query_norm"]},
        "passage_encoder": {"encoder": passage["transformer_model"], "layer_norm_layer": passage["layer_norm_layer"]},
    }


class JointTask(ReaderTask):
    """BEER2 on EL data (the `relik_jax.training.task.Task` contract; see the module docstring)."""

    def __init__(self, config: Any):
        j = config.joint
        if j.merge not in ("interleave", "score"):
            raise ConfigError(f"joint.merge must be interleave | score, got {j.merge!r}")
        self.frozen_keys = () if j.train_passages else ("passage_encoder",)
        self._refreshes = 0
        source = config.reader.retriever
        if j.encoder_from_retriever and source not in ("", "train", "none"):
            with config.unlocked():  # the shared encoder starts as the retriever's question encoder
                config.model.encoder = str(Path(source) / "question_encoder")
        super().__init__(config)  # → _retriever() (the joint params, the index), _training_rows()
        self.init_params = self.joint_init
        # evaluation and the bundle run the span queries (the reader's own spans); `prepare` ignores them
        self.settings = self.settings.replace(span_queries=j.span_k if j.span_queries else 0, span_merge=j.merge)
        self._steps = j.refresh_every or -(-len(self.rows) // self.batch_size)

    # ---- the joint model ---------------------------------------------------------------------

    def _retriever(self) -> DenseRetriever:
        """The bi-encoder view of the joint model, with an index of the KB (and the joint params)."""
        if self.spec.relations:
            raise ConfigError("kind = 'joint' (BEER2) trains entity linking: reader.task must be el")
        if not self.kb:
            raise ConfigError("BEER2 needs a KB to retrieve from (data.kb)")
        r = self.config.retriever
        source = self.config.reader.retriever
        base = DenseRetriever.load(source, with_index=False) if source not in ("", "train", "none") else (
            DenseRetriever.from_encoder(self.config.model.encoder)
        )  # fmt: skip
        tower = base.params["question_encoder"]
        reader_cfg = self.model.config
        view = BiEncoder(RetrieverConfig(
            reader_cfg.encoder, runtime_encoder(base.model.config.question, self.config), reader_cfg.encoder_has_pooler,
            base.model.config.question_has_pooler,
        ))  # fmt: skip
        params = {
            "reader": self.init_params,
            "passage_encoder": {"transformer_model": tower["encoder"], "layer_norm_layer": tower["layer_norm_layer"]},
            "query_norm": tower["layer_norm_layer"],
        }
        if not self.config.joint.share_encoder:
            params["question_encoder"] = {
                "transformer_model": jax.tree.map(jnp.copy, self.init_params["transformer_model"])
            }
        self.joint_init = params
        self.view = DenseRetriever(
            view, retriever_params(params), base.tokenizer,
            question_max_length=r.question_max_length, passage_max_length=r.passage_max_length,
            description=f"BEER2 over {self.config.model.encoder}",
        )  # fmt: skip
        self.passages = [entity_passage(t) for t in self.kb]
        self.view.build_index(self.kb, self.passages, progress=False)
        return self.view

    def view_with(self, params: Any, *, fresh_index: bool = False) -> DenseRetriever:
        """The retriever of `params`, on the current index (or a new one of their passage tower)."""
        view = self.view.with_params(retriever_params(jax.device_get(params)))
        if fresh_index:
            view.build_index(self.kb, self.passages, progress=False)
            self.view.index = view.index
        else:
            view.index = self.view.index  # built by the passage tower of the last refresh
        return view

    def reader_params(self, params: Any) -> Any:
        return params["reader"]

    def retriever_for(self, params: Any, *, fresh_index: bool = False) -> DenseRetriever:
        """The joint model's retriever: on a fresh index when asked or when the passage tower trains."""
        return self.view_with(params, fresh_index=fresh_index or self.config.joint.train_passages)

    # ---- rows from the current retriever ---------------------------------------------------

    def _training_rows(self, docs: Sequence[Any], params: Any):
        """Rows of every train window from the current retriever (`params`: the joint params; the
        reader-only params ReaderTask passes at construction are replaced by the joint init)."""
        params = self.joint_init if "reader" not in params else params
        j, r = self.config.joint, self.config.retriever
        view = self.view_with(params)
        relik = Relik(self.pipeline.with_params(params["reader"]), view, settings=self.settings)
        rows, labels, self.queries = [], [], []
        for s in range(0, len(docs), 64):
            part = docs[s : s + 64]
            prepared = relik.prepare([d.text for d in part])
            windows = [(d, p, i, w) for d, p in zip(part, prepared) for i, w in enumerate(p.windows) if p.retrieved[i]]
            gold = [self._window_gold(d, w) for d, _, _, w in windows]
            if j.span_queries:  # gold spans as the reader's spans (training)
                merged = view.retrieve_with_spans(
                    [w.text for *_, w in windows], [[(a, b) for a, b, _ in g] for g in gold],
                    k=self.settings.top_k, span_k=j.span_k, rule=j.merge,
                )  # fmt: skip
                for (_, p, i, _), hits in zip(windows, merged):
                    p.retrieved[i] = hits
                    p.candidates[i] = [h.text for h in hits]
            for n, ((d, p, i, w), g) in enumerate(zip(windows, gold)):
                one = Prepared(p.text, p.words, [w], [self.shuffled(p.candidates[i], f"{self._refreshes}/{s + n}")], [])
                titles = {t for _, _, t in g if t != NME}
                hard = [h.text for h in p.retrieved[i] if passage_title(h.text) not in titles][: r.max_hard_negatives]
                for row in self.pipeline.rows(one):
                    rows.append(row)
                    labels.append(el_row_labels(row, d.spans))
                    self.queries.append((w.text, g, hard))
        self._refreshes += 1
        return rows, labels

    @staticmethod
    def _window_gold(doc: ELDocument, w) -> list[tuple[int, int, str]]:
        """The gold mentions inside a window, in window characters."""
        lo, hi = w.offset, w.offset + len(w.text)
        return [(s - lo, e - lo, t) for s, e, t in doc.spans if lo <= s and e <= hi]

    def begin_epoch(self, epoch: int, params: Any) -> None:
        """A refresh: the index again when the passage tower trains (every `reindex_every`
        refreshes), then every train window retrieved again with the current weights."""
        if epoch == 0:
            return
        if self.config.joint.train_passages and epoch % max(self.config.joint.reindex_every, 1) == 0:
            self.view_with(params, fresh_index=True)
        self.rows, self.labels = self._training_rows(self.docs["train"], params)

    def steps_per_epoch(self) -> int:
        return self._steps

    def epoch_order(self, epoch: int) -> list[list[int]]:
        """`steps_per_epoch` batches of the current rows (shuffled, cycled when a refresh period is
        longer than a pass over them)."""
        rng = np.random.default_rng([self.config.seed, epoch])
        need = self._steps * self.batch_size
        order = np.concatenate([rng.permutation(len(self.rows)) for _ in range(-(-need // len(self.rows)))])[:need]
        return [order[s : s + self.batch_size].tolist() for s in range(0, need, self.batch_size)]

    # ---- batches and the joint loss --------------------------------------------------------

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        b = super().batch(indices)
        j, r = self.config.joint, self.config.retriever
        n_rows, n_pass = self.batch_size, r.passages_per_batch
        texts: dict[str, int] = {}
        queries = [self.queries[i] for i in indices]
        for _, gold, _ in queries:
            for _, _, t in gold:
                if t != NME and (p := entity_passage(t)) not in texts:
                    if len(texts) >= n_pass:
                        raise DataError(f"the batch's gold entities exceed its {n_pass} passage rows; raise retriever.passages_per_batch")  # fmt: skip
                    texts[p] = len(texts)
        for _, _, hard in queries:
            for p in hard:
                if p not in texts and len(texts) < n_pass:
                    texts[p] = len(texts)
        tok = self.view.tokenizer
        enc = tok(
            [q for q, _, _ in queries], truncation=True, max_length=r.question_max_length, return_offsets_mapping=True
        )
        length = bucket(
            max(len(x) for x in enc["input_ids"]), capped_buckets(self.view.length_buckets, r.question_max_length)
        )
        q = pad_ids(enc["input_ids"], n_rows, length)
        spans = [[(a, c) for a, c, _ in g] for _, g, _ in queries]
        ranges = [token_ranges(o, sp) for o, sp in zip(enc["offset_mapping"], spans)]
        arr = span_arrays([[x for x, (_, _, t) in zip(rr, g) if t != NME] for rr, (_, g, _) in zip(ranges, queries)], n_rows, j.max_span_queries)  # fmt: skip
        targets = np.zeros((n_rows, n_pass), bool)
        span_targets = np.zeros((n_rows, j.max_span_queries, n_pass), bool)
        for i, (_, gold, _) in enumerate(queries):
            kept = [t for x, (_, _, t) in zip(ranges[i], gold) if t != NME and x is not None][: j.max_span_queries]
            for t in {t for _, _, t in gold if t != NME}:
                targets[i, texts[entity_passage(t)]] = True
            for k, t in enumerate(kept):
                span_targets[i, k, texts[entity_passage(t)]] = True
        p = self.view.tokenize(list(texts), r.passage_max_length, n_pass)
        b.update(
            q_ids=q["input_ids"], q_mask=q["attention_mask"], q_valid=b["row_valid"] & targets.any(-1),
            p_ids=p["input_ids"], p_mask=p["attention_mask"], p_valid=np.arange(n_pass) < len(texts),
            targets=targets, **arr, span_targets=span_targets,
        )  # fmt: skip
        return b

    replicated_keys = ("p_ids", "p_mask", "p_valid")

    def loss(self, params, batch, rng):
        j = self.config.joint
        det = rng is None
        r_reader, r_query, r_pass = jax.random.split(rng, 3) if rng is not None else (None, None, None)
        reader = programs.reader_losses(
            self.model, params["reader"], batch, deterministic=det, rng=r_reader,
            span_loss_weight=self.config.reader.span_loss_weight,
        )  # fmt: skip
        rp = retriever_params(params, frozen_passages=not j.train_passages)
        model = self.view.model
        q, sq = model.apply(
            {"params": rp}, batch["q_ids"], batch["q_mask"], batch["span_start"], batch["span_end"], det,
            method=BiEncoder.embed_queries, rngs=None if det else {"dropout": r_query},
        )  # fmt: skip
        p = model.apply(
            {"params": rp}, batch["p_ids"], batch["p_mask"], det, method=BiEncoder.embed_passages,
            rngs=None if det else {"dropout": r_pass},
        )  # fmt: skip
        scores = jnp.einsum("qh,ph->qp", q, p, preferred_element_type=jnp.float32)
        window_nce = multi_label_nce_loss(scores, batch["targets"], batch["p_valid"], batch["q_valid"])
        total = j.reader_weight * reader["loss"] + j.window_weight * window_nce
        aux = {k: v for k, v in reader.items() if k != "loss"} | {
            "reader_loss": reader["loss"],
            "window_nce": window_nce,
        }
        if j.span_queries:
            b, s, h = sq.shape
            span_scores = jnp.einsum("qh,ph->qp", sq.reshape(b * s, h), p, preferred_element_type=jnp.float32)
            span_nce = multi_label_nce_loss(
                span_scores, batch["span_targets"].reshape(b * s, -1), batch["p_valid"],
                (batch["span_valid"] & batch["row_valid"][:, None]).reshape(b * s),
            )  # fmt: skip
            total = total + j.span_weight * span_nce
            aux["span_nce"] = span_nce
        return total, aux

    def abstract_params(self):
        reader = super().abstract_params()
        ids = np.zeros((1, 8), np.int32)
        view = jax.eval_shape(lambda k: self.view.model.init(k, ids, ids, ids, ids)["params"], jax.random.key(0))
        out = {
            "reader": reader,
            "passage_encoder": {
                "transformer_model": view["passage_encoder"]["encoder"],
                "layer_norm_layer": view["passage_encoder"]["layer_norm_layer"],
            },
            "query_norm": view["question_encoder"]["layer_norm_layer"],
        }
        if not self.config.joint.share_encoder:
            out["question_encoder"] = {"transformer_model": view["question_encoder"]["encoder"]}
        return out


def parameter_count(tree: Any) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
