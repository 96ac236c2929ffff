"""Annotating a file of documents with a `Relik`, streaming, resumable, in input order.

INPUT: `.txt` (one document per line) or `.jsonl` (objects with a text field, optional id and
candidates). OUTPUT: jsonl, one line per input line, in input order: `{"line", "id", "text",
"tokens", "spans", ["triplets",] "candidates"}` (the official output shape) or `{"line", "id",
"error"}` for a line that could not be read (invalid UTF-8 or JSON, no text): the error is also
reported and the rest of the file continues.

Resumable: when OUTPUT exists, the documents it already holds are skipped (a line cut by a kill is
removed first), so a killed run restarted with the same call writes every document exactly once.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.inference.relik import Relik


@dataclasses.dataclass
class Record:
    line: int  # 1-based line of the input file
    id: Any
    text: str | None = None
    candidates: list[str] | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Fields:
    """The jsonl field names of a document's text, id and candidates."""

    text: str = "text"
    id: str = "id"
    candidates: str = "candidates"


@dataclasses.dataclass
class AnnotateStats:
    written: int  # output lines written by this call
    errors: int  # of which unreadable input lines
    skipped: int  # lines already in OUTPUT (resumed)
    seconds: float

    @property
    def documents(self) -> int:
        return self.written - self.errors


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def input_format(path: Path, fmt: str = "auto") -> str:
    """`txt` or `jsonl`: as given, or from the file's suffix."""
    if fmt != "auto":
        return fmt
    return "jsonl" if path.suffix in (".jsonl", ".json") else "txt"


def read_records(path: Path, fmt: str, fields: Fields, skip: int) -> Iterator[Record]:
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
            rid = obj.get(fields.id, n)
            text = obj.get(fields.text)
            if not isinstance(text, str):
                yield Record(n, rid, error=f"no string field {fields.text!r}")
                continue
            cands = obj.get(fields.candidates)
            if cands is not None and (not isinstance(cands, list) or not all(isinstance(c, str) for c in cands)):
                yield Record(n, rid, error=f"{fields.candidates!r} is not a list of strings")
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


@dataclasses.dataclass(frozen=True)
class Job:
    """An annotation of INPUT into OUTPUT, checked and positioned (`open_job`) before a model is loaded."""

    input: Path
    output: Path
    fmt: str  # txt | jsonl
    skip: int  # input lines OUTPUT already holds
    total: int  # input lines
    chunk_docs: int = 64  # documents prepared and read together

    @property
    def done(self) -> bool:
        return bool(self.total) and self.skip >= self.total


def open_job(input: Path, output: Path, *, fmt: str = "auto", chunk_docs: int = 64, overwrite: bool = False) -> Job:
    """Checks the paths, starts over when asked, and finds where OUTPUT resumes (a cut last line removed)."""
    if not input.is_file():
        raise DataError(f"{input} is not a file")
    if chunk_docs < 1:
        raise ConfigError("--chunk-docs must be >= 1")
    if output.resolve() == input.resolve():
        raise ConfigError("OUTPUT is the INPUT file")
    if overwrite and output.exists():
        output.unlink()
    output.parent.mkdir(parents=True, exist_ok=True)
    return Job(input, output, input_format(input, fmt), resume_point(output), count_lines(input), chunk_docs)


def annotate_file(
    relik: Relik,
    job: Job,
    *,
    fields: Fields = Fields(),
    settings: dict[str, Any] | None = None,
    with_windows: bool = False,
    progress: bool = True,
) -> AnnotateStats:
    """Annotates the job's INPUT into its OUTPUT after the lines OUTPUT holds; `settings` as `Relik.__call__`."""
    input, output, fmt, skip, total, chunk_docs = job.input, job.output, job.fmt, job.skip, job.total, job.chunk_docs
    settings = settings or {}
    if skip:
        print(f"resuming: {output} holds lines 1-{skip}; continuing at line {skip + 1}", file=sys.stderr)

    pending: collections.deque[Record] = collections.deque()

    def documents() -> Iterator[tuple[str, list[str] | None]]:  # runs in the preparing thread
        for rec in read_records(input, fmt, fields, skip):
            pending.append(rec)
            if rec.error is None:
                yield rec.text, rec.candidates

    texts, cands = itertools.tee(documents())
    stream = relik.stream((t for t, _ in texts), candidates=(c for _, c in cands), chunk_size=chunk_docs, **settings)
    bar = tqdm(total=total, initial=skip, unit="doc", desc="annotate", disable=not progress, dynamic_ncols=True)
    written = errors = 0
    milestone = 1000
    t0 = time.perf_counter()

    with output.open("a", encoding="utf-8") as out:

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
                bar.write(f"{input}:{rec.line}: {rec.error}; skipped", file=sys.stderr)
                write({"line": rec.line, "id": rec.id, "error": rec.error})
                errors += 1

        for i, result in enumerate(stream):
            write_errors()
            rec = pending.popleft()
            write({"line": rec.line, "id": rec.id, **result.to_official_dict(relik.task, with_windows)})
            if i % chunk_docs == chunk_docs - 1:
                out.flush()
        write_errors()
    bar.close()
    return AnnotateStats(written, errors, skip, time.perf_counter() - t0)
