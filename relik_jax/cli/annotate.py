"""`relik-jax annotate MODEL INPUT OUTPUT` (also `python -m relik_jax.annotate`): annotate a file of documents, streaming.

    python -m relik_jax.annotate runs/rebel docs.txt out.jsonl              # a document per line
    python -m relik_jax.annotate BUNDLE docs.jsonl out.jsonl --dtype bfloat16 --top-k 50

MODEL: anything `Relik.from_pretrained` loads (bundle, training workdir, reader or retriever
folder, official ReLiK folder). INPUT: `.txt` (one document per line) or `.jsonl` (objects with a
`text` field, optional `id` and `candidates`). OUTPUT: jsonl, one line per input line, in input
order: `{"line", "id", "text", "tokens", "spans", ["triplets",] "candidates"}` (the official output
shape) or `{"line", "id", "error"}` for a line that could not be read (invalid UTF-8 or JSON, no
text): the error is also reported on stderr and the rest of the file continues.

Resumable: when OUTPUT exists, the documents it already holds are skipped (a line cut by a kill
is removed first), so a killed run restarted with the same command writes every document exactly
once. `--overwrite` starts over.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from relik_jax.inference.annotate import Fields, annotate_file, open_job, peak_rss_mb
from relik_jax.inference.bundle import SETTINGS
from relik_jax.inference.relik import Relik
from relik_jax.retriever.span_queries import MERGE_RULES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relik_jax.annotate", description=__doc__.splitlines()[0])
    p.add_argument("model", help="bundle, training workdir, reader / retriever folder, or official ReLiK folder")
    p.add_argument("input", type=Path, help=".txt (a document per line) or .jsonl")
    p.add_argument("output", type=Path, help="jsonl, one line per input line")
    p.add_argument("--format", choices=("auto", "txt", "jsonl"), default="auto")
    p.add_argument("--text-field", default="text")
    p.add_argument("--id-field", default="id")
    p.add_argument("--candidates-field", default="candidates", help="jsonl: per-document candidates (reader-only)")
    p.add_argument("--chunk-docs", type=int, default=64, help="documents prepared and read together")
    p.add_argument("--batch-size", type=int, default=None, help="reader rows per forward batch")
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
    p.add_argument("--top-k", type=int)
    p.add_argument("--window-size", type=int)
    p.add_argument("--window-stride", type=int)
    p.add_argument("--relation-threshold", type=float)
    p.add_argument("--annotation-type", choices=("char", "word"))
    p.add_argument("--span-queries", type=int, help="BEER2: passages per found span (0: off; default: the bundle's)")
    p.add_argument("--span-merge", choices=MERGE_RULES, help="BEER2: how span hits join a window's top-k")
    p.add_argument("--with-windows", action="store_true", help="also write each window's predictions")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    job = open_job(args.input, args.output, fmt=args.format, chunk_docs=args.chunk_docs, overwrite=args.overwrite)
    if job.done:
        print(f"{args.output} already holds all {job.total} documents of {args.input}", file=sys.stderr)
        return 0
    settings = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    extra = {"batch_size": args.batch_size} if args.batch_size else {}
    relik = Relik.from_pretrained(
        args.model, dtype=args.dtype, retriever_dtype=args.retriever_dtype, **extra, **settings
    )
    fields = Fields(args.text_field, args.id_field, args.candidates_field)
    stats = annotate_file(
        relik, job, fields=fields, settings=settings, with_windows=args.with_windows, progress=not args.no_progress,
    )  # fmt: skip
    print(
        f"wrote {stats.written:,} lines to {args.output} ({stats.documents:,} documents, {stats.errors} unreadable lines"
        f"{f', {stats.skipped:,} already there' if stats.skipped else ''}) in {stats.seconds:.1f} s "
        f"({stats.documents / max(stats.seconds, 1e-9):.2f} docs/s); peak RSS {peak_rss_mb():.0f} MB",
        file=sys.stderr,
    )
    return 0
