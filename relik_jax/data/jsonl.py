"""JSON-lines files: read with line-numbered errors, written atomically line by line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relik_jax.core.errors import DataError


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, record)` of each non-empty line; malformed JSON raises `DataError` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{n}: not valid UTF-8 ({e.reason})") from None
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
            yield n, record


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSON-lines file."""
    return [r for _, r in iter_jsonl(path)]
