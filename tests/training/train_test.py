"""Training end to end on the bundled sample: checkpoints, export, metrics, the same losses on 1 / 8
devices and on 2 processes, kill -9 + resume, NaN stop, bad input.

Runs are in-process (`relik_jax.training.run.train`), except where a test needs fake devices, several
processes, a kill, or the command line itself."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from relik_jax.core.errors import ConfigError, RelikJaxError
from relik_jax.inference.relik import Relik
from relik_jax.reader.pipeline import ReaderPipeline
from relik_jax.retriever.dense import DenseRetriever
from relik_jax.training.config import validate
from relik_jax.training.loop import TrainingError
from relik_jax.training.reader_task import ReaderTask
from tests.training.helpers import (
    ROOT,
    config,
    env,
    free_port,
    losses,
    run_train,
    train_cmd,
    train_here,
    train_in_subprocess,
    write_small_encoder,
)

# threefry: the same dropout keys on every process count; no export (only the losses are compared)
SAME_LOSSES = ["train.steps=3", "train.rng_impl=threefry2x32", "export=False"]


def _ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> list[str]:
    """The override that trains a small random encoder (`write_small_encoder`): for the tests that
    compare runs with each other, where compiling MiniLM's training step would be most of the time."""
    return [f"model.encoder={write_small_encoder(tmp_path_factory.mktemp('small-encoder'))}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small):
    """The losses of a 3-step run on one device, the reference of the multi-device / multi-process tests."""
    w = tmp_path_factory.mktemp("reference")
    train_here(w, *SAME_LOSSES, *small)
    return losses(w)


def test_tiny_run_checkpoints_metrics_export(tmp_path, capsys):
    w = tmp_path / "w"
    result = train_here(w, "train.steps=4")
    out = capsys.readouterr().out
    assert sorted(int(p.name) for p in (w / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4]
    ls = losses(w)
    assert sorted(ls) == [1, 2, 3, 4] and all(np.isfinite(list(ls.values())))
    rows = [json.loads(x) for x in (w / "metrics.jsonl").read_text().splitlines()]
    assert any("dev/triplet_f1" in x for x in rows)
    assert list((w / "tensorboard").glob("events.out.tfevents.*"))
    assert "exported reader:" in out and "| dev |" in out
    assert result.finish.exports["reader"] == w / "export" and result.best_step is not None
    reader = ReaderPipeline.from_pretrained(w / "export", batch_size=2)
    pred = reader(words=["Rome", "is", "the", "capital", "of", "Italy", "."], candidates=["capital of", "located in"])
    assert pred.text.startswith("Rome")
    # the inference bundle loads from the workdir in one call and annotates raw text with the
    # stored relation names (this config trains RE: no retriever)
    assert "inference bundle:" in out
    relik = Relik.from_pretrained(w)
    assert relik.task == "triplet" and relik.relations and relik.retriever is None
    pred = relik("Rome is the capital of Italy .")
    assert pred.candidates == relik.relations and pred.words[0] == "Rome"


def test_same_losses_on_1_and_8_devices(tmp_path, reference, small):
    runs = [
        (tmp_path / "d4m2", [*SAME_LOSSES, *small, "mesh.data=4", "mesh.model=2"]),
        (tmp_path / "d8", [*SAME_LOSSES, *small, "mesh.data=8"]),
    ]
    train_in_subprocess(runs, devices=8)
    for w, _ in runs:
        got = losses(w)
        assert sorted(got) == sorted(reference)
        np.testing.assert_allclose([got[s] for s in reference], list(reference.values()), rtol=2e-4, err_msg=w.name)


def test_same_losses_on_2_processes(tmp_path, reference, small):
    args = [f"--config.{a}" for a in [*SAME_LOSSES, *small]] + ["--config.checkpoint.use_async=False"]
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
    got = losses(tmp_path / "two")
    assert sorted(got) == sorted(reference)
    np.testing.assert_allclose([got[s] for s in reference], list(reference.values()), rtol=2e-4)


def test_kill_9_then_resume_gives_the_uninterrupted_losses(tmp_path, caplog, small):
    args = ["train.steps=10", "checkpoint.every=4", "export=False", *small]
    train_here(tmp_path / "ref", *args)
    w = tmp_path / "killed"
    p = subprocess.Popen(
        train_cmd(w, *[f"--config.{a}" for a in args]), env=env(1), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 600
    while not (w / "checkpoints" / "4").is_dir() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (w / "checkpoints" / "8").is_dir()
    with caplog.at_level("INFO", logger="relik_jax.training.loop"):
        train_here(w, *args)
    assert "resuming from" in caplog.text and "at step 4" in caplog.text
    ref, got = losses(tmp_path / "ref"), losses(w)
    assert sorted(got) == list(range(1, 11))  # every step logged exactly once
    np.testing.assert_allclose([got[s] for s in range(5, 11)], [ref[s] for s in range(5, 11)], rtol=1e-5)


def test_nan_loss_stops_with_the_last_checkpoint_intact(tmp_path, small):
    w = tmp_path / "w"
    with pytest.raises(TrainingError, match=r"the loss became .* training stopped"):
        train_here(w, *small, "train.steps=8", "checkpoint.every=1", "optim.learning_rate=1e30",
                   "optim.head_learning_rate=1e30", "optim.warmup=0", "optim.clip_norm=0")  # fmt: skip
    with ocp.CheckpointManager(w / "checkpoints", item_names=("state", "meta")) as m:
        last = m.latest_step()
        assert last is not None and last < 8
        restored = m.restore(last, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        assert restored.meta["step"] == last


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config.train.no_such_key=1"], "no_such_key"),
        (["--config=configs/conll04.py:huge"], "unknown config variant 'huge'"),
        (["--config.data.dataset=conll04", "--config.data.dir=BAD"], "train.jsonl:2"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text('{"doc_words": ["a"]}\n{"doc_words": ["a"], "doc_span_annotations": [[0, 5]]}\n')
    args = [a.replace("BAD", str(bad)) for a in args]
    r = run_train(tmp_path / "w", *args, f"--config.data.tfds_dir={tmp_path / 'tfds'}")
    assert r.returncode == 2
    assert message in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.stderr


def test_bad_config_is_refused_before_loading(tmp_path):
    with pytest.raises(RelikJaxError, match="expected the train split at"):
        train_here(tmp_path / "w", "data.dataset=conll04", f"data.dir={tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match="not divisible by the mesh's data axis"):
        validate(config("mesh.data=8", "train.batch_size=12"), devices=8)
    with pytest.raises(ConfigError, match="holds re records; a el reader needs el records"):
        validate(config("reader.task=el"))
    with pytest.raises(ConfigError, match="unknown config variant 'huge'"):
        config(name="conll04.py:huge")


def test_retriever_pretraining_config_runs_and_exports(tmp_path, capsys):
    w = tmp_path / "w"
    train_here(w, "train.steps=2", name="blink.py:tiny")
    assert "recall_at_k" in capsys.readouterr().out
    retriever = DenseRetriever.load(w / "export")
    assert retriever.embed_questions(["Rome"]).shape == (1, 384)
    assert retriever.index is not None and len(retriever.index) > 0  # indexed by the best params


def test_default_command_says_it_uses_the_sample(tmp_path, capsys):
    train_here(tmp_path / "w", "train.steps=1", "train.batch_size=4", "reader.entity_symbols=16", name="rebel.py")
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("no data.dir given: training on the bundled sample_cie sample")
    assert "link_f1" in out


def test_train_on_train_and_dev_keeps_the_last_step_with_a_fixed_threshold(tmp_path, capsys):
    """SpERT's protocol: the recipe chosen on dev, retrained on train + dev with no dev evaluation; the
    last step's params are exported with the threshold chosen before."""
    only_train = config()
    n_train = len(ReaderTask(only_train).docs["train"])
    w = tmp_path / "w"
    result = train_here(
        w, "train.steps=3", "data.train_split=train,dev", "data.eval_split=", "eval.tune_threshold=False",
        "eval.threshold=0.65",
    )  # fmt: skip
    out = capsys.readouterr().out
    rows = [json.loads(x) for x in (w / "metrics.jsonl").read_text().splitlines()]
    assert not any(k.startswith("dev/") for x in rows for k in x)
    assert result.best_step == 3 and "final checkpoint: step 3 (no dev split" in out
    assert json.loads((w / "config.json").read_text())["data"]["train_split"] == "train,dev"
    reader = ReaderPipeline.from_pretrained(w / "export")
    assert reader.model.config.threshold == pytest.approx(0.65)
    dev = ReaderTask(config("data.train_split=dev", "data.eval_split=")).docs["train"]
    both = ReaderTask(config("data.train_split=train,dev", "data.eval_split=")).docs["train"]
    assert len(both) == n_train + len(dev) and dev and [d.text for d in both[n_train:]] == [d.text for d in dev]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.train_split=train,dev"], "is also trained on"),
        (["data.eval_split="], "eval.tune_threshold chooses the relation threshold on dev"),
        (["data.train_split= ,"], "names no split"),
        (["eval.threshold=1.5"], "eval.threshold must be in"),
    ],
)
def test_train_and_dev_splits_are_checked(overrides, message):
    c = config(*overrides)
    with c.unlocked():
        c.eval.tune_threshold = True
    with pytest.raises(ConfigError, match=message):
        validate(c)


def test_the_report_table_says_when_no_split_was_evaluated():
    from relik_jax.training.run import format_table

    assert format_table({}).startswith("(no split evaluated")
    table = format_table({"dev": {"f1": 0.5}, "test": {"f1": 0.25, "precision": 0.5}})
    assert table.splitlines() == [
        "| split | f1 | precision |",
        "|---|---|---|",
        "| dev | 50.00 |  |",
        "| test | 25.00 | 50.00 |",
    ]
