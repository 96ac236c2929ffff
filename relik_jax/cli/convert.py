"""`relik-jax convert` (also `python -m relik_jax.convert`): move Reader checkpoints between relik_jax and the official ReLiK.

    python -m relik_jax.convert official-reader SRC DST [--encoder-config FILE]
    python -m relik_jax.convert export-official SRC DST

`official-reader` reads an official reader folder (relik 1.0.7 `save_pretrained`) and writes a
relik_jax reader folder (same weights file, the encoder's architecture recorded in config.json).
`export-official` writes a folder the official `RelikReaderSpanModel` / `RelikReaderREModel`
load, with the encoder folder their constructor needs in `DST/encoder`. Typed-entity / closed-IE
readers (`relik-cie-*`: `RelikReaderREModel` with `entity_type_loss`) convert both ways too.

    python -m relik_jax.convert official-retriever SRC DST
    python -m relik_jax.convert export-official-retriever SRC DST

Retrievers: relik's `GoldenRetriever` folder (`question_encoder/`, optional `passage_encoder/`,
`document_index/` with documents.jsonl + embeddings.pt) ⇄ a relik_jax retriever folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from relik_jax.core.errors import CheckpointError
from relik_jax.official.retriever import load_retriever, save_official_retriever
from relik_jax.reader.checkpoint import load_reader, save_reader


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relik_jax.convert", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("official-reader", help="official reader folder -> relik_jax reader folder")
    a.add_argument("src", type=Path)
    a.add_argument("dst", type=Path)
    a.add_argument("--encoder-config", type=Path, help="the encoder's config.json, when SRC names a hub id")
    b = sub.add_parser("export-official", help="relik_jax reader folder -> official reader folder")
    b.add_argument("src", type=Path)
    b.add_argument("dst", type=Path)
    c = sub.add_parser(
        "official-retriever", help="official retriever folder (question_encoder/, document_index/) -> relik_jax"
    )
    c.add_argument("src", type=Path)
    c.add_argument("dst", type=Path)
    d = sub.add_parser("export-official-retriever", help="relik_jax retriever folder -> official retriever folder")
    d.add_argument("src", type=Path)
    d.add_argument("dst", type=Path)
    args = p.parse_args(argv)

    if args.dst.exists() and any(args.dst.iterdir()):
        raise CheckpointError(f"{args.dst} exists and is not empty; choose a new folder")
    if args.command.endswith("retriever"):
        return convert_retriever(args.command, args.src, args.dst)

    encoder_config = None
    if getattr(args, "encoder_config", None):
        encoder_config = json.loads(args.encoder_config.read_text())
    model, params, tokenizer = load_reader(args.src, encoder_config=encoder_config)
    save_reader(args.dst, model.config, params, tokenizer, with_encoder_folder=args.command == "export-official")
    print(
        f"wrote {model.config.task} reader ({model.config.encoder.model_type}, vocab {model.config.encoder.vocab_size}) to {args.dst}"
    )
    return 0


def convert_retriever(command: str, src: Path, dst: Path) -> int:
    retriever = load_retriever(src)
    c = retriever.model.config
    if command == "official-retriever":
        retriever.save(dst)
    else:
        save_official_retriever(retriever, dst)
    n = len(retriever.index) if retriever.index is not None else 0
    print(
        f"wrote retriever ({c.question.model_type}, {'shared' if c.shared else 'separate'} encoders, index of {n} passages) to {dst}"
    )
    return 0
