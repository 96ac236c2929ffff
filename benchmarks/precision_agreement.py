"""bf16 and int8 vs fp32 decisions of a trained reader on a dataset split: the share of equal spans and
triplets, each precision's strict triplet F1 against the gold, and its speed.

    python benchmarks/precision_agreement.py --model RUN/bundle --data ../shared/data/conll04/test.jsonl
    python benchmarks/precision_agreement.py --model RUN/bundle --data FILE --json agreement.json

`--model`: anything `Relik.from_pretrained` loads (a training workdir's bundle); RE records
(`doc_words`, spans, triplets). A typed reader reads the bundle's span candidates (its entity types)
or `--candidates a,b,c`; relation names are the bundle's. Every precision (fp32, bf16, int8: the
encoder's dense layers as int8 dots, SmoothQuant-calibrated on the package's texts; `--dtypes
float32,int8_absmax` adds the plain absmax int8) reads the same documents with the same settings, each after a
warm-up pass over the first documents (compilations). Agreement = |fp32 ∩ other| / |fp32 ∪ other|
over (document, span) and (document, triplet) items, labels included; also the share of documents
whose outputs are identical.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from environment import environment, write_json  # benchmarks/environment.py (this script's folder)

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("float32", "bfloat16", "int8")  # fp32 is the reference the others are compared with
# int8 is SmoothQuant (calibrated on the package's texts); int8_absmax the plain absmax int8 of before
VARIANTS = {"int8_absmax": ("int8", {"calibration": False})}
sys.path.insert(0, str(ROOT))


def _chars(starts, words, span):
    s, e = span
    return starts[s], starts[e - 1] + len(words[e - 1])


def run(model: str, docs, dtype: str, candidates, batch_size: int) -> dict:
    from relik_jax.inference.relik import Relik

    if dtype.startswith("int8@"):  # SmoothQuant with another alpha (choose it on a dev split)
        from relik_jax.reader.pipeline import Calibration

        dtype, extra = "int8", {"calibration": Calibration(alpha=float(dtype.split("@")[1]))}
    else:
        dtype, extra = VARIANTS.get(dtype, (dtype, {}))
    relik = Relik.from_pretrained(model, dtype=dtype, batch_size=batch_size, **extra)
    kw = {"candidates": candidates} if candidates else {}
    relik(words=[list(d.words) for d in docs[:8]], **kw)  # compiles most shapes
    t = time.perf_counter()
    outs = relik(words=[list(d.words) for d in docs], **kw)
    seconds = time.perf_counter() - t
    spans, triplets, per_doc = set(), set(), []
    for n, o in enumerate(outs):
        s = {(n, x.start, x.end, x.label) for x in o.spans}
        t3 = {(n, (a.subject.start, a.subject.end, a.subject.label), a.relation,
               (a.object.start, a.object.end, a.object.label)) for a in o.triplets}  # fmt: skip
        spans |= s
        triplets |= t3
        per_doc.append((s, t3))
    return {"task": relik.task, "seconds": seconds, "spans": spans, "triplets": triplets, "per_doc": per_doc}


def strict_f1(docs, triplets) -> float:
    from relik_jax.data.windows import given_words

    gold = set()
    for n, d in enumerate(docs):
        _, w = given_words(d.words)
        for s, r, o in d.triplets:
            gold.add((n, *_chars(w.starts, d.words, s), r, *_chars(w.starts, d.words, o)))
    pred = {(n, a[0], a[1], r, b[0], b[1]) for n, a, r, b in triplets}
    tp = len(gold & pred)
    p, r = tp / max(len(pred), 1), tp / max(len(gold), 1)
    return 2 * p * r / max(p + r, 1e-12)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="RE jsonl (e.g. ../shared/data/conll04/test.jsonl)")
    ap.add_argument("--candidates", default="", help="typed readers: comma-separated span candidates")
    ap.add_argument("--max-docs", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--dtypes",
        default=",".join(DTYPES),
        help=f"float32 first; also {', '.join(VARIANTS)}, int8@ALPHA (SmoothQuant alpha)",
    )
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    from relik_jax.data.formats import read_re

    env = environment()
    docs = read_re(args.data)[: args.max_docs or None]
    cands = [c for c in args.candidates.split(",") if c]
    dtypes = [d for d in args.dtypes.split(",") if d]
    if dtypes[0] != "float32":
        ap.error("--dtypes starts with float32 (the reference)")
    res = {dt: run(args.model, docs, dt, cands, args.batch_size) for dt in dtypes}
    a = res["float32"]
    rows = []
    for dt in dtypes[1:]:
        b = res[dt]
        for what in ("spans", "triplets"):
            x, y = a[what], b[what]
            rows.append({
                "measure": f"{what}_{dt}", "dtype": dt, "fp32": len(x), "other": len(y), "equal": len(x & y),
                "agreement": len(x & y) / max(len(x | y), 1), "fp32_kept": len(x & y) / max(len(x), 1),
            })  # fmt: skip
        same = sum(p == q for p, q in zip(a["per_doc"], b["per_doc"])) / max(len(docs), 1)
        rows.append({"measure": f"documents identical_{dt}", "dtype": dt, "agreement": same, "fp32": len(docs),
                     "other": len(docs)})  # fmt: skip
    for dt, r in res.items():
        rows.append({"measure": f"strict_triplet_f1_{dt}", "value": 100 * strict_f1(docs, r["triplets"]),
                     "docs_per_s": len(docs) / r["seconds"]})  # fmt: skip
    print(f"{args.model} ({a['task']}) on {args.data}: {len(docs)} documents")
    print("| measure | fp32 | other | equal | agreement |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "agreement" in r:
            print(
                f"| {r['measure']} | {r['fp32']} | {r['other']} | {r.get('equal', '')} | {100 * r['agreement']:.2f}% |"
            )
    for r in rows:
        if "value" in r:
            print(f"{r['measure']}: {r['value']:.2f} ({r['docs_per_s']:.2f} docs/s)")
    if args.json:
        write_json(args.json, rows, env | {"model": str(Path(args.model).resolve()), "data": args.data})


if __name__ == "__main__":
    main()
