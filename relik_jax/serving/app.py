"""The HTTP API of `python -m relik_jax.serve` (FastAPI; the `serve` extra).

    service = Service(Relik.from_pretrained(path), model=str(path), dtype="float32")
    app = create_app(service)        # an ASGI app: uvicorn, or Ray Serve (relik_jax.serving.ray_app)

Endpoints: `POST /annotate`, `POST /retrieve`, `GET /health`, `GET /ready`, `GET /info`; OpenAPI
docs at `/docs`. Requests go through one `Batcher` (relik_jax.inference.batching): concurrent ones
are read together. The model is compiled for all its buckets before `/ready` answers 200 (annotation
requests before that get 503).

Errors: a body that is not JSON or has a wrong type → 422 naming the field (FastAPI's `detail`
list); a setting out of range or candidates that do not fit the texts → 422, `detail` = the
library's message; a text over `max_text_chars` → 413; anything else that fails inside the model →
500 with the request id (`x-request-id`, also logged with the traceback), and the next request is
served as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import logging
import threading
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.core.shapes import count_compilations
from relik_jax.inference.batching import JOB_SETTINGS, Batcher, Job
from relik_jax.inference.relik import Relik
from relik_jax.reader.pipeline import per_document

try:
    import uvicorn  # optional: the `serve` extra
    from fastapi import FastAPI, Request  # optional: the `serve` extra
    from fastapi.responses import JSONResponse  # optional: the `serve` extra
except ImportError:  # create_app and the CLI say how to install it
    FastAPI = uvicorn = None

log = logging.getLogger("relik_jax.serve")
INSTALL_HINT = "the server needs the `serve` extra: pip install -e '.[serve]' (fastapi, uvicorn)"


@dataclasses.dataclass
class ServeOptions:
    """How the server batches and what it accepts."""

    max_batch_docs: int = 32  # documents gathered into one model call
    max_wait_ms: float = 100.0  # the longest the oldest request waits for others (0: no gathering)
    max_text_chars: int = 100_000  # longer texts get 413
    max_texts: int = 1_000  # texts (or queries) in one request; more get 413
    warmup: bool = True  # compile every bucket before /ready (False: compile on first use)

    def validate(self) -> None:
        if self.max_batch_docs < 1:
            raise ConfigError(f"max_batch_docs must be >= 1, got {self.max_batch_docs}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_text_chars < 1 or self.max_texts < 1:
            raise ConfigError("max_text_chars and max_texts must be >= 1")


class AnnotateRequest(BaseModel):
    """One text (→ one annotation) or a list (→ a list); settings as in `Relik.__call__` (absent:
    the model's)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | list[str] = Field(description="a document, or a list of documents")
    candidates: list[str] | list[list[str]] | None = Field(
        None, description="one list for every text, or one per text (EL: entities; RE: relation names)"
    )
    top_k: int | None = None
    window_size: int | None = None
    window_stride: int | None = None
    relation_threshold: float | None = None
    annotation_type: Literal["char", "word"] | None = None
    with_windows: bool = Field(False, description="also return each window's predictions and retrieved passages")


class RetrieveRequest(BaseModel):
    """One query (→ its hits) or a list (→ a list of hit lists)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | list[str]
    k: int | None = Field(None, description="passages per query (default: the model's top_k)")


class Service:
    """The model, its batcher and what `/ready` and `/info` report."""

    def __init__(self, relik: Relik, *, model: str = "", dtype: str = "float32", options: ServeOptions | None = None):
        self.relik, self.model, self.dtype = relik, model, dtype
        self.options = options or ServeOptions()
        self.options.validate()
        self.batcher: Batcher | None = None
        self.ready = threading.Event()
        self.warmup_error: str | None = None
        self.warmup_seconds: float | None = None
        self.warmup_programs: dict[str, int] = {}
        self.compiles_after_ready = None
        self._compiles = contextlib.ExitStack()
        self._started = False

    def start(self) -> None:
        """Warms the model up in a background thread; `/ready` turns true when it is done."""
        if not self._started:
            self._started = True
            threading.Thread(target=self._warm, name="relik-warmup", daemon=True).start()

    def _warm(self) -> None:
        t0 = time.perf_counter()
        try:
            if self.options.warmup:
                self.warmup_programs = self.relik.warmup()
        except Exception as e:  # reported by /ready and the log; the server stays up to say so
            log.exception("warm-up failed")
            self.warmup_error = f"{type(e).__name__}: {e}"
            return
        self.warmup_seconds = round(time.perf_counter() - t0, 2)
        self.batcher = Batcher(self.relik, max_batch_docs=self.options.max_batch_docs,
                               max_wait_ms=self.options.max_wait_ms)  # fmt: skip
        self.compiles_after_ready = self._compiles.enter_context(count_compilations())
        self.ready.set()
        log.info("ready: warm-up compiled %s in %.1f s", self.warmup_programs, self.warmup_seconds)

    def close(self) -> None:
        """Answers every request already queued, then stops the worker."""
        if self.batcher is not None:
            self.batcher.close()
        self._compiles.close()

    def info(self) -> dict[str, Any]:
        r = self.relik
        index = r.retriever.index if r.retriever is not None else None
        return {
            "task": r.task,
            "model": self.model,
            "dtype": self.dtype,
            "version": _version(),
            "reader": r.reader is not None,
            "retriever": r.retriever is not None,
            "settings": dataclasses.asdict(r.settings),
            "relations": list(r.relations),
            "index_size": len(index) if index is not None else None,
            "batching": dataclasses.asdict(self.options),
            "ready": self.ready.is_set(),
            "warmup": {"seconds": self.warmup_seconds, "programs": self.warmup_programs, "error": self.warmup_error},
            "compilations_after_ready": self.compiles_after_ready.count if self.compiles_after_ready else None,
            "stats": self.batcher.stats.as_dict() if self.batcher is not None else None,
        }


def _version() -> str:
    try:
        return importlib.metadata.version("relik_jax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _Refused(Exception):
    """A request answered with `status` and `detail` (never the model's fault)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def _texts(text: str | list[str], limit_chars: int, limit_texts: int) -> list[str]:
    texts = [text] if isinstance(text, str) else list(text)
    if len(texts) > limit_texts:
        raise _Refused(413, f"{len(texts):,} texts in one request; this server takes at most {limit_texts:,}")
    for i, t in enumerate(texts):
        if len(t) > limit_chars:
            raise _Refused(413, f"text {i} has {len(t):,} characters; this server reads at most {limit_chars:,}")
    return texts


def annotate_job(service: Service, req: AnnotateRequest) -> tuple[bool, Job]:
    """`(single, job)` for a request, checked here (422 / 413) before it reaches the model."""
    o, relik = service.options, service.relik
    texts = _texts(req.text, o.max_text_chars, o.max_texts)
    settings = {k: getattr(req, k) for k in JOB_SETTINGS if getattr(req, k) is not None}
    try:
        relik.settings.replace(**settings)  # ConfigError: the same message as the library's
        candidates = per_document(req.candidates, len(texts), "candidate") if req.candidates is not None else None
    except (ConfigError, DataError) as e:
        raise _Refused(422, str(e)) from None
    if candidates is None and relik.reader is not None and relik.retriever is None and not relik.relations:
        raise _Refused(422, "this model has no retriever and no stored relation names: pass candidates")
    return isinstance(req.text, str), Job(texts, candidates, settings)


def create_app(service: Service) -> FastAPI:
    """The FastAPI app serving `service` (started by the app's lifespan)."""
    if FastAPI is None:
        raise ConfigError(INSTALL_HINT)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.start()
        yield
        await asyncio.to_thread(service.close)  # requests in flight have finished: uvicorn waited
        jobs = service.batcher.stats.jobs if service.batcher is not None else 0
        log.info("stopped after answering every request (%d served)", jobs)

    app = FastAPI(
        title="relik_jax",
        version=_version(),
        description="Entity linking, relation extraction and closed IE with a ReLiK model (relik_jax).",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def request_id(request: Request, call_next):
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        response = await call_next(request)
        response.headers["x-request-id"] = request.state.request_id
        return response

    @app.exception_handler(_Refused)
    async def refused(request: Request, e: _Refused):
        return JSONResponse({"detail": e.detail}, status_code=e.status)

    async def run(request: Request, job: Job) -> list[Any]:
        if not service.ready.is_set():
            raise _Refused(503, service.warmup_error or "warming up: retry when GET /ready answers 200")
        try:
            return await asyncio.wrap_future(service.batcher.submit(job))
        except (ConfigError, DataError) as e:
            raise _Refused(422, str(e)) from None
        except Exception:
            rid = request.state.request_id
            log.exception("request %s failed inside the model", rid)
            raise _Refused(
                500, f"internal error in the model (request id {rid}; the server log has the traceback)"
            ) from None

    @app.post("/annotate", summary="Annotate one text or a list of texts")
    async def annotate(req: AnnotateRequest, request: Request):
        single, job = annotate_job(service, req)
        outputs = await run(request, job)
        body = [o.to_official_dict(service.relik.task, with_windows=req.with_windows) for o in outputs]
        return JSONResponse(body[0] if single else body)

    @app.post("/retrieve", summary="The retriever's top-k passages for one query or a list")
    async def retrieve(req: RetrieveRequest, request: Request):
        if service.relik.retriever is None:
            raise _Refused(400, "this model has no retriever")
        texts = _texts(req.text, service.options.max_text_chars, service.options.max_texts)
        k = service.relik.settings.top_k if req.k is None else req.k
        if k < 1:
            raise _Refused(422, f"k must be >= 1, got {k}")
        hits = await run(request, Job(texts, kind="retrieve", k=k))
        body = [[{"id": h.id, "text": h.text, "score": h.score} for h in hs] for hs in hits]
        return JSONResponse(body[0] if isinstance(req.text, str) else body)

    @app.get("/health", summary="The process is up")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="The model is loaded and compiled (200), or not yet (503)")
    async def ready():
        if service.ready.is_set():
            return {"ready": True}
        return JSONResponse({"ready": False, "detail": service.warmup_error or "warming up"}, status_code=503)

    @app.get("/info", summary="Task, model, dtype, settings, relation names, index size, batching")
    async def info():
        return service.info()

    return app


def run_uvicorn(app: Any, *, host: str, port: int, log_level: str = "info", shutdown_timeout: float = 60.0) -> None:
    """Serves `app` until SIGINT / SIGTERM; requests in flight get `shutdown_timeout` seconds to finish."""
    if uvicorn is None:
        raise ConfigError(INSTALL_HINT)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=shutdown_timeout)
    uvicorn.Server(config).run()
