"""`relik-jax serve MODEL` (also `python -m relik_jax.serve`): an HTTP API over one model, with dynamic batching.

    python -m relik_jax.serve runs/rebel                                   # http://127.0.0.1:8000/docs
    python -m relik_jax.serve BUNDLE --port 9000 --dtype bfloat16 --max-batch-docs 32 --max-wait-ms 100
    python -m relik_jax.serve BUNDLE --ray-replicas 2                       # Ray Serve, 2 replicas

MODEL: anything `Relik.from_pretrained` loads (bundle, training workdir, reader or retriever folder,
official ReLiK folder). Endpoints (relik_jax.serving.app): POST /annotate, POST /retrieve, GET
/health, GET /ready (200 once every bucket is compiled), GET /info, docs at /docs. Concurrent
requests are gathered (for at most --max-wait-ms, at most --max-batch-docs documents, as many as the
batcher expects: relik_jax.inference.batching) and read in one model call (--max-wait-ms 0: each
request alone). SIGTERM / Ctrl-C: requests in flight finish first.
Compiled programs are cached in --compilation-cache, so a restart is ready sooner.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import jax

from relik_jax.core.errors import ConfigError
from relik_jax.inference.bundle import SETTINGS
from relik_jax.inference.relik import Relik
from relik_jax.serving import app as serving
from relik_jax.serving import ray_app

log = logging.getLogger("relik_jax.serve")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m relik_jax.serve", description=__doc__.splitlines()[0])
    p.add_argument("model", help="bundle, training workdir, reader / retriever folder, or official ReLiK folder")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "int8"),
        default="float32",
        help="reader compute: int8 = the encoder's dense layers as int8 dots",
    )
    p.add_argument(
        "--retriever-dtype",
        choices=("float32", "bfloat16", "int8"),
        default="float32",
        help="retriever query encoder: int8 = its dense layers as int8 dots (passage vectors as stored)",
    )
    p.add_argument("--max-batch-docs", type=int, default=32, help="documents gathered into one model call")
    p.add_argument("--max-wait-ms", type=float, default=100.0, help="the longest a request waits for others (0: off)")
    p.add_argument("--max-text-chars", type=int, default=100_000, help="longer texts are refused (413)")
    p.add_argument("--max-texts", type=int, default=1_000, help="texts per request; more are refused (413)")
    p.add_argument("--batch-size", type=int, default=None, help="reader rows per forward batch")
    p.add_argument("--max-length", type=int, help="reader row length in tokens (fewer buckets to compile)")
    p.add_argument("--question-max-length", type=int, help="retriever query length in tokens")
    p.add_argument("--top-k", type=int, help="default candidates per window (requests may override)")
    p.add_argument("--window-size", type=int)
    p.add_argument("--window-stride", type=int)
    p.add_argument("--relation-threshold", type=float)
    p.add_argument("--annotation-type", choices=("char", "word"))
    p.add_argument("--no-warmup", action="store_true", help="ready at once; each new shape compiles on first use")
    p.add_argument("--compilation-cache", default="~/.cache/relik_jax/xla", help="persistent XLA cache ('' = off)")
    p.add_argument("--shutdown-timeout", type=float, default=60.0, help="seconds requests in flight get to finish")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--ray-replicas", type=int, default=0, help="run as a Ray Serve deployment of N replicas")
    return p


def options(args: argparse.Namespace) -> tuple[serving.ServeOptions, dict]:
    """The server options and the `Relik.from_pretrained` keyword arguments the flags give."""
    opts = serving.ServeOptions(
        max_batch_docs=args.max_batch_docs,
        max_wait_ms=args.max_wait_ms,
        max_text_chars=args.max_text_chars,
        max_texts=args.max_texts,
        warmup=not args.no_warmup,
    )
    opts.validate()
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in [0, 65535], got {args.port}")
    load = {k: getattr(args, k) for k in SETTINGS if getattr(args, k, None) is not None}
    if getattr(args, "retriever_dtype", "float32") != "float32":
        load["retriever_dtype"] = args.retriever_dtype
    for key in ("batch_size", "max_length", "question_max_length"):
        if getattr(args, key):
            load[key] = getattr(args, key)
    return opts, load


def use_compilation_cache(folder: str) -> None:
    """Every compiled program goes to the persistent cache (also the quick ones: there are many)."""
    if folder:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    opts, load = options(args)
    if serving.FastAPI is None or serving.uvicorn is None:
        raise ConfigError(serving.INSTALL_HINT)
    use_compilation_cache(args.compilation_cache)
    if args.ray_replicas:
        return ray_app.run(args.model, dtype=args.dtype, load=load, options=opts, replicas=args.ray_replicas,
                           host=args.host, port=args.port, cache=args.compilation_cache)  # fmt: skip
    relik = Relik.from_pretrained(args.model, dtype=args.dtype, **load)  # a bad folder: one line, exit 2
    service = serving.Service(relik, model=str(args.model), dtype=args.dtype, options=opts)
    app = serving.create_app(service)
    print(f"serving {args.model} ({relik.task}) on http://{args.host}:{args.port} (docs: /docs); "
          f"/ready answers 200 once warmed up", file=sys.stderr, flush=True)  # fmt: skip
    serving.run_uvicorn(app, host=args.host, port=args.port, log_level=args.log_level,
                        shutdown_timeout=args.shutdown_timeout)  # fmt: skip
    return 0
