"""Passage texts: entities as `title <def> description`, relations as `name <def> definition`."""

from __future__ import annotations

from pathlib import Path

from relik_jax.core.errors import DataError

SEPARATOR = " <def> "


def entity_passage(title: str, description: str | None = None) -> str:
    """`title <def> description`, or the bare title when there is no description (official format)."""
    return f"{title}{SEPARATOR}{description}" if description else title


def relation_passage(name: str, definition: str | None = None) -> str:
    return f"{name}{SEPARATOR}{definition}" if definition else name


def read_tsv_pairs(path: str | Path, what: str) -> dict[str, str]:
    """`name<TAB>text` lines (text optional) → {name: text}; a malformed line names its number."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        name, _, text = line.partition("\t")
        if not name.strip():
            raise DataError(f"{path}:{n}: empty {what} name")
        out[name] = text.split("\t")[0] if text else ""
    return out


def relation_passages(path: str | Path) -> dict[str, str]:
    """`relations/<dataset>.tsv` → {relation name: passage text}."""
    return {name: relation_passage(name, d or None) for name, d in read_tsv_pairs(path, "relation").items()}


def kb_titles(path: str | Path) -> list[str]:
    """The titles of `kb/gold_titles.tsv` (first column), in file order."""
    return list(read_tsv_pairs(path, "title"))
