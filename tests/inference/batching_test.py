"""`Batcher`: gathering, settings groups, batching off, error isolation, closing (on a recording model)."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from relik_jax.core.errors import DataError
from relik_jax.inference.batching import Batcher, Job


class Recorder:
    """Stands in for `Relik`: a call (held by `gate`) upper-cases the texts and is recorded; "bad"
    fails before the record (a data error), "boom" after it (a model error)."""

    def __init__(self, seconds_per_read: float = 0.0):
        self.calls: list[tuple[list[str], object, dict]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.seconds_per_read = seconds_per_read

    def __call__(self, texts, candidates=None, **settings):
        self.gate.wait(10)
        if any("bad" in t for t in texts):
            raise DataError("bad text")
        time.sleep(self.seconds_per_read)
        self.calls.append((list(texts), candidates, settings))
        if any("boom" in t for t in texts):
            raise RuntimeError("boom")
        return [t.upper() for t in texts]

    def retrieve(self, queries, k):
        self.calls.append((list(queries), None, {"k": k}))
        return [[f"{q}:{i}" for i in range(k)] for q in queries]


def _held(model: Recorder, batcher: Batcher, jobs: list[Job]) -> list:
    """Submits `jobs` while the model is busy with a first call, so they queue up together."""
    model.gate.clear()
    first = batcher.submit(Job(["first"]))
    time.sleep(0.2)  # past the first job's gathering window: the worker waits inside its call
    futures = [batcher.submit(j) for j in jobs]
    model.gate.set()
    first.result(10)
    return [f.result(10) if f.exception(10) is None else f.exception() for f in futures]


def test_concurrent_jobs_with_equal_settings_are_one_call():
    model = Recorder()
    batcher = Batcher(model, max_batch_docs=8, max_wait_ms=50)
    jobs = [Job([f"t{i}"]) for i in range(5)] + [Job(["a", "b"], settings={"top_k": 3})]
    results = _held(model, batcher, jobs)
    assert results == [["T0"], ["T1"], ["T2"], ["T3"], ["T4"], ["A", "B"]]
    later = model.calls[1:]
    assert [c[0] for c in later] == [["t0", "t1", "t2", "t3", "t4"], ["a", "b"]]  # two settings groups
    assert later[1][2] == {"top_k": 3}
    assert batcher.stats.calls == 3 and batcher.stats.jobs == 7 and batcher.stats.largest_call_docs == 5
    batcher.close()


def test_max_batch_docs_and_candidates_split_groups():
    model = Recorder()
    batcher = Batcher(model, max_batch_docs=3, max_wait_ms=50)
    jobs = [Job([f"t{i}"]) for i in range(4)] + [Job(["c"], candidates=[["x", "y"]])]
    assert _held(model, batcher, jobs) == [["T0"], ["T1"], ["T2"], ["T3"], ["C"]]
    calls = model.calls[1:]
    assert [c[0] for c in calls] == [["t0", "t1", "t2"], ["t3"], ["c"]]  # ≤ 3 docs gathered per batch
    assert calls[2][1] == [["x", "y"]] and calls[0][1] is None
    batcher.close()


def test_no_waiting_reads_every_job_alone():
    model = Recorder()
    batcher = Batcher(model, max_batch_docs=32, max_wait_ms=0)
    assert _held(model, batcher, [Job([f"t{i}"]) for i in range(4)]) == [["T0"], ["T1"], ["T2"], ["T3"]]
    assert [c[0] for c in model.calls] == [["first"], ["t0"], ["t1"], ["t2"], ["t3"]]
    batcher.close()


def test_a_failing_job_fails_alone():
    model = Recorder()
    batcher = Batcher(model, max_batch_docs=8, max_wait_ms=50)
    results = _held(model, batcher, [Job(["ok1"]), Job(["boom"]), Job(["bad"]), Job(["ok2"])])
    assert results[0] == ["OK1"] and results[3] == ["OK2"]
    assert isinstance(results[1], RuntimeError) and isinstance(results[2], DataError)
    assert batcher.stats.failed_jobs == 2
    assert batcher.submit(Job(["after"])).result(10) == ["AFTER"]  # the worker is still serving
    batcher.close()


def test_retrieve_jobs_group_by_k_and_empty_jobs_answer_at_once():
    model = Recorder()
    batcher = Batcher(model, max_batch_docs=8, max_wait_ms=50)
    res = _held(model, batcher, [Job(["q1"], kind="retrieve", k=2), Job(["q2"], kind="retrieve", k=2),
                                 Job(["q3"], kind="retrieve", k=1)])  # fmt: skip
    assert res == [[["q1:0", "q1:1"]], [["q2:0", "q2:1"]], [["q3:0"]]]
    assert [c[0] for c in model.calls[1:]] == [["q1", "q2"], ["q3"]]
    before = len(model.calls)
    assert batcher.submit(Job([])).result(1) == [] and len(model.calls) == before
    batcher.close()


def test_close_answers_queued_jobs_then_refuses():
    model = Recorder()
    batcher = Batcher(model, max_batch_docs=1, max_wait_ms=0)
    model.gate.clear()
    futures = [batcher.submit(Job([f"t{i}"])) for i in range(3)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    model.gate.set()
    closer.join(10)
    assert [f.result(0) for f in futures] == [["T0"], ["T1"], ["T2"]]
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(Job(["late"]))
    with pytest.raises(ValueError, match="max_batch_docs"):
        Batcher(model, max_batch_docs=0)


def test_many_threads_get_their_own_answers():
    model = Recorder()
    batcher = Batcher(model, max_batch_docs=16, max_wait_ms=2)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda i: batcher.submit(Job([f"d{i}", f"e{i}"])).result(10), range(200)))
    assert got == [[f"D{i}", f"E{i}"] for i in range(200)]
    assert batcher.stats.calls < 200 and batcher.stats.documents == 400
    batcher.close()


def test_a_lone_client_never_waits_for_others():
    model = Recorder(seconds_per_read=0.1)  # a call takes time, as a model's does
    batcher = Batcher(model, max_batch_docs=32, max_wait_ms=3000)
    for i in range(4):  # one client: each request sent after the last answer
        t0 = time.perf_counter()
        assert batcher.submit(Job([f"t{i}"])).result(10) == [f"T{i}"]
        assert time.perf_counter() - t0 < 1.0, "a lone request waited for others that never come"
    # six clients, each sending its next request when the last is answered, are read together
    calls_before = len(model.calls)

    def client(c: int) -> list:
        return [batcher.submit(Job([f"c{c}-{i}"])).result(10) for i in range(5)]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        got = list(pool.map(client, range(6)))
    assert got == [[[f"C{c}-{i}"] for i in range(5)] for c in range(6)]
    sizes = [len(c[0]) for c in model.calls[calls_before:]]
    assert sum(sizes) == 30 and sizes[1:] == [6] * 4 + [5], sizes  # after the first call: all six together
    batcher.close()
