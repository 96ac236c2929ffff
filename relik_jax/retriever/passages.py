"""Passage texts: entities as `title <def> description`, relations as `name <def> definition`."""

from __future__ import annotations

from pathlib import Path

from relik_jax.core.errors import DataError
from relik_jax.data.jsonl import iter_jsonl

SEPARATOR = " <def> "


def entity_passage(title: str, description: str | None = None) -> str:
    """`title <def> description`, or the bare title when there is no description (official format)."""
    return f"{title}{SEPARATOR}{description}" if description else title


def passage_title(passage: str) -> str:
    """The title (or relation name) of a passage text: what comes before ` <def> `."""
    return passage.split(SEPARATOR, 1)[0]


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


def kb_passages(path: str | Path) -> dict[str, str]:
    """An entity inventory → {title: passage}: a tsv (`title[<TAB>description[<TAB>...]]`, e.g.
    `kb/gold_titles.tsv`, whose other columns are counts) or a jsonl of `{"title", "text"}`
    (`"description"` also read). A title's passage is `title <def> description` when it has one."""
    path = Path(path)
    if path.suffix == ".jsonl":
        out = {}
        for n, r in iter_jsonl(path):
            title = r.get("title")
            if not isinstance(title, str) or not title.strip():
                raise DataError(f"{path}:{n}: a KB record needs a non-empty 'title' string")
            out[title] = entity_passage(title, r.get("text") or r.get("description") or None)
        return out
    pairs = read_tsv_pairs(path, "title")
    return {t: entity_passage(t, d if d and not d.strip().isdigit() else None) for t, d in pairs.items()}


def kb_titles(path: str | Path) -> list[str]:
    """The titles of `kb/gold_titles.tsv` (first column), in file order."""
    return list(read_tsv_pairs(path, "title"))
