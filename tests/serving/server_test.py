"""`python -m relik_jax.serve`: the real server in a subprocess on 127.0.0.1, called over HTTP (httpx).

Outputs equal `Relik(...)` in-process; bad input gets its status and message; a model error fails its
own request only; SIGTERM lets a request in flight finish. One test function per server process (each
start compiles, and pytest-xdist would start a module's server once per worker).
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from relik_jax.data.jsonl import read_jsonl
from relik_jax.inference.relik import Relik
from relik_jax.retriever.dense import DenseRetriever
from relik_jax.serving.process import ServerProcess

httpx = pytest.importorskip("httpx", reason="the server tests need httpx (the test extra)")
pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="the server needs the serve extra: pip install -e '.[serve]'")

# smaller reader rows and queries than the defaults: fewer buckets to compile at start-up
LOAD = {"max_length": 128, "question_max_length": 64}
SERVE_ARGS = ["--max-length", "128", "--question-max-length", "64", "--log-level", "warning"]
FAULT_SERVER = Path(__file__).with_name("fault_server.py")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, fixtures_dir):
    """An EL bundle (fixture reader + a tiny-bert retriever over the fixture candidates) and an RE
    bundle (fixture triplet reader with 5 stored relation names); the texts of each."""
    root = tmp_path_factory.mktemp("bundles")
    span = read_jsonl(fixtures_dir / "pipeline" / "span_input.jsonl")
    passages = list(dict.fromkeys(c for i in span for c in i["candidates"]))
    retriever = DenseRetriever.from_encoder(fixtures_dir / "models" / "tiny-bert", batch_size=16)
    retriever.build_index([str(i) for i in range(len(passages))], passages, progress=False)
    el = Relik.from_pretrained(fixtures_dir / "models" / "relik-reader-span-tiny", batch_size=4, top_k=5)
    el.retriever = retriever
    el.save_pretrained(root / "el")
    triplet = read_jsonl(fixtures_dir / "pipeline" / "triplet_input.jsonl")
    re_ = Relik.from_pretrained(fixtures_dir / "models" / "relik-reader-triplet-tiny", batch_size=4)
    re_.relations = triplet[0]["candidates"][:5]
    re_.save_pretrained(root / "re")
    return {
        "el": root / "el",
        "re": root / "re",
        "el_texts": [i["text"] for i in span],
        "el_candidates": [i["candidates"] for i in span],
        "re_texts": [i["text"] for i in triplet],
        "cache": str(root / "xla"),
    }


def _post(url: str, body, **kw) -> httpx.Response:
    return httpx.post(url, json=body, timeout=120, **kw)


def _official(outs, task, **kw):
    return [o.to_official_dict(task, **kw) for o in outs]


@pytest.mark.slow  # the EL server compiles every EL bucket (~2 min); the RE server test covers the server in the default run
def test_el_server_equals_relik_and_refuses_bad_input(bundles):
    relik = Relik.from_pretrained(bundles["el"], **LOAD)
    texts, cands = bundles["el_texts"], bundles["el_candidates"]
    args = [*SERVE_ARGS, "--max-wait-ms", "50", "--max-batch-docs", "8", "--max-text-chars", "2000",
            "--compilation-cache", bundles["cache"]]  # fmt: skip
    server = ServerProcess(bundles["el"], args).start()
    try:
        # the port opens after the model loads; /health answers while /ready waits for the warm-up
        while server.get("/health")[0] != 200:
            assert server.proc.poll() is None, server.log()
            time.sleep(0.1)
        if server.get("/ready")[0] == 503:
            r = _post(server.url + "/annotate", {"text": texts[0]})
            assert r.status_code == 503 and "warming up" in r.json()["detail"]
        server.wait_ready()
        url = server.url

        # concurrent one-text requests (gathered by the batcher) = Relik in-process, text by text
        expect = _official(relik(texts), "span")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda t: _post(url + "/annotate", {"text": t}), texts))
        assert [r.status_code for r in got] == [200] * len(texts)
        assert [r.json() for r in got] == expect
        assert sum(len(d["spans"]) for d in expect) > 0
        stats = httpx.get(url + "/info").json()["stats"]
        assert stats["jobs"] == len(texts) and stats["calls"] < len(texts), stats  # requests were read together
        assert _post(url + "/annotate", {"text": texts}).json() == expect  # a list → a list
        info = httpx.get(url + "/info").json()
        assert info["compilations_after_ready"] == 0, "a default-settings request compiled a new shape"
        assert info["task"] == "span" and info["index_size"] == len(relik.retriever.index) and info["ready"]
        assert info["warmup"]["programs"]["reader"] > 0

        # per-request settings and given candidates, as in Relik.__call__
        settings = {"top_k": 3, "window_size": 16, "window_stride": 8, "annotation_type": "word"}
        r = _post(url + "/annotate", {"text": texts[:3], **settings, "with_windows": True})
        assert r.json() == _official(relik(texts[:3], **settings), "span", with_windows=True)
        r = _post(url + "/annotate", {"text": texts[:2], "candidates": cands[:2]})
        assert r.json() == _official(relik(texts[:2], cands[:2]), "span")
        r = _post(url + "/retrieve", {"text": [texts[0][:80], ""], "k": 4})
        hits = relik.retrieve([texts[0][:80], ""], 4)
        assert r.json() == [[{"id": h.id, "text": h.text, "score": h.score} for h in hs] for hs in hits]
        assert len(r.json()[0]) == 4 and r.json()[1] == []

        # bad input: status and message
        def refused(body, status):
            resp = _post(url + "/annotate", body)
            assert resp.status_code == status, (body, resp.text)
            return resp.json()["detail"]

        r = httpx.post(url + "/annotate", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
        detail = refused({"text": 5}, 422)
        assert {tuple(d["loc"][:2]) for d in detail} == {("body", "text")}
        detail = refused({"text": "a", "top_k": "five"}, 422)
        assert detail[0]["loc"][:2] == ["body", "top_k"]
        assert refused({"text": "a", "bogus": 1}, 422)[0]["loc"] == ["body", "bogus"]
        assert refused({"text": "a", "top_k": 0}, 422) == "top_k must be >= 1, got 0"
        assert refused({"text": "a", "relation_threshold": 1.5}, 422) == "relation_threshold must be in [0, 1], got 1.5"
        assert refused({"text": "a", "window_size": 4}, 422) == "window_stride 16 > window_size 4 would skip words"
        assert refused({"text": ["a", "b"], "candidates": [["x"]]}, 422) == "1 candidate lists for 2 texts"
        assert "2,001 characters" in refused({"text": "x" * 2001}, 413)
        assert "2,001 characters" in refused({"text": ["ok", "x" * 2001]}, 413)
        assert _post(url + "/annotate", {"text": ""}).json() == {
            "text": "",
            "tokens": [],
            "spans": [],
            "candidates": [],
        }
        assert _post(url + "/annotate", {"text": []}).json() == []
        r = _post(url + "/retrieve", {"text": "x", "k": 0})
        assert r.status_code == 422 and r.json()["detail"] == "k must be >= 1, got 0"
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        assert "/annotate" in httpx.get(url + "/openapi.json").json()["paths"]
        assert httpx.get(url + "/docs").status_code == 200
    finally:
        assert server.stop() == -signal.SIGTERM, server.log()[-3000:]  # uvicorn re-raises it once shut down
        assert "stopped after answering every request" in server.log()


def test_re_server_equals_relik(bundles):
    relik = Relik.from_pretrained(bundles["re"], **LOAD)
    texts = bundles["re_texts"]
    with ServerProcess(bundles["re"], [*SERVE_ARGS, "--no-warmup", "--compilation-cache", bundles["cache"]]) as server:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda t: _post(server.url + "/annotate", {"text": t}).json(), texts))
        expect = _official(relik(texts), "triplet")
        assert got == expect
        assert sum(len(d["triplets"]) for d in expect) > 0, "the fixture reader finds no triplet: nothing compared"
        rels = relik.relations[:3]
        r = _post(server.url + "/annotate", {"text": texts[:2], "candidates": rels, "relation_threshold": 0.3})
        assert r.json() == _official(relik(texts[:2], rels, relation_threshold=0.3), "triplet")
        info = httpx.get(server.url + "/info").json()
        assert info["task"] == "triplet" and info["relations"] == relik.relations and info["index_size"] is None
        r = _post(server.url + "/retrieve", {"text": "x"})
        assert r.status_code == 400 and r.json()["detail"] == "this model has no retriever"


def test_model_error_fails_its_request_only_and_sigterm_finishes_requests(bundles):
    args = [*SERVE_ARGS, "--no-warmup", "--max-wait-ms", "200", "--compilation-cache", bundles["cache"]]
    server = ServerProcess(bundles["el"], args, command=[sys.executable, str(FAULT_SERVER)])
    with server:
        text = bundles["el_texts"][0]
        # a failing request and a good one gathered into one batch: only the failing one fails
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            bad = pool.submit(_post, server.url + "/annotate", {"text": "<<boom>> " + text})
            good = pool.submit(_post, server.url + "/annotate", {"text": text})
            bad, good = bad.result(), good.result()
        assert bad.status_code == 500
        rid = bad.headers["x-request-id"]
        assert rid in bad.json()["detail"] and "internal error" in bad.json()["detail"]
        assert good.status_code == 200 and good.json()["text"] == text
        r = _post(server.url + "/annotate", {"text": text}, headers={"x-request-id": "client-id-7"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "client-id-7"
        log = server.log()
        assert f"request {rid} failed" in log and "RuntimeError: injected model failure" in log
        info = httpx.get(server.url + "/info").json()
        assert info["stats"]["failed_jobs"] == 1 and info["stats"]["jobs"] >= 2

        # SIGTERM while a request is in flight: it is answered, then the process exits 0
        answer: dict = {}
        slow = threading.Thread(
            target=lambda: answer.update(r=_post(server.url + "/annotate", {"text": "<<slow>> hi"}))
        )
        slow.start()
        time.sleep(1.0)
        assert server.stop(timeout=60) == -signal.SIGTERM
        slow.join(30)
        assert answer["r"].status_code == 200 and answer["r"].json()["text"] == "<<slow>> hi"
        assert "stopped after answering every request" in server.log()
        assert server.get("/health")[0] == 0  # nothing listens any more


def test_bad_model_folder_is_one_line_and_exit_2(tmp_path):
    server = ServerProcess(tmp_path / "missing", ["--log-level", "warning"]).start()
    assert server.proc.wait(120) == 2
    lines = [ln for ln in server.log().splitlines() if ln.startswith("error:")]
    assert lines and "does not exist" in lines[0] and "Traceback" not in server.log()


def test_ray_serve_replicas(bundles):
    pytest.importorskip("ray.serve", reason="Ray Serve is the `ray` extra: pip install -e '.[ray]'")
    relik = Relik.from_pretrained(bundles["el"], **LOAD)
    text = bundles["el_texts"][0]
    args = [*SERVE_ARGS, "--ray-replicas", "2", "--no-warmup", "--compilation-cache", bundles["cache"]]
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    env = {"RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp}
    with ServerProcess(bundles["el"], args, env=env, ready_timeout=300) as server:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda _: _post(server.url + "/annotate", {"text": text}).json(), range(8)))
        assert got == [relik(text).to_official_dict("span")] * 8
        assert json.loads(httpx.get(server.url + "/info").text)["task"] == "span"
