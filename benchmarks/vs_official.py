"""Inference speed: relik_jax vs the official relik 1.0.7, same MiniLM models, same inputs, one session.

    python benchmarks/vs_official.py [--json FILE] [--quick] [--rounds N]

The official side is `../shared/bench/official.py` (its venv: `bash ../shared/bench/setup_official.sh`),
run as a subprocess per measure, on the models that setup built (`relik-reader-{span,triplet}-minilm`,
`relik-retriever-minilm` with its index over `passages.jsonl`). relik_jax loads those same folders
(converted on the fly) and runs the same documents with the same settings: windows of 32 words,
stride 16, max length 512, 100 candidates per window (EL: the file's, or the retriever's top 100 of
2,213 passages), the relation names of each RE document.

Measures (per second; ratio = relik_jax / official fp32; ratio_vs_fastest = relik_jax / the official's
fastest setting for that measure):
  el_reader_forward_*                  windows/s, reader forward over the rows of the EL documents
  el_reader_only_end_to_end_*          docs/s, Relik(texts, candidates=...) (texts → spans + links)
  el_retriever_reader_end_to_end_*     docs/s, Relik(texts) with the retriever choosing candidates
  re_reader_forward_*, re_end_to_end_* windows/s and docs/s, RE (triplets)
  retriever_queries_*                  queries/s, top-100 from query strings
`*` = fp32, bf16 or int8 (relik_jax's reader compute: int8 = the encoder's dense layers as int8 dots,
`relik_jax.encoders.quantize`, SmoothQuant calibrated on the package's texts; `retriever_queries_int8`:
the query encoder in int8, `DenseRetriever.int8_queries`; inside `Relik` the retriever stays fp32).
The official side runs at fp32 and, where relik 1.0.7 can, at its bf16 setting
(`official.py --precision bf16`: EL and the retriever; its triplet reader crashes in bf16), so each row
has a ratio to the official fp32 and one to the official's fastest setting. On a CPU where PyTorch's
bf16 matmul is slower than its fp32 one (no bf16 instructions: AVX2-only x86, measured first by a
512 x 384 x 1536 probe in the official venv, recorded in the JSON) the official bf16 is not run
(`--official-bf16 auto`; `yes` forces it): fp32 is then its fastest setting. Each relik_jax dtype runs
in its own process; an untimed pass compiles every shape first (the official side warms up too, see
../shared/bench/README.md §3). The table shows the median of the timed passes (min in JSON). Also
printed: how far bf16 and int8 outputs agree with fp32 (documents with identical spans + links /
triplets, and item-level agreement).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from environment import environment, write_json  # benchmarks/environment.py (this script's folder)

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(ROOT))

from relik_jax.core.assets import official_models_dir, official_python  # noqa: E402


def official(python: Path, args: list[str]) -> dict:
    cmd = [str(python), str(BENCH / "official.py"), *args, "--threads", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=BENCH)
    if r.returncode:
        raise SystemExit(f"official.py {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


TORCH_PROBE = """
import json, time, torch
torch.set_num_threads(2)
out = {}
for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
    a, b = torch.randn(512, 384, dtype=dt), torch.randn(384, 1536, dtype=dt)
    a @ b
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
    out[name] = 2 * 512 * 384 * 1536 / best / 1e9
print(json.dumps(out))
"""


def torch_matmul_gflops(python: Path) -> dict[str, float]:
    """The official side's PyTorch on a MiniLM-sized matmul (512 x 384 x 1536), fp32 and bf16, GFLOP/s."""
    r = subprocess.run([str(python), "-c", TORCH_PROBE], capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise SystemExit(f"the PyTorch matmul probe failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def read_jsonl(path: Path, n: int) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def timed(fn, reps: int) -> tuple[list[float], object]:
    out, passes = None, []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        passes.append(time.perf_counter() - t0)
    return passes, out


def relik_jax_side(spec: dict) -> dict:
    """All measures for one compute dtype (run in a fresh process)."""
    import jax.numpy as jnp

    from relik_jax.data.windows import spacy_words
    from relik_jax.inference.relik import Relik
    from relik_jax.official.retriever import load_retriever
    from relik_jax.reader.pipeline import ReaderPipeline

    dtype = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "int8": "int8"}[spec["dtype"]]
    models, reps = Path(spec["models"]), spec["reps"]
    el = read_jsonl(BENCH / "el_docs.jsonl", spec["el_docs"])
    re_docs = read_jsonl(BENCH / "re_docs.jsonl", spec["re_docs"])
    queries = [q["text"] for q in read_jsonl(BENCH / "queries.jsonl", spec["queries"])]
    retriever = load_retriever(
        models / "relik-retriever-minilm", dtype=jnp.bfloat16 if spec["dtype"] != "fp32" else jnp.float32, batch_size=32
    )
    if spec["dtype"] == "int8":  # the query encoder's dense layers as int8 dots (SmoothQuant)
        retriever = retriever.int8_queries()
    # inside Relik the retriever stays fp32 (as from_pretrained loads it): ~1.5% of the time, and
    # bf16 scores would reorder the top-100 and change the reader's candidates
    fp32_retriever = load_retriever(models / "relik-retriever-minilm", batch_size=32)
    span = Relik(ReaderPipeline.from_pretrained(models / "relik-reader-span-minilm", dtype=dtype, batch_size=spec["el_batch"]), fp32_retriever)  # fmt: skip
    triplet = Relik(ReaderPipeline.from_pretrained(models / "relik-reader-triplet-minilm", dtype=dtype, batch_size=spec["re_batch"]))  # fmt: skip
    texts, cands = [d["text"] for d in el], [d["candidates"] for d in el]
    re_texts, re_cands = [d["text"] for d in re_docs], [d["candidates"] for d in re_docs]
    res: dict = {}

    def measure(name, fn, count, unit):
        if name not in spec["measures"]:
            return None
        fn()  # compiles every shape of this workload
        passes, out = timed(fn, reps)
        res[name] = {"passes_s": passes, "count": count, "unit": unit}
        return out

    def rows_of(relik, texts_, cands_):
        reader = relik.reader
        prepared = [reader.prepare(d, t, spacy_words(t), c, size=32, stride=16) for d, (t, c) in enumerate(zip(texts_, cands_))]  # fmt: skip
        return [r for p in prepared for r in reader.rows(p)], sum(len(p.windows) for p in prepared)

    el_rows, el_windows = rows_of(span, texts, cands)
    res["el_windows"], res["el_rows"] = el_windows, len(el_rows)
    measure("el_reader_forward", lambda: span.reader.predict_rows(el_rows, 0.5), el_windows, "windows/s")
    outs = measure("el_reader_only_end_to_end", lambda: span(texts, cands), len(el), "docs/s")
    res["el_outputs"] = [sorted([s.start, s.end, s.label] for s in o.spans) for o in outs or []]
    outs = measure("el_retriever_reader_end_to_end", lambda: span(texts), len(el), "docs/s")
    res["el_retrieved_outputs"] = [sorted([s.start, s.end, s.label] for s in o.spans) for o in outs or []]
    re_rows, re_windows = rows_of(triplet, re_texts, re_cands)
    res["re_windows"] = re_windows
    measure("re_reader_forward", lambda: triplet.reader.predict_rows(re_rows, 0.5), re_windows, "windows/s")
    outs = measure("re_end_to_end", lambda: triplet(re_texts, re_cands), len(re_docs), "docs/s")
    res["re_outputs"] = [
        sorted([t.subject.start, t.subject.end, t.relation, t.object.start, t.object.end] for t in o.triplets)
        for o in outs or []
    ]
    res["re_spans"] = [sorted([s.start, s.end] for s in o.spans) for o in outs or []]
    measure("retriever_queries", lambda: retriever.retrieve(queries, k=100), len(queries), "queries/s")
    return res


def run_ours(spec: dict) -> dict:
    code = (
        f"import json, sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'benchmarks')!r}]; from benchmarks.vs_official import relik_jax_side; "
        f"print(json.dumps(relik_jax_side({spec!r})))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


QUICK = ("el_reader_only_end_to_end", "re_end_to_end", "retriever_queries")
DTYPES = ("fp32", "bf16", "int8")  # relik_jax compute dtypes, each in its own process


def agreement(a: list[list], b: list[list]) -> tuple[float, float]:
    """(share of documents with identical outputs, span-level agreement |A∩B| / |A∪B|)."""
    if not a:
        return float("nan"), float("nan")  # not measured (--quick)
    same = sum(x == y for x, y in zip(a, b)) / len(a)
    inter = union = 0
    for x, y in zip(a, b):
        sx, sy = {tuple(v) for v in x}, {tuple(v) for v in y}
        inter += len(sx & sy)
        union += len(sx | sy)
    return same, inter / union if union else 1.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write the rows here")
    p.add_argument(
        "--quick",
        action="store_true",
        help="end to end only: EL 1 doc, RE 20 docs, 200 queries; 1 timed pass (< 3 min)",
    )
    p.add_argument("--rounds", type=int, default=1, help="official/relik_jax rounds, interleaved")
    p.add_argument("--reps", type=int, default=2, help="timed passes per measure and round")
    p.add_argument("--el-docs", type=int, default=14)
    p.add_argument("--re-docs", type=int, default=100)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument(
        "--official-bf16",
        choices=("auto", "yes", "no"),
        default="auto",
        help="run the official side in bf16 too (EL, retriever); auto: unless PyTorch's bf16 matmul is slower than "
        "its fp32 one on this CPU (no bf16 instructions: then bf16 is not its fastest setting, and runs for hours)",
    )
    args = p.parse_args(argv)
    env = environment()
    if args.quick:
        args.el_docs, args.re_docs, args.queries, args.reps, args.rounds = 1, 20, 200, 1, 1
    python = official_python()
    if python is None or not (BENCH / "official.py").is_file():
        raise SystemExit("the official side is not set up: bash ../shared/bench/setup_official.sh")
    models = official_models_dir(python)
    warm_docs = "1" if args.quick else "3"
    official_cmds = {
        "el_reader_forward": (["reader", "--task", "span", "--input", "el_docs.jsonl", "--n-docs", str(args.el_docs),
                               "--forward-only"], "windows_per_s"),
        "el_reader_only_end_to_end": (["reader", "--task", "span", "--input", "el_docs.jsonl", "--n-docs",
                                       str(args.el_docs), "--warmup-docs", warm_docs], "docs_per_s"),
        "el_retriever_reader_end_to_end": (["reader", "--task", "span", "--input", "el_docs.jsonl", "--n-docs",
                                            str(args.el_docs), "--retriever", "--warmup-docs", warm_docs], "docs_per_s"),
        "re_reader_forward": (["reader", "--task", "triplet", "--input", "re_docs.jsonl", "--n-docs",
                               str(args.re_docs), "--forward-only"], "windows_per_s"),
        "re_end_to_end": (["reader", "--task", "triplet", "--input", "re_docs.jsonl", "--n-docs", str(args.re_docs),
                           "--warmup-docs", warm_docs], "docs_per_s"),
        "retriever_queries": (["retriever", "--passages", "passages.jsonl", "--queries", "queries.jsonl",
                               "--n-queries", str(args.queries), "--top-k", "100"], "queries_per_s"),
    }  # fmt: skip
    if args.quick:
        official_cmds = {k: v for k, v in official_cmds.items() if k in QUICK}
    spec = {"models": str(models), "measures": list(official_cmds), "reps": args.reps, "el_docs": args.el_docs, "re_docs": args.re_docs,
            "queries": args.queries, "el_batch": 4, "re_batch": 8}  # fmt: skip
    # the official side at fp32 for every measure, and at bf16 where relik 1.0.7 runs it (EL; its RE
    # bf16 crashes: ../shared/bench/README.md), so that each ratio can also be read against the
    # official's fastest setting
    probe = torch_matmul_gflops(python)
    env["official_torch_matmul_gflops"] = {k: round(v, 1) for k, v in probe.items()}
    bf16_skipped = None
    if args.official_bf16 == "no" or (args.official_bf16 == "auto" and probe["bf16"] < probe["fp32"]):
        bf16_skipped = (
            f"official bf16 not run ({'--official-bf16 no' if args.official_bf16 == 'no' else 'auto'}): PyTorch's "
            f"bf16 matmul runs at {probe['bf16']:.1f} GFLOP/s on this CPU against {probe['fp32']:.1f} in fp32, so "
            "its fastest setting here is fp32"
        )
        print(bf16_skipped, file=sys.stderr)
    env["official_bf16_skipped"] = bf16_skipped
    off_precisions = {
        name: ["32", "bf16"] if not name.startswith("re_") and bf16_skipped is None else ["32"]
        for name in official_cmds
    }
    off_passes: dict[tuple[str, str], list[float]] = {}
    off_counts: dict[str, dict] = {}
    off_errors: dict[str, str] = {}
    ours: dict[str, dict[str, list[float]]] = {d: {} for d in DTYPES}
    last: dict[str, dict] = {}
    t_start = time.perf_counter()
    for rnd in range(args.rounds):
        for name, (cmd, key) in official_cmds.items():
            for prec in off_precisions[name]:
                try:
                    r = official(python, [*cmd, "--reps", str(args.reps), "--precision", prec])
                except SystemExit as e:
                    if prec == "32":
                        raise
                    off_errors[name] = str(e).strip().splitlines()[-1][:300]
                    continue
                count = r["counts"][{"docs_per_s": "docs", "windows_per_s": "windows", "queries_per_s": "queries"}[key]]
                off_passes.setdefault((name, prec), []).extend(r["seconds"])
                off_counts[name] = {"count": count, **r["counts"]}
                print(
                    f"round {rnd + 1} official {name} ({prec}): {[round(s, 2) for s in r['seconds']]} s",
                    file=sys.stderr,
                )
        for dtype in DTYPES:
            res = run_ours({**spec, "dtype": dtype})
            last[dtype] = res
            for name in official_cmds:
                if name in res:
                    ours[dtype].setdefault(name, []).extend(res[name]["passes_s"])
            print(f"round {rnd + 1} relik_jax {dtype}: " + ", ".join(
                f"{n} {[round(s, 2) for s in res[n]['passes_s']]}" for n in official_cmds if n in res), file=sys.stderr)  # fmt: skip

    rows = []
    for dtype in DTYPES:
        for name in official_cmds:
            if name not in last[dtype]:
                continue
            count = last[dtype][name]["count"]
            ours_s = ours[dtype][name]
            off_count = off_counts[name]["count"]
            mine = count / statistics.median(ours_s)
            theirs = {p: off_count / statistics.median(v) for (n, p), v in off_passes.items() if n == name}
            fastest = max(theirs, key=theirs.get)
            rows.append({
                "measure": f"{name}_{dtype}", "unit": last[dtype][name]["unit"],
                "relik_jax_per_s": round(mine, 3), "official_per_s": round(theirs["32"], 3), "ratio": round(mine / theirs["32"], 3),
                "official_fastest_per_s": round(theirs[fastest], 3), "official_fastest_precision": "fp32" if fastest == "32" else fastest,
                "ratio_vs_fastest": round(mine / theirs[fastest], 3),
                "official_bf16_per_s": round(theirs["bf16"], 3) if "bf16" in theirs else None,
                "official_bf16_error": off_errors.get(name) or (None if "bf16" in theirs else bf16_skipped if not name.startswith("re_") else "relik 1.0.7's triplet reader crashes in bf16 (TypeError: Got unsupported ScalarType BFloat16)"),
                "relik_jax_best_per_s": round(count / min(ours_s), 3),
                "relik_jax_passes_s": [round(s, 3) for s in ours_s],
                "official_passes_s": {("fp32" if p == "32" else p): [round(s, 3) for s in v] for (n, p), v in off_passes.items() if n == name},
                "count": count, "official_count": off_count,
            })  # fmt: skip
    agree = {}
    for dtype in DTYPES[1:]:
        agree[f"el_reader_only_end_to_end_{dtype}"] = agreement(last["fp32"]["el_outputs"], last[dtype]["el_outputs"])
        agree[f"el_retriever_reader_end_to_end_{dtype}"] = agreement(
            last["fp32"]["el_retrieved_outputs"], last[dtype]["el_retrieved_outputs"]
        )
        agree[f"re_end_to_end_{dtype}"] = agreement(last["fp32"]["re_outputs"], last[dtype]["re_outputs"])
        agree[f"re_spans_{dtype}"] = agreement(last["fp32"]["re_spans"], last[dtype]["re_spans"])
    el_off, re_off = off_counts["el_reader_only_end_to_end"], off_counts["re_end_to_end"]
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rounds} round(s) x {args.reps} timed passes; "
          f"{time.perf_counter() - t_start:.0f} s in all; EL {last['fp32']['el_windows']} windows "
          f"({el_off.get('windows')} official), {last['fp32']['el_rows']} rows "
          f"({el_off.get('reader_rows')} official); RE {last['fp32']['re_windows']} windows "
          f"({re_off.get('windows')} official)")  # fmt: skip
    print("| measure | unit | relik_jax | official fp32 | ratio | official fastest | ratio vs fastest |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['measure']} | {r['unit']} | {r['relik_jax_per_s']:.3f} | {r['official_per_s']:.3f} | {r['ratio']:.2f} "
            f"| {r['official_fastest_per_s']:.3f} ({r['official_fastest_precision']}) | {r['ratio_vs_fastest']:.2f} |"
        )
    for dtype in DTYPES[1:]:
        a_el, a_elr = agree[f"el_reader_only_end_to_end_{dtype}"], agree[f"el_retriever_reader_end_to_end_{dtype}"]
        a_re, a_res = agree[f"re_end_to_end_{dtype}"], agree[f"re_spans_{dtype}"]
        print(f"{dtype} vs fp32 agreement — EL given candidates: {100 * a_el[0]:.1f}% of documents identical, "
              f"{100 * a_el[1]:.2f}% of spans+links; EL retrieved: {100 * a_elr[0]:.1f}% / {100 * a_elr[1]:.2f}%; "
              f"RE: {100 * a_re[0]:.1f}% of documents identical triplets, {100 * a_re[1]:.2f}% of triplets, "
              f"{100 * a_res[1]:.2f}% of spans")  # fmt: skip
    if bf16_skipped:
        print(bf16_skipped)
    if "re_end_to_end" in off_errors or any(r["official_bf16_error"] for r in rows):
        print(
            "official bf16: EL and the retriever only; relik 1.0.7's triplet reader crashes in bf16 "
            "(TypeError: Got unsupported ScalarType BFloat16), so RE is compared with its fp32"
        )
    if args.json:
        for r in rows:
            if r["measure"] in agree:
                a = agree[r["measure"]]
                r["agreement_with_fp32"] = {"documents": a[0], "items": a[1]}
                if r["measure"].startswith("re_"):
                    r["agreement_with_fp32"]["spans"] = agree[r["measure"].replace("re_end_to_end", "re_spans")][1]
        write_json(args.json, rows, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
