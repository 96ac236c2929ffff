"""The passage index: embeddings + passages + metadata, saved to disk, searched by a backend.

Backends (chosen by name, `BACKENDS`):
- `exact`: scores by matmul and `lax.top_k` on device. The passage matrix is sharded over the
  devices of a 1-D mesh; each device takes the top-k of its shard, the candidates are gathered and
  the global top-k taken from them (exactly the single-device result).
- `approx`: `lax.approx_max_k`, the TPU-native approximate top-k; on CPU and GPU XLA computes it
  exactly (same results as `exact`, no speed-up).
- `int8`: `exact` on int8 copies of the passages (per-row scales; queries quantized the same way),
  scored by int8 dots: a quarter of the memory, near-exact top-k.
- `scann`: ScaNN on the host CPU (tree + asymmetric hashing + exact re-ordering), for millions of
  passages.

An index remembers which encoder built it (a fingerprint of the passage encoder's weights):
searching with vectors from another encoder is refused with the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.data.jsonl import read_jsonl

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def params_fingerprint(params: Any) -> str:
    """A short hash of a param tree's values (identifies the encoder that embedded the passages)."""
    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0], key=lambda x: jax.tree_util.keystr(x[0])):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return h.hexdigest()[:16]


# ---- backends ----------------------------------------------------------------------------------


def _row_spec(a: Any) -> PartitionSpec:
    """Rows split over the index's devices (the passage matrix, or per-passage scales)."""
    return PartitionSpec("shard", *[None] * (a.ndim - 1))


class ExactSearch:
    """Matmul + top-k on device, the passages sharded over `devices` (all local devices by default).

    Passages are scored in fixed-size blocks whose size depends only on the index size, never on
    the device count: every real block is the same matmul on 1 or N devices, so the scores (and
    the top-k) are bitwise identical however the index is sharded. Each block keeps its top-k; the
    candidates of all blocks and devices are merged into the global top-k.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        *,
        devices: Sequence[Any] | None = None,
        query_batch: int = 64,
        block: int | None = None,
    ):
        devices = list(devices) if devices is not None else jax.local_devices()
        self.mesh = Mesh(np.asarray(devices), ("shard",))
        self.n = embeddings.shape[0]
        self.query_batch = query_batch
        self.block = block or int(np.clip(2 ** int(np.ceil(np.log2(max(self.n, 1) / 16))), 1024, 65536))
        per_device = -(-self.n // (self.block * len(devices)))  # blocks per device
        padded = per_device * self.block * len(devices)
        emb = np.zeros((padded, embeddings.shape[1]), np.float32)
        emb[: self.n] = embeddings
        self.embeddings = jax.tree.map(
            lambda a: jax.device_put(a, NamedSharding(self.mesh, _row_spec(a))), self._stored(emb)
        )
        self._search = functools.lru_cache(maxsize=8)(self._make_search)

    def _stored(self, emb: np.ndarray) -> Any:
        """What the devices hold of the (padded) passage matrix; Int8Search overrides this."""
        return emb

    def _queries(self, q: jax.Array) -> Any:
        """The queries as `_block_scores` reads them (prepared once per search, not per block)."""
        return q

    def _block_scores(self, q: Any, blk: Any) -> jax.Array:
        """`[Q, block]` scores of the (prepared) queries against one block of the stored passages."""
        return jnp.einsum("qh,nh->qn", q, blk, preferred_element_type=jnp.float32)

    def _local_top_k(self, scores, k):
        return jax.lax.top_k(scores, k)  # ApproxSearch overrides this

    def _make_search(self, k: int):
        n, shard, block = self.n, jax.tree.leaves(self.embeddings)[0].shape[0] // self.mesh.size, self.block
        if k > block:
            raise ConfigError(f"k={k} exceeds the search block of {block} passages; pass block>={k}")

        def local(q, emb):
            offset = jax.lax.axis_index("shard") * shard
            blocks = jax.tree.map(lambda a: a.reshape(shard // block, block, *a.shape[1:]), emb)
            prepared = self._queries(q)

            def one(args):
                i, blk = args
                scores = self._block_scores(prepared, blk)
                ids = offset + i * block + jnp.arange(block)
                scores = jnp.where(ids[None, :] < n, scores, -jnp.inf)  # padding rows never win
                top, idx = self._local_top_k(scores, k)
                return top, idx + offset + i * block

            top, idx = jax.lax.map(one, (jnp.arange(shard // block), blocks))  # [blocks, Q, k]
            top = top.transpose(1, 0, 2).reshape(q.shape[0], -1)
            idx = idx.transpose(1, 0, 2).reshape(q.shape[0], -1)
            top = jax.lax.all_gather(top, "shard", axis=1, tiled=True)
            idx = jax.lax.all_gather(idx, "shard", axis=1, tiled=True)
            best, pos = jax.lax.top_k(top, k)
            return best, jnp.take_along_axis(idx, pos, axis=1)

        mapped = jax.shard_map(
            local,
            mesh=self.mesh,
            in_specs=(
                PartitionSpec(),
                jax.tree.map(_row_spec, self.embeddings),
            ),
            out_specs=PartitionSpec(),
            check_vma=False,
        )
        return jax.jit(mapped)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.n)
        fn = self._search(k)
        scores, ids = [], []
        qb = self.query_batch
        for s in range(0, len(queries), qb):
            chunk = np.zeros((qb, queries.shape[1]), np.float32)
            part = queries[s : s + qb]
            chunk[: len(part)] = part  # a fixed query batch: one compilation
            sc, ix = fn(jnp.asarray(chunk), self.embeddings)
            scores.append(np.asarray(sc)[: len(part)])
            ids.append(np.asarray(ix)[: len(part)])
        return np.concatenate(scores), np.concatenate(ids)


class ApproxSearch(ExactSearch):
    """`lax.approx_max_k` per shard: approximate on TPU, exact on CPU/GPU (XLA's fallback)."""

    def __init__(self, embeddings: np.ndarray, *, recall_target: float = 0.95, **kwargs):
        self.recall_target = recall_target
        super().__init__(embeddings, **kwargs)

    def _local_top_k(self, scores, k):
        return jax.lax.approx_max_k(scores, k, recall_target=self.recall_target)


def quantize_rows(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Symmetric int8 per row: `(values [N, H] int8, scales [N] f32)`, `x ≈ values * scales[:, None]`."""
    scale = jnp.max(jnp.abs(x), axis=-1) / 127.0
    scale = jnp.where(scale > 0, scale, 1.0)
    return jnp.clip(jnp.round(x / scale[:, None]), -127, 127).astype(jnp.int8), scale.astype(jnp.float32)


class Int8Search(ExactSearch):
    """`exact` on int8 copies: passages and queries quantized per row (symmetric, absmax), scored by
    int8 x int8 -> int32 dots (YNNPACK's int8 kernels on XLA:CPU) and rescaled; a quarter of the
    memory of the fp32 matrix. Approximate: the top-k can differ from `exact` near ties
    (`benchmarks/retrieval.py` measures recall@100 against it)."""

    def _stored(self, emb: np.ndarray) -> Any:
        values, scales = jax.jit(quantize_rows)(jnp.asarray(emb))
        return np.asarray(values), np.asarray(scales)

    def _queries(self, q: jax.Array) -> Any:
        return quantize_rows(q)

    def _block_scores(self, q: Any, blk: Any) -> jax.Array:
        (qv, qs), (values, scales) = q, blk
        dots = jax.lax.dot_general(qv, values, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)
        return dots.astype(jnp.float32) * qs[:, None] * scales[None, :]


class ScannSearch:
    """ScaNN (host CPU): tree partitioning + asymmetric hashing + exact re-ordering of the best."""

    def __init__(
        self,
        embeddings: np.ndarray,
        *,
        num_leaves: int | None = None,
        leaves_to_search: int | None = None,
        reorder: int = 300,
        training_sample_size: int = 250_000,
        threads: int = 0,
    ):
        import scann  # heavy to import: only the scann backend needs it

        n = embeddings.shape[0]
        self.n = n
        builder = scann.scann_ops_pybind.builder(np.ascontiguousarray(embeddings, np.float32), 10, "dot_product")
        if n >= 20_000:  # the partitioned configuration ScaNN recommends for large datasets
            leaves = num_leaves or int(np.sqrt(n))
            builder = builder.tree(
                num_leaves=leaves,
                num_leaves_to_search=leaves_to_search or min(leaves, max(48, leaves // 10)),
                training_sample_size=min(training_sample_size, n),
            )
            builder = builder.score_ah(2, anisotropic_quantization_threshold=0.2).reorder(reorder)
        else:  # small: brute force is exact and fast
            builder = builder.score_brute_force()
        self.searcher = builder.build()
        if threads:
            self.searcher.set_num_threads(threads)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.n)
        ids, scores = self.searcher.search_batched_parallel(
            np.ascontiguousarray(queries, np.float32), final_num_neighbors=k
        )
        return np.asarray(scores, np.float32), np.asarray(ids, np.int64)


BACKENDS = {"exact": ExactSearch, "approx": ApproxSearch, "int8": Int8Search, "scann": ScannSearch}


def make_backend(name: str, embeddings: np.ndarray, **options) -> Any:
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown index backend {name!r}; choose one of {sorted(BACKENDS)}") from None
    return cls(embeddings, **options)


# ---- the index ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Index:
    """Passages, their ids and embeddings `[N, H]`, and which encoder built them."""

    ids: list[str]
    passages: list[str]
    embeddings: np.ndarray
    encoder: dict[str, Any]  # {"fingerprint": ..., "description": ...}
    backend: str = "exact"
    backend_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        validate_passages(self.ids, self.passages)
        if len(self.ids) != self.embeddings.shape[0]:
            raise DataError(f"{len(self.ids)} passages but {self.embeddings.shape[0]} embeddings")
        self._searcher = None
        self._row = {pid: i for i, pid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def searcher(self):
        if self._searcher is None:
            self._searcher = make_backend(self.backend, self.embeddings, **self.backend_options)
        return self._searcher

    def use(self, backend: str, **options) -> Index:
        """Switches the search backend (the searcher is rebuilt on the next search)."""
        if backend not in BACKENDS:
            raise ConfigError(f"unknown index backend {backend!r}; choose one of {sorted(BACKENDS)}")
        self.backend, self.backend_options, self._searcher = backend, options, None
        return self

    def check_encoder(self, fingerprint: str) -> None:
        if fingerprint != self.encoder.get("fingerprint"):
            raise ConfigError(
                f"this index was built with another encoder ({self.encoder.get('description', '?')}, "
                f"fingerprint {self.encoder.get('fingerprint')}); the query encoder's fingerprint is {fingerprint}: "
                "rebuild the index with this encoder"
            )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` `(scores, rows)` `[Q, k]` for query vectors `[Q, H]`, best first."""
        if not len(self.ids):
            raise DataError("the index is empty")
        queries = np.asarray(queries, np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise DataError(f"queries must be [Q, {self.dim}], got {list(queries.shape)}")
        return self.searcher().search(queries, k)

    def add(self, ids: Sequence[str], passages: Sequence[str], embeddings: np.ndarray) -> None:
        """Adds passages (new entities) without re-embedding the others."""
        ids = [str(i) for i in ids]
        validate_passages(ids, passages)
        clash = [i for i in ids if i in self._row]
        if clash:
            raise DataError(f"{len(clash)} passage id(s) already in the index, e.g. {clash[:3]}")
        if embeddings.shape != (len(ids), self.dim):
            raise DataError(f"embeddings must be [{len(ids)}, {self.dim}], got {list(embeddings.shape)}")
        start = len(self.ids)
        self.ids.extend(ids)
        self.passages.extend(passages)
        self.embeddings = np.concatenate([self.embeddings, np.asarray(embeddings, np.float32)])
        self._row.update({pid: start + i for i, pid in enumerate(ids)})
        self._searcher = None

    # ---- disk ----

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "embeddings.npy", self.embeddings.astype(np.float32))
        with (folder / "passages.jsonl").open("w", encoding="utf-8") as f:
            for pid, text in zip(self.ids, self.passages):
                f.write(json.dumps({"id": pid, "text": text}, ensure_ascii=False) + "\n")
        meta = {"format": FORMAT_VERSION, "count": len(self), "dim": self.dim, "encoder": self.encoder,
                "backend": self.backend, "backend_options": self.backend_options}  # fmt: skip
        (folder / "index.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Index:
        folder = Path(folder)
        if not (folder / "index.json").is_file():
            raise DataError(f"{folder} is not a relik_jax index (no index.json)")
        meta = json.loads((folder / "index.json").read_text())
        records = read_jsonl(folder / "passages.jsonl")
        emb = np.load(folder / "embeddings.npy")
        return cls([str(r["id"]) for r in records], [r["text"] for r in records], emb, meta["encoder"],
                   meta.get("backend", "exact"), meta.get("backend_options", {}))  # fmt: skip


def validate_passages(ids: Sequence[str], passages: Sequence[str]) -> None:
    if len(ids) != len(passages):
        raise DataError(f"{len(ids)} ids for {len(passages)} passages")
    seen: set[str] = set()
    dup = [i for i in ids if i in seen or seen.add(i)]
    if dup:
        raise DataError(f"duplicate passage id(s): {sorted(set(dup))[:5]}")
    empty = [i for i, p in zip(ids, passages) if not isinstance(p, str) or not p.strip()]
    if empty:
        raise DataError(f"empty passage text for id(s) {empty[:5]}")
