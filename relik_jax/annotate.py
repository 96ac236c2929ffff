"""`python -m relik_jax.annotate MODEL INPUT OUTPUT`: annotate a file of documents, streaming.

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
import collections
import dataclasses
import itertools
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relik_jax.cli import run_main
from relik_jax.errors import ConfigError, DataError


@dataclasses.dataclass
class Record:
    line: int  # 1-based line of the input file
    id: Any
    text: str | None = None
    candidates: list[str] | None = None
    error: str | None = None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def read_records(path: Path, fmt: str, args: argparse.Namespace, skip: int) -> Iterator[Record]:
    """The input's records from line `skip + 1` on; unreadable lines become error records."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if n <= skip:
                continue
            raw = raw.rstrip(b"\n").rstrip(b"\r") if fmt == "jsonl" else raw.rstrip(b"\n")
            if fmt == "txt" and raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Record(n, n, error=f"invalid UTF-8 at byte {e.start} of the line")
                continue
            if fmt == "txt":
                yield Record(n, n, text=line)
                continue
            if not line.strip():
                yield Record(n, n, error="empty line (not a JSON object)")
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                yield Record(n, n, error=f"invalid JSON: {e}")
                continue
            if not isinstance(obj, dict):
                yield Record(n, n, error=f"a JSON {type(obj).__name__}, not an object")
                continue
            rid = obj.get(args.id_field, n)
            text = obj.get(args.text_field)
            if not isinstance(text, str):
                yield Record(n, rid, error=f"no string field {args.text_field!r}")
                continue
            cands = obj.get(args.candidates_field)
            if cands is not None and (not isinstance(cands, list) or not all(isinstance(c, str) for c in cands)):
                yield Record(n, rid, error=f"{args.candidates_field!r} is not a list of strings")
                continue
            yield Record(n, rid, text=text, candidates=cands)


def resume_point(output: Path) -> int:
    """The last input line OUTPUT holds (0: none); a partial last line (a killed write) is cut off."""
    if not output.exists():
        return 0
    with output.open("rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
    last = 0
    for raw in data[:end].splitlines()[-1:]:
        try:
            last = int(json.loads(raw)["line"])
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{output} exists but is not an annotate output (last line has no 'line'); "
                            "use another OUTPUT or --overwrite") from None  # fmt: skip
    return last


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
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--top-k", type=int)
    p.add_argument("--window-size", type=int)
    p.add_argument("--window-stride", type=int)
    p.add_argument("--relation-threshold", type=float)
    p.add_argument("--annotation-type", choices=("char", "word"))
    p.add_argument("--with-windows", action="store_true", help="also write each window's predictions")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    if not args.input.is_file():
        raise DataError(f"{args.input} is not a file")
    fmt = args.format if args.format != "auto" else ("jsonl" if args.input.suffix in (".jsonl", ".json") else "txt")
    if args.chunk_docs < 1:
        raise ConfigError("--chunk-docs must be >= 1")
    if args.output.resolve() == args.input.resolve():
        raise ConfigError("OUTPUT is the INPUT file")
    if args.overwrite and args.output.exists():
        args.output.unlink()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    skip = resume_point(args.output)
    total = count_lines(args.input)
    if skip >= total and total:
        print(f"{args.output} already holds all {total} documents of {args.input}", file=sys.stderr)
        return 0

    from tqdm.auto import tqdm

    from relik_jax.inference.relik import Relik

    settings = {k: getattr(args, k) for k in ("top_k", "window_size", "window_stride", "relation_threshold",
                                              "annotation_type") if getattr(args, k) is not None}  # fmt: skip
    extra = {"batch_size": args.batch_size} if args.batch_size else {}
    relik = Relik.from_pretrained(args.model, dtype=args.dtype, **extra, **settings)
    if skip:
        print(f"resuming: {args.output} holds lines 1-{skip}; continuing at line {skip + 1}", file=sys.stderr)

    pending: collections.deque[Record] = collections.deque()

    def documents() -> Iterator[tuple[str, list[str] | None]]:  # runs in the preparing thread
        for rec in read_records(args.input, fmt, args, skip):
            pending.append(rec)
            if rec.error is None:
                yield rec.text, rec.candidates

    texts, cands = itertools.tee(documents())
    stream = relik.stream(
        (t for t, _ in texts), candidates=(c for _, c in cands), chunk_size=args.chunk_docs, **settings
    )
    bar = tqdm(total=total, initial=skip, unit="doc", desc="annotate", disable=args.no_progress, dynamic_ncols=True)
    written = errors = 0
    milestone = 1000
    t0 = time.perf_counter()

    with args.output.open("a", encoding="utf-8") as out:

        def write(obj: dict) -> None:
            nonlocal written, milestone
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            written += 1
            bar.update(1)
            if written == milestone:
                out.flush()
                bar.write(f"peak RSS after {written:,} documents: {peak_rss_mb():.0f} MB", file=sys.stderr)
                milestone *= 10

        def write_errors() -> None:
            nonlocal errors
            while pending and pending[0].error is not None:
                rec = pending.popleft()
                bar.write(f"{args.input}:{rec.line}: {rec.error}; skipped", file=sys.stderr)
                write({"line": rec.line, "id": rec.id, "error": rec.error})
                errors += 1

        for i, result in enumerate(stream):
            write_errors()
            rec = pending.popleft()
            write({"line": rec.line, "id": rec.id, **result.to_official_dict(relik.task, args.with_windows)})
            if i % args.chunk_docs == args.chunk_docs - 1:
                out.flush()
        write_errors()
    bar.close()
    dt = time.perf_counter() - t0
    print(
        f"wrote {written:,} lines to {args.output} ({written - errors:,} documents, {errors} unreadable lines"
        f"{f', {skip:,} already there' if skip else ''}) in {dt:.1f} s "
        f"({(written - errors) / max(dt, 1e-9):.2f} docs/s); peak RSS {peak_rss_mb():.0f} MB",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_main(main)
