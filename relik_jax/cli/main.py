"""`relik-jax COMMAND ...` and `python -m relik_jax COMMAND ...`: every command in one place."""

from __future__ import annotations

import sys
from collections.abc import Callable

from relik_jax.cli import annotate, aot, convert, encode, evaluate, index, run_main, serve, to_dpr, train


def _argparse(main: Callable[[list[str]], int]) -> Callable[[list[str]], None]:
    """Runs an argparse command's `main(argv)` through the shared error handler."""
    return lambda argv: run_main(lambda: main(argv))


# name → (what it does, how to run it with the arguments after the name)
COMMANDS: dict[str, tuple[str, Callable[[list[str]], None]]] = {
    "train": ("train a reader or a retriever from a config (configs/*.py)",
              lambda argv: train.run(["relik-jax train", *argv])),  # absl flags: its own parsing
    "aot": ("compile a config's train step for a TPU topology on this machine: per-chip memory, FLOPs",
            lambda argv: aot.run(["relik-jax aot", *argv])),
    "evaluate": ("end-to-end entity linking scores (GERBIL InKB, MD, recall@k) of a model", _argparse(evaluate.main)),
    "annotate": ("annotate a file of documents with a model (resumable)", _argparse(annotate.main)),
    "serve": ("an HTTP API over a model, with dynamic batching (the `serve` extra)", _argparse(serve.main)),
    "index": ("build or extend a retriever's passage index", _argparse(index.main)),
    "convert": ("official relik checkpoints <-> relik_jax folders", _argparse(convert.main)),
    "encode": ("embed texts with an encoder", _argparse(encode.main)),
    "to-dpr": ("ReLiK EL/RE jsonl -> DPR-style retriever training data", _argparse(to_dpr.main)),
}  # fmt: skip


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: relik-jax COMMAND [ARGS]  (COMMAND --help for its arguments)", "", "commands:"]
    return "\n".join(lines + [f"  {name:<{width}}  {about}" for name, (about, _) in COMMANDS.items()])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    COMMANDS[command][1](rest)
