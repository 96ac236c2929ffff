"""Reader training: documents → windows → rows + gold labels → static batches; dev/test metrics.

Candidates: RE reads every relation of the dataset. EL and cIE read, per `reader.candidates`,
- `gold_plus_distractors`: each document's gold titles plus distractors sampled from the KB up to
  `data.num_candidates` (seeded per document, the same in every epoch and on every host), or
- `retrieved`: each window's top `data.num_candidates` KB titles from `reader.retriever` (the
  official recipe: a gold title the retriever missed is *not* added; its mention is labelled
  `--NME--`, as relik 1.0.7's reader data does with `use_nme`), computed once per run or per epoch.

With a retriever (`reader.retriever` is not "none"), EL is scored end to end on dev and test —
windows → retriever → reader, GERBIL InKB strong-match F1 (`inkb_f1`, which selects the best
checkpoint), MD F1, recall@k — beside the reader-only `link_*_given_gold` (gold + distractors).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.core.shapes import bucket, capped_buckets
from relik_jax.core.types import NME
from relik_jax.data import tfds_builders
from relik_jax.data.formats import ELDocument
from relik_jax.data.windows import given_words, spacy_words
from relik_jax.evaluation import el as el_eval
from relik_jax.inference.relik import Relik
from relik_jax.inference.settings import Settings
from relik_jax.reader import programs
from relik_jax.reader.checkpoint import load_reader, save_reader
from relik_jax.reader.factory import new_reader
from relik_jax.reader.inputs import TRAIN_CAP_BUCKETS, TRAIN_COLUMN_BUCKETS, TRAIN_LENGTH_BUCKETS
from relik_jax.reader.labels import collate_train, el_row_labels, re_row_labels
from relik_jax.reader.model import dummy_batch
from relik_jax.reader.pipeline import ReaderPipeline
from relik_jax.reader.spec import get_spec
from relik_jax.retriever.dense import DenseRetriever
from relik_jax.retriever.passages import entity_passage, kb_titles, relation_passages
from relik_jax.training.runtime import with_runtime
from relik_jax.training.task import Finish

log = logging.getLogger(__name__)


def prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _word_chars(words, span: tuple[int, int]) -> tuple[int, int]:
    return words.starts[span[0]], words.end(span[1] - 1)


class ReaderTask:
    """A Reader trained by the generic loop (the `relik_jax.training.task.Task` contract)."""

    replicated_keys = ()
    frozen_keys: tuple[str, ...] = ()

    def __init__(self, config: Any, *, model=None, params=None, tokenizer=None):
        self.config = config
        self.spec = get_spec(config.reader.task)
        data = config.data
        # "train" holds every split of data.train_split, in order; dev is read only when evaluated
        self.docs = {"train": [d for s in tfds_builders.split_names(data.train_split)
                               for d in tfds_builders.load_config_split(data, s)]}  # fmt: skip
        if data.eval_split:
            self.docs[data.eval_split] = tfds_builders.load_config_split(data, data.eval_split)
        self.relations = self._relations() if self.spec.relations else []
        self.kb = self._kb() if self.spec.links else []
        if model is None:
            model, params, tokenizer = new_reader(
                config.model.encoder,
                self.spec.name,
                entity_symbols=config.reader.entity_symbols,
                relation_symbols=max(config.reader.relation_symbols, len(self.relations)),
                use_nme=config.reader.use_nme,
                linears_hidden_size=config.reader.linears_hidden_size,
                use_last_k_layers=config.reader.use_last_k_layers,
                rng=jax.random.key(config.seed),
                dtype=jnp.bfloat16 if config.model.compute_dtype == "bfloat16" else jnp.float32,
            )
        if config.init_from:
            params = self._init_from(config.init_from, params)
        model = with_runtime(model, config)  # model.attention / model.remat
        self.model, self.init_params, self.tokenizer = model, params, tokenizer
        self.num_layers = model.config.encoder.num_layers
        self.pipeline = ReaderPipeline(
            model,
            params,
            tokenizer,
            window_size=data.window_size,
            window_stride=data.window_stride,
            max_length=data.max_length,
            batch_size=config.eval.batch_size,
            max_starts=config.reader.max_starts,
            max_entities=config.reader.max_entities,
        )
        self.settings = Settings(
            top_k=max(data.num_candidates, 1), window_size=data.window_size, window_stride=data.window_stride
        )
        self.retriever = self._retriever() if self.spec.links else None
        self.retrieved = config.reader.candidates == "retrieved"
        self.rows, self.labels = self._training_rows(self.docs["train"], params)
        if not self.rows:
            raise DataError(f"the train split of {data.dataset!r} gives no reader rows")
        self.batch_size = config.train.batch_size
        self.length_buckets = capped_buckets(TRAIN_LENGTH_BUCKETS, data.max_length)
        self.starts_buckets = capped_buckets(TRAIN_CAP_BUCKETS, config.reader.max_starts)
        self.entity_buckets = capped_buckets(TRAIN_CAP_BUCKETS, config.reader.max_entities)
        self.counts: dict[str, el_eval.ELCounts] = {}  # EL end to end: the last counts of each split
        self.end_to_end = self.retriever is not None and not self.spec.relations  # EL scored end to end
        self.main_metric = "inkb_f1" if self.end_to_end else self.spec.main_metric

    @staticmethod
    def _init_from(source: str, params: Any) -> Any:
        """Params to start from: a reader folder (ours or the official relik format)."""
        _, loaded, _ = load_reader(source)
        if jax.tree.structure(loaded) != jax.tree.structure(params):
            raise ConfigError(f"init_from={source}: its parameters do not match this config's model")
        return loaded

    # ---- data ------------------------------------------------------------------------------

    def _relations(self) -> list[str]:
        path = self.config.data.relations or tfds_builders.sample_file(self.config.data.dataset, "relations.tsv")
        if path:
            names = list(relation_passages(path))
        else:
            names = sorted({r for d in self.docs["train"] for _, r, _ in d.triplets})
        if not names:
            raise DataError("no relation names: the train split has no triplets and data.relations is not set")
        return names

    def _retriever(self) -> DenseRetriever | None:
        """`reader.retriever` with an index over the KB titles (None: "none", or no KB)."""
        source = self.config.reader.retriever
        if source == "none" or not self.kb:
            return None
        if source == "train":
            raise ConfigError(
                "reader.retriever = 'train' is trained by relik_jax.training.run.train (python -m relik_jax.train) "
                "before the reader; pass the trained retriever folder to build a ReaderTask directly"
            )
        retriever = (
            DenseRetriever.load(source, with_index=False)
            if source
            else DenseRetriever.from_encoder(self.config.model.encoder)
        )
        retriever.build_index(self.kb, [entity_passage(t) for t in self.kb], progress=False)
        return retriever

    def reader_params(self, params: Any) -> Any:
        """The reader's params among the trained ones (all of them here)."""
        return params

    def retriever_for(self, params: Any, *, fresh_index: bool = False) -> DenseRetriever | None:
        """The retriever that goes with `params` (here the task's own: it does not train)."""
        del params, fresh_index
        return self.retriever

    def relik(self, params: Any) -> Relik:
        """The full pipeline with `params` (their retriever, their reader weights)."""
        reader = self.pipeline.with_params(self.reader_params(params))
        return Relik(reader, self.retriever_for(params), relations=self.relations, settings=self.settings,
                     candidates=self._fixed_candidates())  # fmt: skip

    def _fixed_candidates(self) -> list[str]:
        """Without a retriever, a typed reader's KB (its entity types: every window reads them all)."""
        return list(self.kb) if self.spec.typed and self.retriever is None else []

    def _kb(self) -> list[str]:
        path = self.config.data.kb or tfds_builders.sample_file(self.config.data.dataset, "kb.tsv")
        titles = kb_titles(path) if path else []
        gold = {t for docs in self.docs.values() for d in docs for t in self._gold_titles(d)}
        return sorted(set(titles) | gold)

    @staticmethod
    def _gold_titles(doc) -> list[str]:
        return list(dict.fromkeys(s[2] for s in doc.spans if s[2] != NME))

    def candidates(self, doc, salt: int) -> list[str]:
        """Gold titles + seeded distractors from the KB, shuffled (EL / cIE)."""
        gold = self._gold_titles(doc)
        n = max(self.config.data.num_candidates, len(gold))
        rng = random.Random(f"{self.config.seed}/{salt}/{doc.doc_id}")
        pool = [t for t in rng.sample(self.kb, min(len(self.kb), n + len(gold))) if t not in set(gold)]
        cands = gold + pool[: n - len(gold)]
        rng.shuffle(cands)
        return cands

    def _doc_inputs(self, doc):
        if isinstance(doc, ELDocument):
            return doc.text, spacy_words(doc.text)
        return given_words(doc.words)

    def retrieved_windows(self, docs: Sequence[Any], params: Any, chunk: int = 64) -> list[Any]:
        """Each document prepared with its windows' retrieved candidates (`Relik.prepare`)."""
        relik, out = self.relik(params), []
        bar = tqdm(total=len(docs), desc="retrieving candidates", unit="doc", disable=jax.process_index() != 0, leave=False)  # fmt: skip
        for s in range(0, len(docs), chunk):
            part = docs[s : s + chunk]
            if isinstance(part[0], ELDocument):
                out += relik.prepare([d.text for d in part])
            else:
                out += relik.prepare(words=[list(d.words) for d in part])
            bar.update(len(part))
        bar.close()
        return out

    def shuffled(self, candidates: list[str], key: str) -> list[str]:
        """`candidates` shuffled for a `reader.shuffle_candidates` share of the windows (seeded by `key`)."""
        rng = random.Random(f"{self.config.seed}/shuffle/{key}")
        if rng.random() >= self.config.reader.shuffle_candidates:
            return candidates
        out = list(candidates)
        rng.shuffle(out)
        return out

    def _training_rows(self, docs: Sequence[Any], params: Any):
        rows, labels = [], []
        if self.retrieved:
            prepared = self.retrieved_windows(docs, params)
            for n, p in enumerate(prepared):
                p.candidates = [self.shuffled(c, f"{n}/{i}") for i, c in enumerate(p.candidates)]
        else:
            prepared = []
            for i, doc in enumerate(docs):
                text, words = self._doc_inputs(doc)
                cands = self.relations if self.spec.candidates == "relations" else self.candidates(doc, salt=0)
                rels = self.relations if self.spec.extra_relations else ()
                prepared.append(self.pipeline.prepare(i, text, words, cands, rels))
        it = tqdm(docs, desc="building training rows", unit="doc", disable=jax.process_index() != 0, leave=False)
        for doc, prep in zip(it, prepared):
            for row in self.pipeline.rows(prep):
                if not self.spec.relations:
                    lab = el_row_labels(row, doc.spans)
                else:
                    spans = [(s, e, t) for s, e, t in doc.spans]
                    lab = re_row_labels(row, spans, doc.triplets)
                rows.append(row)
                labels.append(lab)
        return rows, labels

    def begin_epoch(self, epoch: int, params: Any) -> None:
        """`retrieved` candidates with `reader.refresh_candidates = "epoch"`: retrieved again (with a
        retriever that does not train here they do not change; BEER2 trains it). Otherwise the rows
        are the same every epoch."""
        if epoch > 0 and self.retrieved and self.config.reader.refresh_candidates == "epoch":
            self.rows, self.labels = self._training_rows(self.docs["train"], params)

    def steps_per_epoch(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def epoch_order(self, epoch: int) -> list[list[int]]:
        """Row indices of each batch of `epoch`: shuffled, length-sorted within chunks of 16 batches
        (less padding), batches shuffled. Deterministic in (seed, epoch): resuming and every host
        see the same batches."""
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(len(self.rows))
        chunk = self.batch_size * 16
        groups = []
        for s in range(0, len(order), chunk):
            idx = sorted(order[s : s + chunk].tolist(), key=lambda i: self.rows[i].length)
            groups += [idx[j : j + self.batch_size] for j in range(0, len(idx), self.batch_size)]
        perm = rng.permutation(len(groups))
        return [groups[i] for i in perm]

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """The global batch of the rows `indices` (padded to the batch size)."""
        labels = [self.labels[i] for i in indices]
        # the caps follow the batch (bucketed): the relation head's cost grows with entities²
        n_starts = min(max((len(x.starts) for x in labels), default=1), self.starts_buckets[-1])
        n_ents = min(max((len(x.entities) for x in labels), default=1), self.entity_buckets[-1])
        starts, ents = bucket(n_starts, self.starts_buckets), bucket(n_ents, self.entity_buckets)
        b, _ = collate_train(
            [self.rows[i] for i in indices],
            labels,
            self.spec,
            batch_size=self.batch_size,
            max_starts=starts,
            max_entities=ents,
            length_buckets=self.length_buckets,
            column_buckets=TRAIN_COLUMN_BUCKETS,
        )
        b["row_valid"] = np.arange(self.batch_size) < len(indices)
        return b

    # ---- model -----------------------------------------------------------------------------

    def abstract_params(self):
        """Boxed abstract params (logical axis names), for the shardings."""
        batch = dummy_batch(self.model.config)
        return jax.eval_shape(lambda k: self.model.init(k, batch)["params"], jax.random.key(0))

    def loss(self, params, batch, rng):
        losses = programs.reader_losses(
            self.model, params, batch, deterministic=rng is None, rng=rng,
            span_loss_weight=self.config.reader.span_loss_weight,
        )  # fmt: skip
        return losses["loss"], {k: v for k, v in losses.items() if k != "loss"}

    # ---- evaluation ------------------------------------------------------------------------

    def evaluate(
        self, params, split: str | None = None, docs: Sequence[Any] | None = None, threshold: float | None = None
    ) -> dict[str, float]:
        """Metrics of `params` on a split (`threshold`: the relation threshold, default the model's)."""
        split = split or self.config.data.eval_split
        if docs is None:
            docs = self._split_docs(split)
        elif self.config.eval.max_docs:
            docs = docs[: self.config.eval.max_docs]
        pipeline = self.pipeline.with_params(self.reader_params(params))
        if not self.spec.relations:
            metrics = {}
            if not self.end_to_end or split == self.config.data.eval_split:  # the reader-only bound: dev only
                outs = pipeline([d.text for d in docs], candidates=[self.candidates(d, salt=1) for d in docs])
                metrics = self._el_metrics(docs, outs)
            if self.end_to_end:
                desc = "" if split == self.config.data.eval_split else f"{split} (end to end)"
                self.counts[split] = counts = self.end_to_end_counts(params, docs, desc)
                metrics.update(counts.ratios())
            return metrics
        kw: dict[str, Any] = {"words": [list(d.words) for d in docs]}
        if self.spec.extra_relations and self.retrieved:  # cIE: the retriever's candidates, as in training
            return self._re_metrics(docs, self.relik(params)(**kw, relation_threshold=threshold))
        if self.spec.extra_relations:
            kw.update(candidates=[self.candidates(d, salt=1) for d in docs], relations=self.relations)
        else:
            kw.update(candidates=self.relations)
        return self._re_metrics(docs, pipeline(**kw, relation_threshold=threshold))

    def end_to_end_counts(self, params, docs: Sequence[ELDocument], desc: str = "") -> el_eval.ELCounts:
        """EL end to end (windows → retriever → reader): GERBIL InKB / MD / recall@k counts (a
        progress bar named `desc`, when given, on process 0)."""
        annotate = el_eval.relik_annotator(self.relik(params))
        progress = bool(desc) and jax.process_index() == 0
        return el_eval.evaluate_documents(
            annotate, docs, progress=progress, chunk=self.config.eval.batch_size, desc=desc
        )

    def _el_metrics(self, docs, outs) -> dict[str, float]:
        """Reader-only linking with each document's gold titles among its candidates (an upper bound:
        the retriever does not decide what the reader sees)."""
        tp = n_pred = n_gold = 0
        for d, o in zip(docs, outs):
            gold = {(s, e, t) for s, e, t in d.spans if t != NME}
            pred = {(s.start, s.end, s.label) for s in o.spans if s.label != NME}
            tp, n_pred, n_gold = tp + len(gold & pred), n_pred + len(pred), n_gold + len(gold)
        return {f"link_{k}_given_gold": v for k, v in prf(tp, n_pred, n_gold).items()}

    def _re_metrics(self, docs, outs) -> dict[str, float]:
        counts = {"triplet": [0, 0, 0], "span": [0, 0, 0], "link": [0, 0, 0]}

        def add(name, gold, pred):
            c = counts[name]
            c[0] += len(gold & pred)
            c[1] += len(pred)
            c[2] += len(gold)

        for d, o in zip(docs, outs):
            _, words = given_words(d.words)
            gold_t = {(*_word_chars(words, s), r, *_word_chars(words, ob)) for s, r, ob in d.triplets}
            pred_t = {(t.subject.start, t.subject.end, t.relation, t.object.start, t.object.end) for t in o.triplets}
            add("triplet", gold_t, pred_t)
            add("span", {_word_chars(words, (s, e)) for s, e, _ in d.spans}, {(s.start, s.end) for s in o.spans})
            if self.spec.links:
                gold_l = {(*_word_chars(words, (s, e)), t) for s, e, t in d.spans if t != NME}
                add("link", gold_l, {(s.start, s.end, s.label) for s in o.spans if s.label != NME})
        out = {}
        for name, (tp, n_pred, n_gold) in counts.items():
            if name == "link" and not self.spec.links:
                continue
            out.update({f"{name}_{k}": v for k, v in prf(tp, n_pred, n_gold).items()})
        return out

    # ---- the end of training ---------------------------------------------------------------

    def finish(self, params, workdir: Path, best: dict[str, float]) -> Finish:
        """Threshold tuning on dev (RE / cIE, `eval.tune_threshold`), the exports (reader folder and
        inference bundle, `export`), and the test split's metrics when it exists."""
        config, is_main = self.config, jax.process_index() == 0
        split = config.data.eval_split
        out = Finish({split: best} if split else {})
        threshold = config.eval.threshold or None  # fixed (e.g. chosen on dev before a train + dev run)
        if config.eval.tune_threshold and self.spec.relations:
            threshold, sweep = self.tune_threshold(params, config.eval.threshold_grid)
            out.rows[f"{split} (threshold {threshold:g})"] = self.evaluate(params, threshold=threshold)
            if is_main:
                print("relation threshold on dev: " + ", ".join(f"{t:g}: {100 * f:.2f}" for t, f in sweep))
        if config.export and is_main:
            out.exports["reader"] = self.export(params, workdir / "export", threshold=threshold)
            out.exports["bundle"] = self.export_bundle(params, workdir / "bundle", threshold=threshold)
        tests = [
            t for t in tfds_builders.split_names(config.data.test_split) if tfds_builders.has_split(config.data, t)
        ]
        for test in tests:
            name = test + (f" (threshold {threshold:g})" if threshold is not None else "")
            out.rows[name] = self.evaluate(params, split=test, threshold=threshold)
        if self.end_to_end and len(tests) > 1:  # micro-averaged over the test sets (counts summed)
            out.rows["tests (micro)"] = el_eval.micro(self.counts[t] for t in tests).ratios()
        return out

    def _split_docs(self, split: str) -> list[Any]:
        docs = self.docs.get(split)
        if docs is None:
            docs = self.docs[split] = tfds_builders.load_config_split(self.config.data, split)
        return docs[: self.config.eval.max_docs] if self.config.eval.max_docs else docs

    def tune_threshold(self, params, grid: Sequence[float]) -> tuple[float, list[tuple[float, float]]]:
        """The relation threshold with the best dev main metric, and the sweep."""
        sweep = [(t, self.evaluate(params, threshold=t)[self.main_metric]) for t in grid]
        return max(sweep, key=lambda x: x[1])[0], sweep

    def export_bundle(self, params, folder: str | Path, threshold: float | None = None) -> Path:
        """An inference bundle (`Relik.from_pretrained`): the reader, the relation names and, for EL /
        cIE, the task's retriever with its index over the KB titles (`reader.retriever`)."""
        data = self.config.data
        params = jax.device_get(params)
        reader = ReaderPipeline(
            self.model, self.reader_params(params), self.tokenizer,
            window_size=data.window_size, window_stride=data.window_stride, max_length=data.max_length,
            max_starts=self.config.reader.max_starts, max_entities=self.config.reader.max_entities,
            relation_threshold=threshold,
        )  # fmt: skip
        retriever = self.retriever_for(params, fresh_index=True)
        relik = Relik(reader, retriever, relations=self.relations, settings=self.settings,
                      candidates=self._fixed_candidates() if retriever is None else ())  # fmt: skip
        return relik.save_pretrained(folder)

    def export(self, params, folder: str | Path, threshold: float | None = None) -> Path:
        """A reader folder (with the official encoder folder where relik 1.0.7 has the architecture)."""
        config = self.model.config if threshold is None else self.model.config.replace(threshold=threshold)
        return save_reader(
            folder, config, jax.device_get(self.reader_params(params)), self.tokenizer,
            with_encoder_folder=self.spec.official,
        )  # fmt: skip
