"""Retriever training in the generic loop: DPR samples → static NCE batches; dev recall@k.

Samples come from a DPR dataset (`blink`) or from EL / RE documents (one sample per window,
positives = the passages of its gold entities / relations; `relik_jax.retrieval.training`).
Dev recall@k is measured against an index of every passage seen in the data (+ the KB titles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from relik_jax.data import tfds_builders
from relik_jax.errors import ConfigError, DataError
from relik_jax.models.retriever import BiEncoder
from relik_jax.retrieval import training as rt
from relik_jax.retrieval.passages import entity_passage, kb_titles, relation_passages
from relik_jax.retrieval.retriever import DenseRetriever


class RetrieverTask:
    main_metric = "recall_at_k"
    replicated_keys = ("p_ids", "p_mask", "p_valid")  # the batch's passages: every question scores all of them

    def __init__(self, config: Any):
        self.config = config
        d = config.data
        self.retriever = DenseRetriever.from_encoder(
            config.model.encoder,
            question_max_length=config.retriever.question_max_length,
            passage_max_length=config.retriever.passage_max_length,
        )
        self.model: BiEncoder = self.retriever.model
        self.init_params = self.retriever.params
        self.num_layers = self.model.config.question.num_layers
        self.kb_passages: list[str] = []
        if d.kb:
            self.kb_passages = [entity_passage(t) for t in kb_titles(d.kb)]
        self.samples = {s: self._samples(s) for s in ("train", d.eval_split)}
        if not self.samples["train"]:
            raise DataError(f"the train split of {d.dataset!r} gives no retriever samples (no gold passages)")
        self.batch_size = config.train.batch_size

    def _samples(self, split: str) -> list[rt.DPRSample]:
        d = self.config.data
        kind = tfds_builders.dataset_spec(d.dataset).kind
        docs = tfds_builders.load_config_split(d, split)
        if kind == "dpr":
            return docs
        if kind == "el":
            return rt.el_to_dpr(docs, entity_passage, d.window_size, d.window_stride)
        if not d.relations:
            raise ConfigError("retriever training on RE data needs data.relations (a relations tsv)")
        return rt.re_to_dpr(docs, relation_passages(d.relations), d.window_size, d.window_stride)

    def steps_per_epoch(self) -> int:
        return -(-len(self.samples["train"]) // self.batch_size)

    def epoch_order(self, epoch: int) -> list[list[int]]:
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.samples["train"]))
        return [order[s : s + self.batch_size].tolist() for s in range(0, len(order), self.batch_size)]

    def batch(self, indices) -> dict[str, np.ndarray]:
        r = self.config.retriever
        b = rt.make_batch(
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
        return rt.nce_loss(self.model, params, batch, rng), {}

    def evaluate(self, params, split: str | None = None) -> dict[str, float]:
        split = split or self.config.data.eval_split
        samples = self.samples.get(split)
        if samples is None:
            samples = self.samples[split] = self._samples(split)
        if self.config.eval.max_docs:
            samples = samples[: self.config.eval.max_docs]
        passages = list(
            dict.fromkeys([p for s in self.samples["train"] + samples for p in s.positives] + self.kb_passages)
        )
        self.retriever.params = params
        self.retriever._fingerprint = None
        self.retriever.build_index([str(i) for i in range(len(passages))], passages, progress=False)
        return {"recall_at_k": rt.evaluate_recall(self.retriever, samples, k=self.config.retriever.eval_k)}

    def export(self, params, folder: str | Path) -> Path:
        self.retriever.params = jax.device_get(params)
        self.retriever._fingerprint = None
        return self.retriever.save(folder)
