"""Retriever training in the generic loop: DPR samples → static NCE batches; dev recall@k.

Samples come from a DPR dataset (`blink`) or from EL / RE documents (one sample per window,
positives = the passages of its gold entities / relations; `relik_jax.retriever.dpr`), or are
given (`samples=`). Recall@k is measured against an index of the task's passages: every passage
seen in the data plus the KB titles, or the given `passages=`. With `retriever.mine_hard_negatives`,
each epoch after the first starts by indexing those passages with the current weights and taking
each question's best-scored non-positives as its hard negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.data import tfds_builders
from relik_jax.data.formats import DPRSample
from relik_jax.retriever import dpr
from relik_jax.retriever.dense import DenseRetriever
from relik_jax.retriever.model import BiEncoder
from relik_jax.retriever.passages import entity_passage, kb_titles, relation_passages
from relik_jax.training.runtime import with_runtime
from relik_jax.training.task import Finish


class RetrieverTask:
    """A bi-encoder retriever trained by the generic loop (the `relik_jax.training.task.Task` contract)."""

    main_metric = "recall_at_k"
    replicated_keys = ("p_ids", "p_mask", "p_valid")  # the batch's passages: every question scores all of them
    frozen_keys: tuple[str, ...] = ()

    def __init__(
        self,
        config: Any,
        *,
        samples: dict[str, list[DPRSample]] | None = None,
        passages: Sequence[str] | None = None,
    ):
        self.config = config
        r = config.retriever
        kw = {"question_max_length": r.question_max_length, "passage_max_length": r.passage_max_length}
        if config.init_from:
            self.retriever = DenseRetriever.load(config.init_from, with_index=False, **kw)
        else:
            self.retriever = DenseRetriever.from_encoder(config.model.encoder, **kw)
        self.model: BiEncoder = with_runtime(self.retriever.model, config)  # model.attention / model.remat
        self.init_params = self.retriever.params
        self.num_layers = self.model.config.question.num_layers
        self.samples = dict(samples) if samples is not None else {}
        for split in ("train", config.data.eval_split):
            if split not in self.samples:
                self.samples[split] = self._samples(split)
        if not self.samples["train"]:
            raise DataError(f"the train split of {config.data.dataset!r} gives no retriever samples (no gold passages)")
        self.batch_size = config.train.batch_size
        self._passages = list(passages) if passages is not None else None
        self._kb = [entity_passage(t) for t in kb_titles(config.data.kb)] if config.data.kb else []

    def _samples(self, split: str) -> list[DPRSample]:
        d = self.config.data
        kind = tfds_builders.dataset_spec(d.dataset).kind
        docs = tfds_builders.load_config_split(d, split)
        if kind == "dpr":
            return docs
        if kind == "el":
            return dpr.el_to_dpr(docs, entity_passage, d.window_size, d.window_stride)
        if not d.relations:
            raise ConfigError("retriever training on RE data needs data.relations (a relations tsv)")
        return dpr.re_to_dpr(docs, relation_passages(d.relations), d.window_size, d.window_stride)

    def passages(self, samples: Sequence[DPRSample] = ()) -> list[str]:
        """The passages retrieved from: the given ones, else every passage of the data and the KB."""
        if self._passages is not None:
            return self._passages
        return list(dict.fromkeys([p for s in [*self.samples["train"], *samples] for p in s.positives] + self._kb))

    def _indexed(self, params: Any, passages: Sequence[str]) -> DenseRetriever:
        retriever = self.retriever.with_params(params)
        retriever.build_index([str(i) for i in range(len(passages))], passages, progress=False)
        return retriever

    # ---- the Task contract -----------------------------------------------------------------

    def steps_per_epoch(self) -> int:
        return -(-len(self.samples["train"]) // self.batch_size)

    def begin_epoch(self, epoch: int, params: Any) -> None:
        """From the second epoch on (`retriever.mine_hard_negatives`): hard negatives from the current weights."""
        r = self.config.retriever
        if epoch == 0 or not r.mine_hard_negatives:
            return
        retriever = self._indexed(params, self.passages(self.samples[self.config.data.eval_split]))
        dpr.mine_hard_negatives(retriever, self.samples["train"], k=r.mine_k, keep=r.mine_keep)

    def epoch_order(self, epoch: int) -> list[list[int]]:
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.samples["train"]))
        return [order[s : s + self.batch_size].tolist() for s in range(0, len(order), self.batch_size)]

    def batch(self, indices) -> dict[str, np.ndarray]:
        r = self.config.retriever
        b = dpr.make_batch(
            [self.samples["train"][i] for i in indices],
            self.retriever.tokenize,
            questions=self.batch_size,
            passages=r.passages_per_batch,
            question_max_length=r.question_max_length,
            passage_max_length=r.passage_max_length,
            max_hard_negatives=r.max_hard_negatives,
        )
        b["row_valid"] = b["q_valid"]
        return b

    def abstract_params(self):
        ids = np.zeros((1, 8), np.int32)
        return jax.eval_shape(lambda k: self.model.init(k, ids, ids, ids, ids)["params"], jax.random.key(0))

    def loss(self, params, batch, rng):
        return dpr.nce_loss(self.model, params, batch, rng), {}

    def evaluate(self, params, split: str | None = None) -> dict[str, float]:
        split = split or self.config.data.eval_split
        samples = self.samples.get(split)
        if samples is None:
            samples = self.samples[split] = self._samples(split)
        if self.config.eval.max_docs:
            samples = samples[: self.config.eval.max_docs]
        retriever = self._indexed(params, self.passages(samples))
        return {"recall_at_k": dpr.evaluate_recall(retriever, samples, k=self.config.retriever.eval_k)}

    def finish(self, params, workdir: Path, best: dict[str, float]) -> Finish:
        """The export (a retriever folder, `export`) and the test split's recall when it exists."""
        config = self.config
        out = Finish({config.data.eval_split: best})
        if config.export and jax.process_index() == 0:
            out.exports["retriever"] = self.export(params, workdir / "export")
        test = config.data.test_split
        if test and (test in self.samples or tfds_builders.has_split(config.data, test)):
            out.rows[test] = self.evaluate(params, split=test)
        return out

    def export(self, params, folder: str | Path) -> Path:
        """A retriever folder with an index of the task's passages (embedded by `params`)."""
        params = jax.device_get(params)
        return self._indexed(params, self.passages(self.samples[self.config.data.eval_split])).save(folder)
