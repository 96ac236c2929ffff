"""`relik-jax to-dpr`: ReLiK EL/RE jsonl → DPR-style retriever training data.

    relik-jax to-dpr el DATA.jsonl OUT.jsonl --kb gold_titles.tsv [--descriptions FILE.tsv]
    relik-jax to-dpr re DATA.jsonl OUT.jsonl --relations relations.tsv

One record per window (32 words, stride 16 by default) with at least one gold passage: the window
text is the question, the passages of its gold entities (`title <def> description`) or relations
(`name <def> definition`) are the positives. Hard negatives are mined during training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from relik_jax.data.formats import read_el, read_re
from relik_jax.retriever.dpr import el_to_dpr, re_to_dpr
from relik_jax.retriever.passages import entity_passage, kb_titles, read_tsv_pairs, relation_passages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="relik-jax to-dpr", description=__doc__.splitlines()[0])
    p.add_argument("task", choices=("el", "re"))
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--kb", type=Path, help="EL: entity titles, one per line (first tab-separated column)")
    p.add_argument("--descriptions", type=Path, help="EL: title<TAB>description lines")
    p.add_argument("--relations", type=Path, help="RE: name<TAB>definition lines")
    p.add_argument("--window-size", type=int, default=32)
    p.add_argument("--window-stride", type=int, default=16)
    args = p.parse_args(argv)
    if args.task == "el":
        if args.kb is None:
            p.error("el needs --kb")
        titles = set(kb_titles(args.kb))
        desc = read_tsv_pairs(args.descriptions, "description") if args.descriptions else {}

        def passage_of(title):
            return entity_passage(title, desc.get(title) or None) if title in titles else None

        samples = el_to_dpr(read_el(args.data), passage_of, args.window_size, args.window_stride)
    else:
        if args.relations is None:
            p.error("re needs --relations")
        samples = re_to_dpr(read_re(args.data), relation_passages(args.relations), args.window_size, args.window_stride)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s.to_json(), ensure_ascii=False) + "\n")
    print(f"wrote {len(samples)} questions, {sum(len(s.positives) for s in samples)} positives to {args.out}")
    return 0
