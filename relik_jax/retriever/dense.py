"""Dense retrieval: texts → vectors (bucketed, jitted) → top-k passages of an `Index`.

A retriever folder holds `retriever.json`, `question_encoder/` (a Hugging Face BERT folder whose
weights include the pooling `layer_norm_layer`, as relik's GoldenRetriever saves it), optionally
`passage_encoder/`, and optionally `index/`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from relik_jax.core.assets import resolve_model_path
from relik_jax.core.errors import CheckpointError, ConfigError, DataError
from relik_jax.core.shapes import bucket, capped_buckets, power_of_two_buckets
from relik_jax.encoders import EncoderConfig, quantize
from relik_jax.encoders.hf import load_encoder, load_tokenizer, read_state_dict, save_encoder
from relik_jax.encoders.text_encoder import pad_ids, truncate_ids
from relik_jax.retriever.index import Index, params_fingerprint, validate_passages
from relik_jax.retriever.model import BiEncoder, RetrieverConfig
from relik_jax.retriever.span_queries import merge, span_arrays, token_ranges

log = logging.getLogger(__name__)
# texts are embedded sorted by length, so a batch's lengths are close: fine buckets waste little
# padding (queries are ~35 tokens; a 64 bucket would double their cost); each compiles once
LENGTH_BUCKETS = (16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 448, 512)


@dataclasses.dataclass(frozen=True)
class Hit:
    id: str
    text: str
    score: float


def load_tower(folder: Path, dtype: Any = jnp.float32) -> tuple[dict, EncoderConfig, bool]:
    """Encoder + pooling LayerNorm params of one tower (`layer_norm_layer` ones/zeros when absent)."""
    module, enc_params, config = load_encoder(folder, dtype=dtype)
    state = read_state_dict(folder)
    h = config.hidden_size
    ln = {
        "scale": np.asarray(state.get("layer_norm_layer.weight", np.ones(h, np.float32)), np.float32),
        "bias": np.asarray(state.get("layer_norm_layer.bias", np.zeros(h, np.float32)), np.float32),
    }
    return {"encoder": enc_params, "layer_norm_layer": ln}, config, module.with_pooler


def save_tower(folder: Path, config: EncoderConfig, tower: dict, tokenizer: Any) -> None:
    save_encoder(folder, config, tower["encoder"], tokenizer_from=tokenizer)
    state = load_file(str(folder / "model.safetensors"))
    state["layer_norm_layer.weight"] = np.asarray(tower["layer_norm_layer"]["scale"], np.float32)
    state["layer_norm_layer.bias"] = np.asarray(tower["layer_norm_layer"]["bias"], np.float32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


class DenseRetriever:
    """A bi-encoder with its tokenizer (and optionally an index)."""

    def __init__(
        self,
        model: BiEncoder,
        params: Any,
        tokenizer: Any,
        *,
        index: Index | None = None,
        question_max_length: int = 512,
        passage_max_length: int = 512,
        batch_size: int = 32,
        length_buckets: Sequence[int] = LENGTH_BUCKETS,
        description: str = "",
    ):
        self.model, self.params, self.tokenizer = model, params, tokenizer
        self.question_max_length, self.passage_max_length = question_max_length, passage_max_length
        self.batch_size = batch_size
        self.length_buckets = tuple(length_buckets)
        self.description = description
        self._embed = {
            "question": jax.jit(lambda p, i, m: model.apply({"params": p}, i, m, method=BiEncoder.embed_questions)),
            "passage": jax.jit(lambda p, i, m: model.apply({"params": p}, i, m, method=BiEncoder.embed_passages)),
        }
        self._embed_spans = jax.jit(
            lambda p, i, m, s, e: model.apply({"params": p}, i, m, s, e, method=BiEncoder.embed_queries)
        )
        self._question: tuple[Any, Any, Any] | None = None  # int8 query encoder: (params, embed, embed_spans)
        self._truncated = 0
        self._fingerprint: str | None = None
        self.index: Index | None = None
        if index is not None:
            self.attach(index)

    # ---- construction ----

    @classmethod
    def from_encoder(cls, name_or_path: str | Path = "minilm", *, dtype: Any = jnp.float32, **kwargs) -> DenseRetriever:
        """A new retriever over a pretrained encoder (question = passage encoder, LayerNorm ones/zeros)."""
        folder = resolve_model_path(name_or_path)
        tower, config, pooler = load_tower(folder, dtype)
        tokenizer = load_tokenizer(folder)
        model = BiEncoder(RetrieverConfig(config, question_has_pooler=pooler), dtype=dtype)
        kwargs.setdefault("description", str(name_or_path))
        return cls(model, jax.device_put({"question_encoder": tower}), tokenizer, **kwargs)

    @classmethod
    def load(cls, folder: str | Path, *, dtype: Any = jnp.float32, with_index: bool = True, **kwargs) -> DenseRetriever:
        """A retriever folder (`question_encoder/`, optional `passage_encoder/` and `index/`); the towers of an
        official relik folder load too (its `document_index/`: `relik_jax.official.retriever.load_retriever`)."""
        folder = Path(folder)
        meta = json.loads((folder / "retriever.json").read_text()) if (folder / "retriever.json").is_file() else {}
        qdir = folder / "question_encoder"
        if not (qdir / "config.json").is_file():
            raise CheckpointError(f"{folder} is not a retriever folder (no question_encoder/config.json)")
        index = None
        if with_index and (folder / "index" / "index.json").is_file():
            index = Index.load(folder / "index")
        # the batch size too: a query's vector can differ in its last bits between batch shapes (the
        # kernels XLA:CPU picks per shape), enough to reorder near-tied passages
        for key in ("question_max_length", "passage_max_length", "batch_size"):
            if key in meta:
                kwargs.setdefault(key, meta[key])
        kwargs.setdefault("description", meta.get("description", str(folder)))
        passage = folder / "passage_encoder"
        return cls.from_towers(
            qdir, passage if (passage / "config.json").is_file() else None, index, dtype=dtype, **kwargs
        )

    @classmethod
    def from_towers(
        cls,
        question: Path,
        passage: Path | None = None,
        index: Index | None = None,
        *,
        dtype: Any = jnp.float32,
        **kwargs,
    ) -> DenseRetriever:
        """A retriever from encoder folders (an official ReLiK folder names them in its config.yaml)."""
        q, qcfg, qpool = load_tower(Path(question), dtype)
        params = {"question_encoder": q}
        pcfg, ppool = None, False
        if passage is not None:
            params["passage_encoder"], pcfg, ppool = load_tower(Path(passage), dtype)
        model = BiEncoder(RetrieverConfig(qcfg, pcfg, qpool, ppool), dtype=dtype)
        kwargs.setdefault("description", str(question))
        retriever = cls(model, jax.device_put(params), load_tokenizer(Path(question)), **kwargs)
        if index is not None:
            retriever.attach(index)
        return retriever

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        c = self.model.config
        save_tower(folder / "question_encoder", c.question, self.params["question_encoder"], self.tokenizer)
        if not c.shared:
            save_tower(folder / "passage_encoder", c.passage, self.params["passage_encoder"], self.tokenizer)
        meta = {"shared": c.shared, "question_max_length": self.question_max_length,
                "passage_max_length": self.passage_max_length, "batch_size": self.batch_size,
                "description": self.description}  # fmt: skip
        (folder / "retriever.json").write_text(json.dumps(meta, indent=2) + "\n")
        if self.index is not None:
            self.index.save(folder / "index")
        return folder

    # ---- embedding ----

    @property
    def passage_params(self) -> Any:
        return self.params["question_encoder" if self.model.config.shared else "passage_encoder"]

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = params_fingerprint(self.passage_params)
        return self._fingerprint

    def tokenize(self, texts: Sequence[str], max_length: int, rows: int | None = None) -> dict[str, np.ndarray]:
        """Ids and masks in a (rows, length) bucket; `rows` fixes the row count (default: a power
        of two up to `batch_size`)."""
        ids, cut = truncate_ids(self.tokenizer, texts, max_length)
        self._truncated += cut
        length = bucket(max((len(i) for i in ids), default=1), capped_buckets(self.length_buckets, max_length))
        return pad_ids(ids, rows or bucket(len(ids), power_of_two_buckets(self.batch_size)), length)

    def _embed_texts(self, texts: Sequence[str], kind: str, progress: bool) -> np.ndarray:
        texts = list(texts)
        dim = self.model.config.dim
        if not texts:
            return np.zeros((0, dim), np.float32)
        max_length = self.question_max_length if kind == "question" else self.passage_max_length
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), dim), np.float32)
        starts = range(0, len(texts), self.batch_size)
        if progress:
            starts = tqdm(starts, desc=f"embedding {kind}s", unit="batch")
        self._truncated = 0
        for s in starts:
            idx = order[s : s + self.batch_size]
            batch = self.tokenize([texts[i] for i in idx], max_length)
            vec = self._embedder(kind)(self._params_for(kind), batch["input_ids"], batch["attention_mask"])
            out[idx] = np.asarray(vec, np.float32)[: len(idx)]  # sliced on the host: no program per size
        if self._truncated:
            log.warning("%d %s(s) longer than %d tokens were truncated", self._truncated, kind, max_length)
        return out

    def warmup(self, k: int | None = None) -> int:
        """Compiles the query encoder for every (rows, length) bucket up to `question_max_length`,
        and the index search for `k` (when there is an index); returns how many programs ran."""
        n = 0
        lengths = capped_buckets(self.length_buckets, self.question_max_length)
        for rows in power_of_two_buckets(self.batch_size):
            for length in lengths:
                ids = jax.ShapeDtypeStruct((rows, length), np.int32)
                self._embedder("question").lower(self._params_for("question"), ids, ids).compile()  # runs nothing
                n += 1
        if k is not None and self.index is not None:
            self.index.search(np.zeros((1, self.index.dim), np.float32), k)
            n += 1
        return n

    def embed_questions(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return self._embed_texts(texts, "question", progress)

    def embed_passages(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return self._embed_texts(texts, "passage", progress)

    # ---- index ----

    def build_index(
        self, ids: Sequence[str], passages: Sequence[str], *, backend: str = "exact", progress: bool = True, **options
    ) -> Index:
        ids = [str(i) for i in ids]
        validate_passages(ids, passages)
        if not passages:
            raise ConfigError("cannot build an index from an empty passage list")
        emb = self.embed_passages(passages, progress=progress)
        index = Index(
            ids,
            list(passages),
            emb,
            {"fingerprint": self.fingerprint, "description": self.description},
            backend,
            options,
        )
        self.index = index
        return index

    def attach(self, index: Index) -> None:
        """Uses `index` for retrieval; an index without a fingerprint (an official one) is taken as
        built by this retriever's passage encoder."""
        if not index.encoder.get("fingerprint"):
            index.encoder["fingerprint"] = self.fingerprint
        index.check_encoder(self.fingerprint)
        self.index = index

    def with_params(self, params: Any) -> DenseRetriever:
        """This retriever with other weights (the same compiled programs) and no index (and no int8
        query encoder: `int8_queries` again quantizes the new weights)."""
        new = copy.copy(self)
        new.params, new.index, new._fingerprint, new._question = params, None, None, None
        return new

    def int8_queries(self, calibration: Sequence[str] | None = None) -> DenseRetriever:
        """This retriever with its query encoder's dense layers as int8 dots (`quantize.int8`,
        SmoothQuant calibrated on `calibration` as queries, by default `quantize.calibration_texts`).
        Passages (index building, `add_passages`) keep this retriever's weights and dtype, so an
        index built before scores the same passage vectors."""
        texts = list(quantize.calibration_texts() if calibration is None else calibration)
        if not texts:
            raise DataError("int8 calibration needs at least one text")
        batches = []
        for s in range(0, len(texts), self.batch_size):
            b = self.tokenize(texts[s : s + self.batch_size], self.question_max_length)
            batches.append((b["input_ids"], b["attention_mask"]))
        ids = jax.ShapeDtypeStruct((1, 8), np.int32)
        methods = ("embed_questions", "embed_queries")
        qmodel, qparams = quantize.int8(
            self.model, self.params, ids, ids, method="embed_questions", methods=methods, calibration=batches
        )
        new = copy.copy(self)
        new._question = (
            jax.device_put(qparams),
            jax.jit(lambda p, i, m: qmodel.apply({"params": p}, i, m, method="embed_questions")),
            jax.jit(lambda p, i, m, s, e: qmodel.apply({"params": p}, i, m, s, e, method="embed_queries")),
        )
        return new

    @property
    def query_dtype(self) -> str:
        """The query encoder's compute: "int8" after `int8_queries`, else the model's dtype."""
        return "int8" if self._question else jnp.dtype(self.model.dtype).name

    def _params_for(self, kind: str) -> Any:
        return self._question[0] if kind == "question" and self._question else self.params

    def _embedder(self, kind: str) -> Any:
        return self._question[1] if kind == "question" and self._question else self._embed[kind]

    def add_passages(self, ids: Sequence[str], passages: Sequence[str], *, progress: bool = False) -> None:
        if self.index is None:
            raise ConfigError("no index to add to: build_index() first")
        self.index.add(ids, passages, self.embed_passages(passages, progress=progress))

    def retrieve(self, texts: str | Sequence[str], k: int = 100) -> list[Hit] | list[list[Hit]]:
        if self.index is None:
            raise ConfigError("no index: build_index() or load a folder with one")
        single = isinstance(texts, str)
        queries = self.embed_questions([texts] if single else list(texts))
        scores, rows = self.index.search(queries, k)
        out = [
            [Hit(self.index.ids[r], self.index.passages[r], float(s)) for s, r in zip(sc, rw)]
            for sc, rw in zip(scores, rows)
        ]
        return out[0] if single else out

    def embed_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], *, max_spans: int = 16
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Window queries `[N, H]` and, per text, its spans' query vectors `[n_i, H]` (BEER2's span
        queries, `relik_jax.retriever.span_queries`); spans are character offsets in the text, at most
        `max_spans` per text; a span cut off by `question_max_length` gets no vector (dropped)."""
        dim = self.model.config.dim
        windows = np.zeros((len(texts), dim), np.float32)
        out: list[np.ndarray] = [np.zeros((0, dim), np.float32) for _ in texts]
        for s in range(0, len(texts), self.batch_size):
            part = list(texts[s : s + self.batch_size])
            enc = self.tokenizer(
                part, truncation=True, max_length=self.question_max_length, return_offsets_mapping=True
            )
            ranges = [token_ranges(o, sp) for o, sp in zip(enc["offset_mapping"], spans[s : s + len(part)])]
            length = bucket(
                max(len(i) for i in enc["input_ids"]), capped_buckets(self.length_buckets, self.question_max_length)
            )
            rows = bucket(len(part), power_of_two_buckets(self.batch_size))
            n_spans = bucket(
                max(1, max(sum(x is not None for x in r) for r in ranges)), power_of_two_buckets(max_spans)
            )
            ids = pad_ids(enc["input_ids"], rows, length)
            arr = span_arrays(ranges, rows, n_spans)
            embed_spans = self._question[2] if self._question else self._embed_spans
            w, v = embed_spans(
                self._params_for("question"),
                ids["input_ids"],
                ids["attention_mask"],
                arr["span_start"],
                arr["span_end"],
            )
            windows[s : s + len(part)] = np.asarray(w, np.float32)[: len(part)]
            v = np.asarray(v, np.float32)
            for j in range(len(part)):
                out[s + j] = v[j][arr["span_valid"][j]]
        return windows, out

    def retrieve_with_spans(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[tuple[int, int]]],
        *,
        k: int,
        span_k: int,
        rule: str = "interleave",
        max_spans: int = 16,
    ) -> list[list[Hit]]:
        """Each text's top-k merged from its window query and its spans' queries (top `span_k` each)."""
        if self.index is None:
            raise ConfigError("no index: build_index() or load a folder with one")
        windows, per_text = self.embed_spans(texts, spans, max_spans=max_spans)
        k = min(k, len(self.index))
        w_scores, w_rows = self.index.search(windows, k)
        flat = [v for vs in per_text for v in vs]
        span_hits: list[list[Hit]] = []
        if flat:
            s_scores, s_rows = self.index.search(np.stack(flat), min(span_k, len(self.index)))
            span_hits = [self._hits(sc, rw) for sc, rw in zip(s_scores, s_rows)]
        out, n = [], 0
        for i in range(len(texts)):
            mine = span_hits[n : n + len(per_text[i])]
            n += len(per_text[i])
            out.append(merge(self._hits(w_scores[i], w_rows[i]), mine, k, rule))
        return out

    def _hits(self, scores, rows) -> list[Hit]:
        return [Hit(self.index.ids[r], self.index.passages[r], float(s)) for s, r in zip(scores, rows)]
