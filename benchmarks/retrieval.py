"""Retrieval benchmark: index build time, queries/second and recall@100 against exact search for
each backend (exact, approx, int8, scann), at 100k and 1M passages; `--recall`: retriever recall@100 of
gold entities on the EL test sets, MiniLM off the shelf vs fine-tuned on OKE 2015/2016 train.

    python benchmarks/retrieval.py                  # 100k and 1M passages
    python benchmarks/retrieval.py --quick          # 20k passages, < 1 minute
    python benchmarks/retrieval.py --recall         # the real-data recall table
    python benchmarks/retrieval.py --json out.json

Passage vectors (dim 384): `--data real` (default) are MiniLM embeddings of up to 8,000 real texts
from ../shared/data, each repeated with Gaussian noise (σ 0.35 per dimension) to reach the size;
`--data random` are random unit vectors. ScaNN's partitioning needs structure: on random vectors
its recall collapses (documented in the README), which is why recall is measured on embeddings.
Rows: `{"backend", "n_passages", "build_s", "qps", "recall_at_100_vs_exact", "data"}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from environment import environment, write_json  # benchmarks/environment.py (this script's folder)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("RELIK_JAX_SHARED", ROOT.parent / "shared"))
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "relik_jax"
K = 100


def real_texts(limit: int) -> list[str]:
    from relik_jax.data.formats import read_el, read_re

    data = SHARED / "data"
    texts: list[str] = []
    for name in ("nyt/dev", "webnlg/train", "conll04/train", "rebel_sample/sample"):
        texts += [d.text for d in read_re(data / f"{name}.jsonl")]
    for name in ("aquaint/test", "n3_rss500/test", "oke2016/train"):
        for d in read_el(data / f"{name}.jsonl"):
            words = d.text.split()
            texts += [" ".join(words[i : i + 40]) for i in range(0, len(words), 40)]
    texts = list(dict.fromkeys(t for t in texts if t.strip()))
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:limit]]


def base_embeddings(limit: int = 8000) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"bench_real_embeddings_{limit}.npy"
    if path.is_file():
        return np.load(path)
    from relik_jax.retriever.dense import DenseRetriever

    print(f"embedding {limit} real texts with MiniLM (cached in {path}) ...", flush=True)
    r = DenseRetriever.from_encoder("minilm", batch_size=64, passage_max_length=64)
    emb = r.embed_passages(real_texts(limit), progress=True)
    np.save(path, emb)
    return emb


def vectors(n: int, queries: int, data: str, seed: int = 0, base_texts: int = 8000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if data == "random":
        db = rng.normal(size=(n, 384)).astype(np.float32)
        q = rng.normal(size=(queries, 384)).astype(np.float32)
        return db / np.linalg.norm(db, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    base = base_embeddings(base_texts)
    db = base[rng.integers(0, len(base), n)] + rng.normal(scale=0.35, size=(n, base.shape[1])).astype(np.float32)
    q = base[rng.integers(0, len(base), queries)] + rng.normal(scale=0.35, size=(queries, base.shape[1])).astype(
        np.float32
    )
    return db.astype(np.float32), q.astype(np.float32)


def timed_search(searcher, q: np.ndarray) -> tuple[float, np.ndarray]:
    searcher.search(q[:64], K)  # warm-up (compilation)
    t = time.perf_counter()
    _, ids = searcher.search(q, K)
    return len(q) / (time.perf_counter() - t), ids


def speed_rows(
    sizes: list[int], backends: list[str], data: str, exact_queries: int, fast_queries: int, base_texts: int = 8000
) -> list[dict]:
    from relik_jax.retriever.index import make_backend

    rows = []
    for n in sizes:
        db, q = vectors(n, max(exact_queries, fast_queries), data, base_texts=base_texts)
        truth = None
        for backend in backends:
            t = time.perf_counter()
            searcher = make_backend(backend, db)
            build = time.perf_counter() - t
            nq = exact_queries if backend in ("exact", "approx", "int8") else fast_queries
            qps, ids = timed_search(searcher, q[:nq])
            if backend == "exact":
                truth = ids
            ref = truth[: min(len(truth), len(ids))]
            recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids[: len(ref)], ref)]))
            rows.append({"backend": backend, "n_passages": n, "build_s": round(build, 2), "qps": round(qps, 1),
                         "recall_at_100_vs_exact": round(recall, 4), "data": data})  # fmt: skip
            print(
                f"{backend:>6} n={n:>9,} build {build:7.2f} s  {qps:9.1f} queries/s  recall@100 vs exact {recall:.3f}",
                flush=True,
            )
        del db
    return rows


EL_TEST = ("ace2004", "aquaint", "dbpedia_spotlight", "n3_reuters128", "n3_rss500", "oke2015", "oke2016")


def retriever_config(epochs: int):
    """The fine-tuning run: MiniLM, AdamW 2e-5 with 10% warm-up, 32 questions x 160 passages per batch,
    hard negatives mined from the KB titles before each epoch after the first."""
    from relik_jax.training.config import base_config

    c = base_config()
    c.kind = "retriever"
    c.data.dataset = "sample_el"  # not read: the samples are given to the task
    c.data.test_split = ""
    c.export = False
    c.compilation_cache = ""
    c.retriever.question_max_length = 128
    c.retriever.passage_max_length = 32
    c.retriever.passages_per_batch = 160
    c.retriever.mine_hard_negatives = True
    c.train.batch_size = 32
    c.train.epochs = epochs
    c.optim.learning_rate = 2e-5
    c.optim.head_learning_rate = 0.0
    c.optim.layer_decay = 1.0
    c.eval.every = 10**9  # once, at the end (the end-of-training params are the ones measured)
    c.eval.max_docs = 200
    c.checkpoint.every = 10**9
    return c


def recall_rows(epochs: int) -> list[dict]:
    import tempfile

    from relik_jax.data.formats import read_el
    from relik_jax.retriever import dpr
    from relik_jax.retriever.passages import kb_titles
    from relik_jax.training.config import validate
    from relik_jax.training.loop import train_and_evaluate
    from relik_jax.training.retriever_task import RetrieverTask

    data = SHARED / "data"
    titles = kb_titles(data / "kb" / "gold_titles.tsv")
    known = set(titles)

    def passage_of(title):
        return title if title in known else None

    tests = {name: dpr.el_to_dpr(read_el(data / name / "test.jsonl"), passage_of) for name in EL_TEST}
    train = dpr.el_to_dpr(
        read_el(data / "oke2015" / "train.jsonl") + read_el(data / "oke2016" / "train.jsonl"), passage_of
    )
    config = retriever_config(epochs)
    validate(config)
    # dev (for the loop's end-of-run evaluation only): train windows; the test sets are never seen
    task = RetrieverTask(config, samples={"train": train, "dev": train}, passages=titles)
    rows = []

    def evaluate(model_name, params):
        retriever = task.retriever.with_params(params)
        retriever.build_index(titles, titles, progress=False)
        for name, samples in tests.items():
            r = dpr.evaluate_recall(retriever, samples, k=K)
            rows.append({"dataset": name, "model": model_name, "recall_at_100": round(r, 4), "windows": len(samples),
                         "gold": sum(len(s.positives) for s in samples)})  # fmt: skip
            print(f"{model_name:>22} {name:>18} recall@100 {r:.3f} ({len(samples)} windows)", flush=True)

    evaluate("MiniLM", task.init_params)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        result = train_and_evaluate(config, workdir, task)
        losses = [round(x, 4) for x in _epoch_losses(result.workdir, task.steps_per_epoch())]
    print(
        f"fine-tuned on {len(train)} OKE train windows, {epochs} epochs, {time.perf_counter() - t:.0f} s, losses {losses}"
    )
    evaluate("MiniLM + OKE fine-tune", result.params)
    return rows


def _epoch_losses(workdir: Path, steps_per_epoch: int) -> list[float]:
    """The mean training loss of each epoch, from the run's metrics.jsonl."""
    per_epoch: dict[int, list[float]] = {}
    path = Path(workdir) / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        if "loss" in row:
            per_epoch.setdefault((row["step"] - 1) // steps_per_epoch, []).append(row["loss"])
    return [float(np.mean(v)) for _, v in sorted(per_epoch.items())]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20k passages only (< 1 minute)")
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--backends", default="exact,approx,int8,scann")
    p.add_argument("--data", choices=("real", "random"), default="real")
    p.add_argument("--exact-queries", type=int, default=256)
    p.add_argument("--queries", type=int, default=1000, help="queries timed for scann")
    p.add_argument("--recall", action="store_true", help="the real-data recall table (MiniLM vs fine-tuned)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    env = environment()
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.recall:
        rows = recall_rows(args.epochs)
        models = list(dict.fromkeys(r["model"] for r in rows))
        print("\n| dataset | " + " | ".join(models) + " |\n|---|" + "---|" * len(models))
        for name in EL_TEST:
            vals = [f"{r['recall_at_100']:.3f}" for r in rows if r["dataset"] == name]
            print(f"| {name} | " + " | ".join(vals) + " |")
    else:
        sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
        base = 1000 if args.quick else 8000
        rows = speed_rows(sizes, args.backends.split(","), args.data, args.exact_queries, args.queries, base)
        print("\n| backend | passages | build s | queries/s | recall@100 vs exact |\n|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['backend']} | {r['n_passages']:,} | {r['build_s']} | {r['qps']} | {r['recall_at_100_vs_exact']} |"
            )
    if args.json:
        write_json(args.json, rows, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
