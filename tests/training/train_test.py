"""`python -m relik_jax.train` end to end on the bundled sample: checkpoints, export, metrics, the
same losses on 1 / 8 devices and on 2 processes, kill -9 + resume, NaN stop, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from tests.training.helpers import ROOT, env, free_port, losses, run_train, train_cmd


def _ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, r.stderr[-3000:]


def test_tiny_run_checkpoints_metrics_export(tmp_path):
    r = run_train(tmp_path / "w", "--config.train.steps=4")
    _ok(r)
    w = tmp_path / "w"
    assert sorted(int(p.name) for p in (w / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]
    ls = losses(w)
    assert sorted(ls) == [1, 2, 3, 4] and all(np.isfinite(list(ls.values())))
    rows = [json.loads(x) for x in (w / "metrics.jsonl").read_text().splitlines()]
    assert any("dev/triplet_f1" in x for x in rows)
    assert list((w / "tensorboard").glob("events.out.tfevents.*"))
    assert "exported reader:" in r.stdout and "| dev |" in r.stdout
    from relik_jax.inference.reader import ReaderPipeline

    reader = ReaderPipeline.from_pretrained(w / "export", batch_size=2)
    out = reader(words=["Rome", "is", "the", "capital", "of", "Italy", "."], candidates=["capital of", "located in"])
    assert out.text.startswith("Rome")
    # the inference bundle loads from the workdir in one call and annotates raw text with the
    # stored relation names (this config trains RE: no retriever)
    from relik_jax.inference.relik import Relik

    assert "inference bundle:" in r.stdout
    relik = Relik.from_pretrained(w)
    assert relik.task == "triplet" and relik.relations and relik.retriever is None
    out = relik("Rome is the capital of Italy .")
    assert out.candidates == relik.relations and out.words[0] == "Rome"


def test_same_losses_on_1_and_8_devices(tmp_path):
    args = ["--config.train.steps=3", "--config.train.rng_impl=threefry2x32"]
    _ok(run_train(tmp_path / "one", *args))
    _ok(run_train(tmp_path / "d4m2", *args, "--config.mesh.data=4", "--config.mesh.model=2", devices=8))
    _ok(run_train(tmp_path / "d8", *args, "--config.mesh.data=8", devices=8))
    ref = losses(tmp_path / "one")
    for name in ("d4m2", "d8"):
        got = losses(tmp_path / name)
        assert sorted(got) == sorted(ref)
        np.testing.assert_allclose([got[s] for s in ref], list(ref.values()), rtol=2e-4, err_msg=name)


def test_same_losses_on_2_processes(tmp_path):
    args = ["--config.train.steps=3", "--config.train.rng_impl=threefry2x32", "--config.checkpoint.use_async=False"]
    _ok(run_train(tmp_path / "one", *args))
    port = free_port()
    dist = ["--config.distributed.initialize=True", f"--config.distributed.coordinator=localhost:{port}",
            "--config.distributed.num_processes=2"]  # fmt: skip
    procs = [
        subprocess.Popen(
            train_cmd(tmp_path / "two", *args, *dist, f"--config.distributed.process_id={i}"),
            env=env(1),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert "2 processes" in outs[0]
    ref, got = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(got) == sorted(ref)
    np.testing.assert_allclose([got[s] for s in ref], list(ref.values()), rtol=2e-4)


def test_kill_9_then_resume_gives_the_uninterrupted_losses(tmp_path):
    args = ["--config.train.steps=10", "--config.checkpoint.every=4"]
    _ok(run_train(tmp_path / "ref", *args))
    w = tmp_path / "killed"
    p = subprocess.Popen(
        train_cmd(w, *args), env=env(1), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 600
    while not (w / "checkpoints" / "4").is_dir() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (w / "checkpoints" / "8").is_dir()
    r = run_train(w, *args)
    _ok(r)
    assert "resuming from" in r.stderr and "at step 4" in r.stderr
    ref, got = losses(tmp_path / "ref"), losses(w)
    assert sorted(got) == list(range(1, 11))  # every step logged exactly once
    np.testing.assert_allclose([got[s] for s in range(5, 11)], [ref[s] for s in range(5, 11)], rtol=1e-5)


def test_nan_loss_stops_with_the_last_checkpoint_intact(tmp_path):
    w = tmp_path / "w"
    r = run_train(w, "--config.train.steps=8", "--config.checkpoint.every=1", "--config.optim.learning_rate=1e30",
                  "--config.optim.head_learning_rate=1e30", "--config.optim.warmup=0", "--config.optim.clip_norm=0")  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    assert "error: the loss became" in r.stderr and "training stopped" in r.stderr and "Traceback" not in r.stderr
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(w / "checkpoints", item_names=("state", "meta")) as m:
        last = m.latest_step()
        assert last is not None and last < 8
        restored = m.restore(last, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        assert restored.meta["step"] == last


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config.train.no_such_key=1"], "no_such_key"),
        (["--config.data.dataset=conll04", "--config.data.dir=MISSING"], "expected the train split at"),
        (["--config.mesh.data=8", "--config.train.batch_size=12"], "not divisible by the mesh's data axis"),
        (["--config.data.dataset=conll04", "--config.data.dir=BAD"], "train.jsonl:2"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text('{"doc_words": ["a"]}\n{"doc_words": ["a"], "doc_span_annotations": [[0, 5]]}\n')
    args = [a.replace("MISSING", str(tmp_path / "missing")).replace("BAD", str(bad)) for a in args]
    r = run_train(tmp_path / "w", *args, f"--config.data.tfds_dir={tmp_path / 'tfds'}", devices=8)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_retriever_pretraining_config_runs_and_exports(tmp_path):
    w = tmp_path / "w"
    r = run_train(w, "--config.train.steps=2", config="blink.py:tiny")
    _ok(r)
    assert "recall_at_k" in r.stdout
    from relik_jax.retrieval.retriever import DenseRetriever

    retriever = DenseRetriever.load(w / "export", with_index=False)
    assert retriever.embed_questions(["Rome"]).shape == (1, 384)


def test_default_command_says_it_uses_the_sample(tmp_path):
    r = run_train(tmp_path / "w", "--config.train.steps=1", "--config.train.batch_size=4",
                  "--config.reader.entity_symbols=16", config="rebel.py")  # fmt: skip
    _ok(r)
    assert r.stdout.splitlines()[0].startswith("no data.dir given: training on the bundled sample_cie sample")
    assert "link_f1" in r.stdout
