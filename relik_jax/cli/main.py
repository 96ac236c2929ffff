"""`relik-jax COMMAND ...` and `python -m relik_jax COMMAND ...`: every command in one place."""

from __future__ import annotations

import sys

from relik_jax.cli import annotate, convert, encode, index, run_main, to_dpr, train

COMMANDS = {
    "train": "train a reader or a retriever from a config (configs/*.py)",
    "annotate": "annotate a file of documents with a model (resumable)",
    "index": "build or extend a retriever's passage index",
    "convert": "official relik checkpoints <-> relik_jax folders",
    "encode": "embed texts with an encoder",
    "to-dpr": "ReLiK EL/RE jsonl -> DPR-style retriever training data",
}
_MAINS = {"annotate": annotate.main, "index": index.main, "convert": convert.main, "encode": encode.main,
          "to-dpr": to_dpr.main}  # fmt: skip


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: relik-jax COMMAND [ARGS]  (COMMAND --help for its arguments)", "", "commands:"]
    return "\n".join(lines + [f"  {name:<{width}}  {about}" for name, about in COMMANDS.items()])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    if command == "train":
        train.run([f"relik-jax {command}", *rest])
        return
    run_main(lambda: _MAINS[command](rest))
