"""`relik-jax evaluate MODEL DATA.jsonl [DATA2.jsonl ...]` (also `python -m relik_jax.evaluate`):
end-to-end entity linking, scored as GERBIL scores it (InKB strong match; see
`relik_jax.evaluation.el`).

    python -m relik_jax.evaluate runs/oke ../shared/data/oke2015/test.jsonl ../shared/data/oke2016/test.jsonl
    python -m relik_jax.evaluate BUNDLE data/*.jsonl --kb titles.tsv --json results.json

MODEL: what `Relik.from_pretrained` loads (a bundle or a training workdir) with a reader that links
(EL or cIE) and a retriever. DATA: ReLiK EL jsonl (`doc_text`, `doc_span_annotations`). `--kb`
(tsv `title[<TAB>description]` or jsonl `{"title", "text"}`) adds the passages the index lacks
before evaluating. Prints, per file and micro-averaged over them: InKB precision / recall / F1,
mention-detection F1, and the retriever's recall@1/10/50/100.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from relik_jax.core.errors import DataError
from relik_jax.core.types import NME
from relik_jax.data.formats import read_el
from relik_jax.evaluation import el
from relik_jax.inference.relik import Relik
from relik_jax.retriever.passages import kb_passages

COLUMNS = (("docs", "documents", "{:.0f}"), ("InKB P", "inkb_precision", "%"), ("InKB R", "inkb_recall", "%"),
           ("InKB F1", "inkb_f1", "%"), ("MD F1", "md_f1", "%"), *((f"R@{k}", f"recall_at_{k}", "%") for k in el.RECALL_KS),
           ("docs/s", "docs_per_s", "{:.1f}"))  # fmt: skip


def dataset_name(path: Path) -> str:
    """`../shared/data/oke2015/test.jsonl` → `oke2015/test`."""
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem


def format_table(rows: dict[str, dict[str, float]]) -> str:
    width = max(len(n) for n in rows)
    head = f"{'dataset':<{width}} | " + " | ".join(f"{c:>7}" for c, _, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, m in rows.items():
        cells = []
        for _, key, fmt in COLUMNS:
            v = m.get(key)
            cells.append("      -" if v is None else f"{100 * v:7.2f}" if fmt == "%" else f"{fmt.format(v):>7}")
        lines.append(f"{name:<{width}} | " + " | ".join(cells))
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    """Written whole or not at all (a temporary file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relik_jax.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("model", help="a bundle or training workdir with an EL / cIE reader and a retriever")
    p.add_argument("data", nargs="+", type=Path, help="ReLiK EL jsonl files")
    p.add_argument("--kb", type=Path, help="entity passages to add to the index first (tsv or jsonl)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--top-k", type=int, help="candidates the reader reads per window (default: the bundle's)")
    p.add_argument("--window-size", type=int)
    p.add_argument("--window-stride", type=int)
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "int8"),
        default="float32",
        help="reader compute: int8 = the encoder's dense layers as int8 dots",
    )
    p.add_argument(
        "--retriever-dtype",
        choices=("float32", "bfloat16", "int8"),
        default="float32",
        help="retriever query encoder: int8 = its dense layers as int8 dots (passage vectors as stored)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="reader rows per forward batch")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    names = [dataset_name(f) for f in args.data]
    if len(set(names)) != len(names):
        names = [str(f) for f in args.data]
    datasets = {}
    for name, path in zip(names, args.data):  # every file is read and checked before the model loads
        docs = read_el(path)
        if not docs:
            raise DataError(f"{path}: no documents")
        el.check_documents(docs, str(path))
        datasets[name] = docs
    kb = kb_passages(args.kb) if args.kb else None
    extra = {"batch_size": args.batch_size} if args.batch_size else {}
    relik = Relik.from_pretrained(args.model, dtype=args.dtype, retriever_dtype=args.retriever_dtype, **extra)
    missing = el.prepare_relik(relik, [d for ds in datasets.values() for d in ds], kb)
    if missing:
        total = len({t for ds in datasets.values() for d in ds for _, _, t in d.spans if t != NME})
        print(
            f"warning: {len(missing)} of {total} gold titles are not in the index (their mentions count as "
            f"misses; pass --kb to add them), e.g. {', '.join(map(repr, missing[:3]))}",
            file=sys.stderr,
        )
    settings = {k: v for k in ("top_k", "window_size", "window_stride") if (v := getattr(args, k)) is not None}
    annotate = el.relik_annotator(relik, **settings)
    counts = {
        name: el.evaluate_documents(annotate, docs, progress=not args.no_progress, desc=name)
        for name, docs in datasets.items()
    }
    total = el.micro(counts.values())
    rows = {name: c.metrics() for name, c in counts.items()}
    if len(rows) > 1:
        rows["micro"] = total.metrics()
    print(format_table(rows))
    print(
        f"{total.documents} documents in {total.seconds:.1f} s ({total.documents / max(total.seconds, 1e-9):.2f} docs/s)"
    )
    if args.json:
        s = relik.settings.replace(**settings)
        write_json(args.json, {
            "model": str(args.model),
            "settings": {"top_k": s.top_k, "window_size": s.window_size, "window_stride": s.window_stride},
            "index_size": len(relik.retriever.index),
            "missing_gold_titles": len(missing),
            "rows": [{"dataset": n, **m} for n, m in rows.items()],
        })  # fmt: skip
    return 0
