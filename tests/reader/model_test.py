"""Reader heads vs the official relik 1.0.7 outputs on the fixture readers (`official` tests)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relik_jax.official.batches import from_official
from relik_jax.reader import programs
from relik_jax.reader.model import Reader
from tests.reader.helpers import fixture_batches, valid_rows


def as_jnp(batch):
    return jax.tree.map(jnp.asarray, batch)


TASKS = ["span", "triplet"]


@pytest.fixture(scope="module", params=TASKS)
def fixture_reader(request, fixtures_dir):
    from relik_jax.reader.checkpoint import load_reader

    task = request.param
    model, params, tok = load_reader(fixtures_dir / "models" / f"relik-reader-{task}-tiny")
    return task, model, params, tok


def test_official_reader_eval_parity(fixture_reader, fixtures_dir):
    """Hidden states, start/end/link/relation logits and every decision equal the official ones."""
    task, model, params, _ = fixture_reader
    n_batches = 0
    for raw in fixture_batches(fixtures_dir, f"{task}_eval"):
        batch = as_jnp(from_official(raw, task))
        out = programs.predict_spans(model, params, batch, max_starts=64, max_entities=128, official_decisions=True)
        mask = raw["attention_mask"].astype(bool)
        assert np.abs(np.asarray(out["features"]) - raw["last_hidden_state"])[mask].max() <= 1e-4
        np.testing.assert_allclose(np.asarray(out["start_logits"]), raw["ned_start_logits"], atol=1e-4, rtol=0)
        starts, valid = np.asarray(out["starts"]), np.asarray(out["start_valid"])
        assert [(b, starts[b, k]) for b, k in zip(*np.nonzero(valid))] == list(
            zip(raw["ned_end_rows_batch"], raw["ned_end_rows_start"])
        )
        np.testing.assert_allclose(
            valid_rows(np.asarray(out["end_logits"]), valid), raw["ned_end_logits"], atol=1e-4, rtol=0
        )
        ev = np.asarray(out["ent_valid"])
        count = raw["entity_count"]
        assert (ev.sum(1) == count).all()
        e = raw["entity_start"].shape[1]
        ref_valid = np.arange(e)[None] < count[:, None]
        assert np.array_equal(valid_rows(np.asarray(out["ent_start"]), ev), raw["entity_start"][ref_valid])
        assert np.array_equal(valid_rows(np.asarray(out["ent_end"]), ev), raw["entity_end"][ref_valid])
        if task == "span":
            c = raw["ed_logits"].shape[2]
            logits = np.asarray(out["link_logits"])[:, :e, :c]
            np.testing.assert_allclose(logits[ref_valid], raw["ed_logits"][ref_valid], atol=1e-4, rtol=1e-6)
            assert np.array_equal(np.asarray(out["link_column"])[:, :e][ref_valid], raw["ed_predictions"][ref_valid])
        else:
            vectors = model.apply({"params": params}, out["features"], out["ent_start"][:, :e], out["ent_end"][:, :e],
                                  batch["symbol_pos"], method=Reader.relation_vectors)  # fmt: skip
            rel = programs.relation_decisions(
                model, params, *vectors, out["ent_valid"][:, :e], batch["symbol_valid"],
                threshold=float(raw["meta_threshold"]) if "meta_threshold" in raw else 0.5,
            )  # fmt: skip
            cells = ref_valid[:, :, None] & ref_valid[:, None, :]
            np.testing.assert_allclose(
                np.asarray(rel["relation_logits"])[cells], raw["re_logits"][cells], atol=1e-4, rtol=0
            )
            assert np.array_equal(np.asarray(rel["relation_pred"])[cells], raw["re_predictions"][cells])
            assert int(np.asarray(rel["relation_pred"]).sum()) > 0
        n_batches += 1
    assert n_batches >= 2


def test_official_reader_training_losses(fixture_reader, fixtures_dir):
    task, model, params, _ = fixture_reader
    names = {"loss": "loss", "start_loss": "ned_start_loss", "end_loss": "ned_end_loss"}
    names.update({"link_loss": "ed_loss"} if task == "span" else {"relation_loss": "re_loss"})
    for raw in fixture_batches(fixtures_dir, f"{task}_train"):
        losses = programs.reader_losses(model, params, as_jnp(from_official(raw, task)))
        for ours, theirs in names.items():
            assert abs(float(losses[ours]) - float(raw[theirs])) <= 1e-4, (
                ours,
                float(losses[ours]),
                float(raw[theirs]),
            )
        batch = from_official(raw, task)
        out = model.apply({"params": params}, as_jnp(batch))  # teacher-forced logits
        start = np.asarray(out["start_logits"])
        if task == "span":  # the span model masks its start logits in training too
            start = np.where(batch["prediction_mask"][..., None].astype(bool), -1e30, start)
        np.testing.assert_allclose(start, raw["ned_start_logits"], atol=1e-4, rtol=0)
        end = valid_rows(np.asarray(out["end_logits"]), batch["gold_start_valid"])
        ref_end = raw["ned_end_logits"]
        finite = ref_end > -1e29
        np.testing.assert_allclose(end[finite], ref_end[finite], atol=1e-4, rtol=0)
        if task == "span":
            v = batch["gold_ent_valid"]
            c = raw["ed_logits"].shape[2]
            np.testing.assert_allclose(
                np.asarray(out["link_logits"])[:, : v.shape[1], :c][v],
                raw["ed_logits"][:, : v.shape[1]][v],
                atol=1e-4,
                rtol=1e-6,
            )
        else:
            e = raw["re_logits"].shape[1]
            v = batch["gold_ent_valid"][:, :e]
            cells = v[:, :, None] & v[:, None, :]  # padded entities are meaningless in the official output
            np.testing.assert_allclose(
                np.asarray(out["relation_logits"])[:, :e, :e][cells], raw["re_logits"][cells], atol=1e-4, rtol=0
            )


def test_sound_decisions_differ_only_where_documented(fixtures_dir):
    """Default decisions: ends never precede starts, `[CLS]` is never a link; elsewhere = official."""
    from relik_jax.reader.checkpoint import load_reader

    model, params, _ = load_reader(fixtures_dir / "models" / "relik-reader-span-tiny")
    changed_end = changed_link = same = 0
    for raw in fixture_batches(fixtures_dir, "span_eval"):
        batch = as_jnp(from_official(raw, "span"))
        off = programs.predict_spans(model, params, batch, max_starts=64, max_entities=64, official_decisions=True)
        ours = programs.predict_spans(model, params, batch, max_starts=64, max_entities=64)
        v = np.asarray(ours["ent_valid"])
        s, e_off, e_ours = (np.asarray(x)[v] for x in (off["ent_start"], off["ent_end"], ours["ent_end"]))
        assert (e_ours >= s).all()
        before = e_off < s
        assert np.array_equal(e_ours[~before], e_off[~before])
        changed_end += int(before.sum())
        col_off, col_ours = np.asarray(off["link_column"])[v], np.asarray(ours["link_column"])[v]
        assert (col_ours >= 1).all()
        keep = ~before & (col_off >= 1)
        assert np.array_equal(col_ours[keep], col_off[keep])
        changed_link += int((~before & (col_off == 0)).sum())
        same += int(keep.sum())
    assert same > 10 and changed_end > 0  # the random fixture heads do produce ends before starts


def test_start_cap_overflow_is_counted(fixture_reader, fixtures_dir):
    task, model, params, _ = fixture_reader
    raw = next(fixture_batches(fixtures_dir, f"{task}_eval"))
    out = programs.predict_spans(model, params, as_jnp(from_official(raw, task)), max_starts=1, max_entities=2)
    n_starts = int((np.asarray(raw["ned_start_logits"])[..., 1] > np.asarray(raw["ned_start_logits"])[..., 0]).sum())
    assert int(np.asarray(out["start_overflow"]).sum()) == n_starts - int(np.asarray(out["start_valid"]).sum()) > 0
    assert np.asarray(out["start_valid"]).shape[1] == 1
