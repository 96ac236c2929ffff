"""`relik-jax index` (also `python -m relik_jax.index`): build or extend the passage index of a retriever (or bundle).

    python -m relik_jax.index build PASSAGES OUT [--retriever FOLDER | --encoder minilm] [--backend scann]
    python -m relik_jax.index add MODEL PASSAGES

PASSAGES: `.jsonl` (`{"id", "text"}`, or `{"id", "title", "text"}` → `title <def> text`) or `.tsv`
(`title<TAB>description`, ids = titles). `build` embeds every passage with the retriever's
passage encoder and writes a retriever folder with its index to OUT (a `MODEL` for annotate, or the
`retriever/` of a bundle). `add` embeds only the new passages and appends them to the index of
MODEL (a retriever folder, a bundle, or a training workdir's bundle), in place; ids already in the
index are refused.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from relik_jax.core.errors import CheckpointError, DataError
from relik_jax.data.jsonl import iter_jsonl
from relik_jax.official.retriever import load_retriever
from relik_jax.retriever.dense import DenseRetriever
from relik_jax.retriever.passages import entity_passage, read_tsv_pairs


def read_passages(path: Path) -> tuple[list[str], list[str]]:
    """`(ids, texts)` of a passages file; a bad line names its number."""
    if not path.is_file():
        raise DataError(f"passages file {path} does not exist")
    if path.suffix == ".tsv":
        pairs = read_tsv_pairs(path, "title")
        return list(pairs), [entity_passage(t, d or None) for t, d in pairs.items()]
    ids, texts = [], []
    for n, obj in iter_jsonl(path):
        if not isinstance(obj.get("text"), str):
            raise DataError(f'{path}:{n}: expected an object with a string "text"')
        text = obj["text"]
        if isinstance(obj.get("title"), str):
            text = entity_passage(obj["title"], text or None)
        ids.append(str(obj.get("id", n)))
        texts.append(text)
    return ids, texts


def retriever_folder(model: Path) -> Path:
    """The retriever folder inside MODEL (itself, a bundle's retriever/, a workdir's bundle/retriever/)."""
    for candidate in (model, model / "retriever", model / "bundle" / "retriever"):
        if (candidate / "question_encoder" / "config.json").is_file():
            return candidate
    raise CheckpointError(
        f"{model} has no retriever (looked for question_encoder/ in it, retriever/, bundle/retriever/)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relik_jax.index", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="embed a passages file into a new retriever folder with its index")
    b.add_argument("passages", type=Path)
    b.add_argument("out", type=Path)
    src = b.add_mutually_exclusive_group()
    src.add_argument("--retriever", type=Path, help="a retriever folder whose encoders to use")
    src.add_argument("--encoder", default="minilm", help="an encoder folder, or minilm (default)")
    b.add_argument("--backend", choices=("exact", "approx", "scann"), default="exact")
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--max-length", type=int, default=None, help="passage tokens (default: the retriever's)")
    a = sub.add_parser("add", help="append new passages to an existing index, in place")
    a.add_argument("model", type=Path)
    a.add_argument("passages", type=Path)
    a.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)

    ids, texts = read_passages(args.passages)
    if not ids:
        raise DataError(f"{args.passages} holds no passage")
    if args.command == "build":
        if args.out.exists() and any(args.out.iterdir()):
            raise DataError(f"{args.out} exists and is not empty; choose a new folder")
        kw = {"batch_size": args.batch_size}
        if args.max_length:
            kw["passage_max_length"] = args.max_length
        if args.retriever:
            r = DenseRetriever.load(retriever_folder(args.retriever), with_index=False, **kw)
        else:
            r = DenseRetriever.from_encoder(args.encoder, **kw)
        r.build_index(ids, texts, backend=args.backend, progress=True)
        r.save(args.out)
        print(f"indexed {len(ids):,} passages into {args.out}", file=sys.stderr)
        return 0
    folder = retriever_folder(args.model)
    r = load_retriever(folder, batch_size=args.batch_size)
    if r.index is None:
        raise CheckpointError(f"{folder} has no index to extend; use `build`")
    before = len(r.index)
    r.add_passages(ids, texts, progress=True)
    # written beside, then swapped in: a kill leaves the old index or the new one, never half of one
    new, old, live = folder / "index.new", folder / "index.old", folder / "index"
    for stale in (new, old):
        if stale.exists():
            shutil.rmtree(stale)
    r.index.save(new)
    if live.exists():
        live.rename(old)
    new.rename(live)
    if old.exists():
        shutil.rmtree(old)
    print(f"added {len(ids):,} passages to {folder / 'index'} ({before:,} → {len(r.index):,})", file=sys.stderr)
    return 0
