"""Annotating files: the library (`relik_jax.inference.annotate`) in-process, and `python -m relik_jax.annotate`
where the command line itself is tested (one-line errors, a kill -9 and restart, memory over 10k documents)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from relik_jax.cli import annotate as annotate_cli
from relik_jax.core.errors import ConfigError, DataError
from relik_jax.inference.annotate import Fields, annotate_file, open_job
from relik_jax.inference.relik import Relik
from relik_jax.retriever.dense import DenseRetriever

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


def _annotate(bundle, inp, out, *args):
    """The command line's work, in-process (`relik_jax.cli.annotate.main`)."""
    return annotate_cli.main([str(bundle), str(inp), str(out), "--no-progress", *map(str, args)])


def test_annotate_txt_with_bad_lines(tmp_path, bundle, capsys):
    inp = tmp_path / "in.txt"
    inp.write_bytes(b"Paris is the capital of France .\n\n   \nRome \xff\xfe is old .\nBerlin is a city .")
    out = tmp_path / "out.jsonl"
    assert _annotate(bundle, inp, out) == 0
    assert re.search(r"in\.txt:4: invalid UTF-8 at byte 5 of the line; skipped", capsys.readouterr().err)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["text"] == "Paris is the capital of France ." and lines[0]["candidates"]
    assert lines[1]["text"] == "" and lines[1]["spans"] == [] and lines[2]["text"] == "   "
    assert "error" in lines[3] and "text" not in lines[3]
    assert lines[4]["text"] == "Berlin is a city ."  # no final newline: still read
    # nothing left to do: a rerun reports it and writes nothing
    assert _annotate(bundle, inp, out) == 0
    assert "already holds all 5" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 5


def test_annotate_jsonl_given_candidates(tmp_path, bundle):
    inp = tmp_path / "in.jsonl"
    rows = [{"id": "a", "text": "Paris is in France .", "candidates": ["Paris", "France"]},
            {"id": "b", "text": "Rome .", "candidates": ["Rome"]}, "not an object", {"id": "d"}]  # fmt: skip
    inp.write_text("\n".join(json.dumps(x) for x in rows) + "\n{broken\n")
    out = tmp_path / "out.jsonl"
    assert _annotate(bundle, inp, out, "--with-windows") == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a", "b", 3, "d", 5]
    assert lines[0]["candidates"] == ["Paris", "France"] and lines[0]["windows"][0]["text"] == "Paris is in France ."
    assert [("error" in x) for x in lines] == [False, False, True, True, True]
    assert "no string field 'text'" in lines[3]["error"] and "invalid JSON" in lines[4]["error"]


def test_annotate_resumes_after_a_cut_line(tmp_path, bundle):
    """What a killed run leaves (whole lines and a cut one) is completed: every line once, in order."""
    inp = tmp_path / "in.txt"
    texts = _docs(12)
    inp.write_text("\n".join(texts) + "\n")
    relik = Relik.from_pretrained(bundle)
    full = tmp_path / "full.jsonl"
    annotate_file(relik, open_job(inp, full), progress=False)
    out = tmp_path / "out.jsonl"
    kept = full.read_bytes().split(b"\n")[:5]
    out.write_bytes(b"\n".join(kept) + b"\n" + b'{"line": 6, "id": 6, "te')  # 5 lines, then a cut one
    job = open_job(inp, out, chunk_docs=4)
    assert (job.skip, job.total) == (5, 12) and not job.done
    stats = annotate_file(relik, job, fields=Fields(), progress=False)
    assert (stats.written, stats.errors, stats.skipped) == (7, 0, 5)
    assert out.read_text() == full.read_text()


def test_annotate_bad_model_and_paths(tmp_path, fixtures_dir, bundle):
    inp = tmp_path / "in.txt"
    inp.write_text("Paris .\n")
    r = _cli("relik_jax.annotate", fixtures_dir / "models" / "tiny-bert", inp, tmp_path / "o.jsonl")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "not a model folder relik_jax can load" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(DataError, match="is not a file"):
        _annotate(bundle, tmp_path / "missing.txt", tmp_path / "o.jsonl")
    with pytest.raises(ConfigError, match="OUTPUT is the INPUT file"):
        _annotate(bundle, inp, inp)
    (tmp_path / "other.jsonl").write_text('{"something": 1}\n')
    with pytest.raises(DataError, match="not an annotate output"):
        _annotate(bundle, inp, tmp_path / "other.jsonl")
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


@pytest.mark.slow  # a 10,000-document memory check (~45 s)
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
