"""Dynamic batching: concurrent requests gathered into one `Relik` call (the server's engine).

    batcher = Batcher(relik, max_batch_docs=32, max_wait_ms=100)
    future = batcher.submit(Job(["Marie Curie was born in Warsaw."]))   # from any thread
    outputs = future.result()                                           # [RelikOutput]
    batcher.close()                                                     # finishes what was submitted

One worker thread owns the model. It takes the oldest job, then gathers more — for at most
`max_wait_ms`, at most `max_batch_docs` documents, and only as many jobs as it expects: those
queued while the last call ran plus one per job that call answered (their clients are about to send
their next request) — and annotates the jobs that share their settings in one `Relik` call: the reader pools the rows of all their documents into its static-shape
batches, so a full batch costs about what one long request costs. Each job's outputs go back
through its future. A lone client never waits; 32 clients are read together instead of in parts
cut by when their requests happened to arrive (measured on the RE load of benchmarks/serve.py at 32
clients: 29 documents per call, against 21 / 27 with a fixed 50 / 100 ms wait). `max_wait_ms=0` turns gathering off: every job is read alone.

A call that raises is retried job by job, so one bad document fails its own request only.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from relik_jax.inference.relik import Relik

log = logging.getLogger(__name__)

# the per-request settings a job may carry (the keyword arguments of `Relik.__call__`)
JOB_SETTINGS = ("top_k", "window_size", "window_stride", "relation_threshold", "annotation_type")


@dataclasses.dataclass
class Job:
    """One request: documents to annotate (`kind="annotate"`) or queries to retrieve for
    (`kind="retrieve"`, `k` passages each). `candidates`: one list per document, or None (retrieve
    them). `settings`: a subset of `JOB_SETTINGS`; absent ones are the model's defaults."""

    texts: Sequence[str]
    candidates: Sequence[Sequence[str]] | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    kind: str = "annotate"
    k: int = 100
    submitted: float = 0.0  # time.monotonic() when queued
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future, repr=False)

    def key(self) -> tuple:
        """Jobs with equal keys run in one call."""
        if self.kind == "retrieve":
            return ("retrieve", self.k)
        return ("annotate", self.candidates is not None, *(self.settings.get(k) for k in JOB_SETTINGS))


@dataclasses.dataclass
class BatchStats:
    """What the worker has done (read by `/info`)."""

    jobs: int = 0
    documents: int = 0
    calls: int = 0  # model calls (a gathered batch of one settings group is one call)
    failed_jobs: int = 0
    largest_call_docs: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean_docs_per_call"] = round(self.documents / self.calls, 2) if self.calls else 0.0
        return d


_STOP = object()


class Batcher:
    """Gathers jobs from many threads and runs them on one model in one worker thread."""

    def __init__(self, relik: Relik, *, max_batch_docs: int = 32, max_wait_ms: float = 100.0):
        if max_batch_docs < 1:
            raise ValueError(f"max_batch_docs must be >= 1, got {max_batch_docs}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.relik = relik
        self.max_batch_docs, self.max_wait = max_batch_docs, max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._answered, self._answered_at = 0, 0.0  # jobs of the last call, and when it answered the first
        self._first_answer: float | None = None
        self._worker = threading.Thread(target=self._loop, name="relik-batcher", daemon=True)
        self._worker.start()

    def submit(self, job: Job) -> concurrent.futures.Future:
        """Queues `job`; its future gets a list of `RelikOutput` (annotate) or of hit lists (retrieve)."""
        if self._closed.is_set():
            raise RuntimeError("the batcher is closed")
        if not job.texts:  # nothing to read: answered at once, never queued
            job.future.set_result([])
            return job.future
        job.submitted = time.monotonic()
        self._queue.put(job)
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Stops taking jobs; the worker finishes every job already submitted, then exits."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(_STOP)
        self._worker.join(timeout)

    # ---- the worker ----

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, docs = [first], len(first.texts)
            deadline = time.monotonic() + self.max_wait
            while self.max_wait > 0 and docs < self.max_batch_docs and len(batch) < self._expected(batch):
                try:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if item is _STOP:  # read what was gathered, then stop
                    stop = True
                    break
                batch.append(item)
                docs += len(item.texts)
            self._first_answer = None
            self._run(batch)
            # a client answered first may send its next job before the call's last answer is out
            self._answered, self._answered_at = len(batch), self._first_answer or time.monotonic()
        while True:  # jobs queued before the stop marker still get their answer
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._run([item])

    def _expected(self, batch: list[Job]) -> int:
        """How many jobs to gather: those that were queued while the last call ran (taken first, the
        queue is FIFO) plus one per job it answered, whose clients are likely to send their next
        request now. So a lone client's next request is read at once, and 32 clients' requests
        are read together rather than split over calls by when they happened to arrive."""
        return sum(job.submitted < self._answered_at for job in batch) + self._answered

    def _run(self, batch: list[Job]) -> None:
        groups: dict[tuple, list[Job]] = {}
        for job in batch:
            groups.setdefault(job.key(), []).append(job)
        for jobs in groups.values():
            try:
                results = self._call(jobs)
            except Exception as e:
                if len(jobs) == 1:
                    self._fail(jobs[0], e)
                    continue
                for job in jobs:  # find the job that fails; the others still get their answer
                    try:
                        self._deliver(job, self._call([job])[0])
                    except Exception as e1:
                        self._fail(job, e1)
                continue
            for job, result in zip(jobs, results):
                self._deliver(job, result)

    def _call(self, jobs: list[Job]) -> list[list[Any]]:
        """One model call for jobs of one settings group; the results split back per job."""
        texts = [t for job in jobs for t in job.texts]
        self.stats.calls += 1
        self.stats.largest_call_docs = max(self.stats.largest_call_docs, len(texts))
        if jobs[0].kind == "retrieve":
            hits = self.relik.retrieve(texts, jobs[0].k)
        else:
            candidates = None
            if jobs[0].candidates is not None:
                candidates = [list(c) for job in jobs for c in job.candidates]
            hits = self.relik(texts, candidates, **jobs[0].settings)
        out, start = [], 0
        for job in jobs:
            out.append(hits[start : start + len(job.texts)])
            start += len(job.texts)
        return out

    def _deliver(self, job: Job, result: list[Any]) -> None:
        self._first_answer = self._first_answer or time.monotonic()
        self.stats.jobs += 1
        self.stats.documents += len(job.texts)
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled: the client is gone
            job.future.set_result(result)

    def _fail(self, job: Job, error: BaseException) -> None:
        self._first_answer = self._first_answer or time.monotonic()
        self.stats.failed_jobs += 1
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            job.future.set_exception(error)
