"""Serving under load: `python -m relik_jax.serve` on localhost, batching on vs off, vs `Relik(...)` in one process.

    python benchmarks/serve.py [--json FILE] [--quick] [--memory-requests 5000] [--tasks re,el]

Models (built by `bash ../shared/bench/setup_official.sh`): RE = `relik-reader-triplet-minilm`,
each document of `../shared/bench/re_docs.jsonl` sent with its relation names as candidates; EL =
`relik-reader-span-minilm` + `relik-retriever-minilm` (index over passages.jsonl) saved as one
bundle, the documents of `el_docs.jsonl` sent without candidates (the retriever chooses 100 per
window). Settings as in benchmarks/vs_official.py (windows of 32 words, stride 16, reader batch 8 RE /
4 EL).

For each task and mode — batching on (`--max-wait-ms 100 --max-batch-docs 32`) and off
(`--max-wait-ms 0`: each request read alone) — one server process; closed-loop clients (each sends
its next request when the last is answered; one document per request) at each concurrency level
share the documents. An untimed pass first compiles what the warm-up could not know (the relation
counts of the documents). Rows: documents/s and p50/p95/p99 latency (ms). Ceiling: the same documents
through `Relik(texts, candidates)` in one process (one call for all, and calls of 32: the faster).
Memory: the RE batching-on server's RSS before and after `--memory-requests` requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from environment import environment, write_json  # benchmarks/environment.py (this script's folder)

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from relik_jax.core.assets import official_models_dir, official_python  # noqa: E402
from relik_jax.serving.process import ServerProcess  # noqa: E402

BATCH = {"re": 8, "el": 4}
SETTINGS = ["--window-size", "32", "--window-stride", "16"]


def read_jsonl(path: Path, n: int) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def el_bundle(models: Path, folder: Path) -> Path:
    """The bench's EL reader and retriever (with its index) as one bundle, written once."""
    if (folder / "relik.json").is_file():
        return folder
    code = (
        "import sys; from relik_jax.inference.relik import Relik; "
        "from relik_jax.official.retriever import load_retriever; "
        "from relik_jax.reader.pipeline import ReaderPipeline; "
        f"m = {str(models)!r}; "
        "Relik(ReaderPipeline.from_pretrained(m + '/relik-reader-span-minilm'), "
        "load_retriever(m + '/relik-retriever-minilm')).save_pretrained(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, cwd=ROOT)
    return folder


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


async def load(url: str, bodies: list[dict], clients: int) -> dict:
    """Closed-loop clients sharing `bodies` (one request each); wall time and latencies."""
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def worker():
            nonlocal errors
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                r = await client.post("/annotate", json=body)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "latencies": latencies, "errors": errors}


def in_process(model: str, task: str, texts: list[str], cands: list | None, chunk: int) -> dict:
    """Relik(...) in a fresh process on the same documents: one call for all, and calls of `chunk`."""
    code = f"""
import json, sys, time
from relik_jax.inference.relik import Relik
relik = Relik.from_pretrained({model!r}, batch_size={BATCH[task]}, window_size=32, window_stride=16)
texts, cands = json.loads(sys.stdin.read())
def run(step):
    for s in range(0, len(texts), step):
        relik(texts[s:s + step], cands[s:s + step] if cands else None)
out = {{}}
for name, step in (("one_call", len(texts)), ("calls_of_{chunk}", {chunk})):
    run(step)  # untimed: compiles
    t0 = time.perf_counter(); run(step); out[name] = time.perf_counter() - t0
print(json.dumps(out))
"""
    r = subprocess.run([sys.executable, "-c", code], input=json.dumps([texts, cands]), capture_output=True,
                       text=True, cwd=ROOT)  # fmt: skip
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--quick", action="store_true", help="RE 64 docs, EL 4, memory 500 requests")
    p.add_argument("--tasks", default="re,el")
    p.add_argument("--re-docs", type=int, default=300)
    p.add_argument("--el-docs", type=int, default=14)
    p.add_argument("--re-clients", default="1,8,32")
    p.add_argument("--el-clients", default="1,8")
    p.add_argument("--max-wait-ms", default="100")
    p.add_argument("--max-batch-docs", default="32")
    p.add_argument("--memory-requests", type=int, default=5000)
    p.add_argument("--compilation-cache", default="~/.cache/relik_jax/xla")
    args = p.parse_args(argv)
    if args.quick:
        args.re_docs, args.el_docs, args.memory_requests = 64, 4, 500
    env = environment()
    python = official_python()
    if python is None:
        raise SystemExit("the bench models are not set up: bash ../shared/bench/setup_official.sh")
    models = official_models_dir(python)
    work = Path(tempfile.mkdtemp(prefix="relik-serve-bench-"))
    rows: list[dict] = []
    memory: dict = {}
    t_start = time.perf_counter()
    for task in args.tasks.split(","):
        if task == "re":
            docs = read_jsonl(BENCH / "re_docs.jsonl", args.re_docs)
            model = str(models / "relik-reader-triplet-minilm")
            bodies = [{"text": d["text"], "candidates": d["candidates"]} for d in docs]
            cands = [d["candidates"] for d in docs]
            levels = [int(c) for c in args.re_clients.split(",")]
        else:
            docs = read_jsonl(BENCH / "el_docs.jsonl", args.el_docs)
            model = str(el_bundle(models, Path.home() / ".cache" / "relik_jax" / "bench-serve-el"))
            bodies = [{"text": d["text"]} for d in docs]
            cands = None
            levels = [int(c) for c in args.el_clients.split(",")]
        texts = [d["text"] for d in docs]
        ceiling = in_process(model, task, texts, cands, int(args.max_batch_docs))
        best = min(ceiling.values())
        rows.append({"task": task, "mode": "in-process", "clients": None, "docs": len(docs),
                     "docs_per_s": round(len(docs) / best, 3), "calls": ceiling})  # fmt: skip
        print(f"{task} in-process: {ceiling}", file=sys.stderr)
        for mode, wait in (("batching on", args.max_wait_ms), ("batching off", "0")):
            serve_args = [*SETTINGS, "--batch-size", str(BATCH[task]), "--max-wait-ms", wait,
                          "--max-batch-docs", args.max_batch_docs, "--compilation-cache", args.compilation_cache,
                          "--log-level", "warning"]  # fmt: skip
            server = ServerProcess(model, serve_args, log_path=work / f"{task}-{wait}.log").start()
            try:
                ready_s = server.wait_ready(1800)
                asyncio.run(load(server.url, bodies, max(levels)))  # untimed: relation counts etc. compile
                for clients in levels:
                    res = asyncio.run(load(server.url, bodies, clients))
                    lat = res["latencies"]
                    row = {
                        "task": task, "mode": mode, "clients": clients, "docs": len(docs),
                        "docs_per_s": round(len(docs) / res["seconds"], 3), "seconds": round(res["seconds"], 2),
                        "p50_ms": round(1000 * statistics.median(lat), 1), "p95_ms": round(1000 * percentile(lat, 95), 1),
                        "p99_ms": round(1000 * percentile(lat, 99), 1), "errors": res["errors"],
                        "server_ready_s": round(ready_s, 1),
                    }  # fmt: skip
                    rows.append(row)
                    print(f"{task} {mode} {clients} clients: {row['docs_per_s']} docs/s", file=sys.stderr)
                info = server.get("/info")[1]
                rows[-1]["server_stats"] = info["stats"]
                if task == "re" and wait != "0" and args.memory_requests:
                    before = server.rss_mb()
                    n = args.memory_requests
                    res = asyncio.run(load(server.url, [bodies[i % len(bodies)] for i in range(n)], max(levels)))
                    after = server.rss_mb()
                    memory = {"task": task, "mode": "memory", "requests": n, "rss_before_mb": round(before, 1),
                              "rss_after_mb": round(after, 1), "growth_mb": round(after - before, 1),
                              "errors": res["errors"], "docs_per_s": round(n / res["seconds"], 3)}  # fmt: skip
                    print(f"memory: {memory}", file=sys.stderr)
            finally:
                server.stop()
    if memory:
        rows.append(memory)

    print(f"load average {env['load_average_at_start']} at start; {time.perf_counter() - t_start:.0f} s in all")
    print("| task | mode | clients | docs/s | p50 ms | p95 ms | p99 ms | vs off | vs in-process |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["mode"] == "memory":
            continue
        ceil = next(x for x in rows if x["task"] == r["task"] and x["mode"] == "in-process")["docs_per_s"]
        off = next((x for x in rows if x["task"] == r["task"] and x["mode"] == "batching off"
                    and x["clients"] == r["clients"]), None)  # fmt: skip
        if r["mode"] == "batching on" and off:
            r["vs_off"] = round(r["docs_per_s"] / off["docs_per_s"], 2)
        if r["mode"] != "in-process":
            r["vs_in_process"] = round(r["docs_per_s"] / ceil, 2)
        cells = [r["task"], r["mode"], r["clients"] or "", f"{r['docs_per_s']:.2f}", r.get("p50_ms", ""),
                 r.get("p95_ms", ""), r.get("p99_ms", ""), r.get("vs_off", ""), r.get("vs_in_process", "")]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")
    if memory:
        print(f"RSS of the RE server: {memory['rss_before_mb']:.0f} MB before and {memory['rss_after_mb']:.0f} MB "
              f"after {memory['requests']:,} requests ({memory['growth_mb']:+.0f} MB), {memory['errors']} errors")  # fmt: skip
    if args.json:
        write_json(args.json, rows, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
