"""`python -m relik_jax.annotate` and `python -m relik_jax.index` as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from relik_jax.inference.relik import Relik
from relik_jax.retrieval.retriever import DenseRetriever

WORDS = ["Paris", "Rome", "Berlin", "the", "city", "river", "of", "is", "a", "capital", "Seine", "in", "France", "."]


def _cli(module, *args, timeout=600):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, fixtures_dir):
    """A bundle: the fixture EL reader + a tiny-bert retriever over a few titles."""
    folder = tmp_path_factory.mktemp("bundle")
    reader = Relik.from_pretrained(fixtures_dir / "models" / "relik-reader-span-tiny", batch_size=16, top_k=4).reader
    retriever = DenseRetriever.from_encoder(fixtures_dir / "models" / "tiny-bert", batch_size=16)
    titles = ["Paris", "Rome", "Berlin", "Seine", "France", "Italy", "Germany"]
    retriever.build_index(titles, titles, progress=False)
    return Relik(reader, retriever, top_k=4).save_pretrained(folder / "b")


def _docs(n, seed=0):
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) for _ in range(n)]


def test_annotate_txt_with_bad_lines(tmp_path, bundle):
    inp = tmp_path / "in.txt"
    inp.write_bytes(b"Paris is the capital of France .\n\n   \nRome \xff\xfe is old .\nBerlin is a city .")
    out = tmp_path / "out.jsonl"
    r = _cli("relik_jax.annotate", bundle, inp, out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert re.search(r"in\.txt:4: invalid UTF-8 at byte 5 of the line; skipped", r.stderr)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["text"] == "Paris is the capital of France ." and lines[0]["candidates"]
    assert lines[1]["text"] == "" and lines[1]["spans"] == [] and lines[2]["text"] == "   "
    assert "error" in lines[3] and "text" not in lines[3]
    assert lines[4]["text"] == "Berlin is a city ."  # no final newline: still read
    # nothing left to do: a rerun reports it and writes nothing
    again = _cli("relik_jax.annotate", bundle, inp, out, "--no-progress")
    assert again.returncode == 0 and "already holds all 5" in again.stderr
    assert len(out.read_text().splitlines()) == 5


def test_annotate_jsonl_given_candidates(tmp_path, bundle):
    inp = tmp_path / "in.jsonl"
    rows = [{"id": "a", "text": "Paris is in France .", "candidates": ["Paris", "France"]},
            {"id": "b", "text": "Rome .", "candidates": ["Rome"]}, "not an object", {"id": "d"}]  # fmt: skip
    inp.write_text("\n".join(json.dumps(x) for x in rows) + "\n{broken\n")
    out = tmp_path / "out.jsonl"
    r = _cli("relik_jax.annotate", bundle, inp, out, "--no-progress", "--with-windows")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a", "b", 3, "d", 5]
    assert lines[0]["candidates"] == ["Paris", "France"] and lines[0]["windows"][0]["text"] == "Paris is in France ."
    assert [("error" in x) for x in lines] == [False, False, True, True, True]
    assert "no string field 'text'" in lines[3]["error"] and "invalid JSON" in lines[4]["error"]


def test_annotate_bad_model_and_paths(tmp_path, fixtures_dir, bundle):
    inp = tmp_path / "in.txt"
    inp.write_text("Paris .\n")
    r = _cli("relik_jax.annotate", fixtures_dir / "models" / "tiny-bert", inp, tmp_path / "o.jsonl")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "not a model folder relik_jax can load" in r.stderr and "Traceback" not in r.stderr
    r = _cli("relik_jax.annotate", bundle, tmp_path / "missing.txt", tmp_path / "o.jsonl")
    assert r.returncode == 2 and "is not a file" in r.stderr
    (tmp_path / "other.jsonl").write_text('{"something": 1}\n')
    r = _cli("relik_jax.annotate", bundle, inp, tmp_path / "other.jsonl")
    assert r.returncode == 2 and "not an annotate output" in r.stderr
    assert (tmp_path / "other.jsonl").read_text() == '{"something": 1}\n'  # untouched


def test_annotate_killed_and_restarted_writes_every_document_once(tmp_path, bundle):
    n = 1500
    inp = tmp_path / "in.txt"
    texts = _docs(n)
    inp.write_text("\n".join(texts) + "\n")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "relik_jax.annotate", str(bundle), str(inp), str(out), "--no-progress", "--chunk-docs", "16"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_bytes().count(b"\n")
    assert 0 < partial < n, "the run was not killed half way"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["line"] for x in lines] == list(range(1, n + 1))
    assert [x["text"] for x in lines] == texts


def test_annotate_10k_documents_flat_memory(tmp_path, bundle):
    """Peak RSS after 10,000 documents stays within 10% (+30 MB) of the peak after 1,000."""
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(_docs(10_000, seed=1)) + "\n")
    r = _cli("relik_jax.annotate", bundle, inp, tmp_path / "out.jsonl", "--no-progress", timeout=1800)
    assert r.returncode == 0, r.stderr
    rss = {
        int(a.replace(",", "")): float(b)
        for a, b in re.findall(r"peak RSS after ([\d,]+) documents: (\d+) MB", r.stderr)
    }
    print(rss, r.stderr.strip().splitlines()[-1])
    assert set(rss) == {1000, 10_000}
    assert rss[10_000] <= 1.10 * rss[1000] + 30
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 10_000


def test_index_build_add_and_retrieve(tmp_path, fixtures_dir):
    p1 = tmp_path / "p1.jsonl"
    p1.write_text("\n".join(json.dumps({"id": t, "title": t, "text": f"the city of {t}"}) for t in ["Paris", "Rome"]))
    enc = fixtures_dir / "models" / "tiny-bert"
    r = _cli("relik_jax.index", "build", p1, tmp_path / "ret", "--encoder", enc)
    assert r.returncode == 0, r.stderr
    p2 = tmp_path / "p2.tsv"
    p2.write_text("Berlin\tthe capital of Germany\n")
    r = _cli("relik_jax.index", "add", tmp_path / "ret", p2)
    assert r.returncode == 0 and "(2 → 3)" in r.stderr, r.stderr
    relik = Relik.from_pretrained(tmp_path / "ret")
    assert relik.task == "retrieval"
    hit = relik("Berlin <def> the capital of Germany", top_k=1).windows[0].retrieved[0]
    assert hit.id == "Berlin" and hit.text == "Berlin <def> the capital of Germany"
    r = _cli("relik_jax.index", "add", tmp_path / "ret", p2)
    assert r.returncode == 2 and "already in the index" in r.stderr
    assert len(DenseRetriever.load(tmp_path / "ret").index) == 3  # unchanged by the refused add
    r = _cli("relik_jax.index", "build", p1, tmp_path / "ret", "--encoder", enc)
    assert r.returncode == 2 and "not empty" in r.stderr
