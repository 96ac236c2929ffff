"""The typed-entity / closed-IE reader (relik 1.0.7's `relik-cie-*`) vs the official fixtures (§8):
tensors, losses, input rows, the reader-only pipeline in both layouts; and our documented behaviour
on inputs where relik 1.0.7 crashes or drops candidates (`official` tests)."""

from __future__ import annotations

import collections
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relik_jax.core.errors import DataError
from relik_jax.core.types import NME
from relik_jax.data.jsonl import read_jsonl
from relik_jax.data.windows import given_words, make_windows
from relik_jax.official.batches import from_official
from relik_jax.reader import programs
from relik_jax.reader.inputs import collate, tokenize_words, typed_rows
from relik_jax.reader.model import Reader
from relik_jax.reader.pipeline import ReaderPipeline
from tests.reader.helpers import fit, fixture_batches, valid_rows

TOL = 1e-4
FEW = {"length_buckets": (128, 256, 512), "column_buckets": (8, 16, 64)}  # fewer shapes to compile


@pytest.fixture(scope="module")
def typed_reader(fixtures_dir):
    from relik_jax.reader.checkpoint import load_reader

    return load_reader(fixtures_dir / "models" / "relik-reader-cie-tiny")


def _close(ours, ref, what):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    masked = ref <= -1e29
    assert np.array_equal(ours <= -1e29, masked), what
    np.testing.assert_allclose(ours[~masked], ref[~masked], atol=TOL, rtol=TOL, err_msg=what)


def test_typed_reader_loads_as_the_official_config(typed_reader):
    model, params, tok = typed_reader
    c = model.config
    assert c.task == "typed" and c.additional_special_symbols_types == 33 and c.entity_embedding
    assert c.additional_special_symbols == 24 and c.encoder.vocab_size == len(tok) == 30579
    assert params["re_projector"]["in_proj"]["kernel"].shape == (144, 192)  # [h_s; h_e; entity embedding]
    assert params["re_entities_projector"]["in_proj"]["kernel"].shape == (96, 64)
    assert params["re_definition_projector"]["in_proj"]["kernel"].shape == (48, 64)


def test_official_typed_eval_parity(typed_reader, fixtures_dir):
    """cie_eval.npz, both layouts: hidden states, every logit / probability / prediction."""
    model, params, _ = typed_reader
    seen = collections.Counter()
    predict = jax.jit(lambda p, b: programs.predict_spans(model, p, b, max_starts=64, max_entities=128,
                                                          official_decisions=True))  # fmt: skip

    @functools.partial(jax.jit, static_argnums=3)
    def relations(p, out, batch, e):
        vectors = model.apply({"params": p}, out["features"], out["ent_start"][:, :e], out["ent_end"][:, :e],
                              batch["relation_pos"], True, out["ent_emb"][:, :e], method=Reader.relation_vectors)  # fmt: skip
        return programs.relation_decisions(  # the fixture's meta_threshold, the config's 0.5
            model, p, *vectors, out["ent_valid"][:, :e], batch["relation_valid"], threshold=0.5
        )

    for raw in fixture_batches(fixtures_dir, "cie_eval"):
        batch = jax.tree.map(jnp.asarray, from_official(raw, "typed"))
        out = predict(params, batch)
        mask = raw["attention_mask"].astype(bool)
        assert np.abs(np.asarray(out["features"]) - raw["last_hidden_state"])[mask].max() <= TOL
        _close(out["start_logits"], raw["ned_start_logits"], "start logits")
        kept = np.zeros_like(raw["ned_start_predictions"])  # relik's starts: those that got an end
        for b, k in zip(*np.nonzero(np.asarray(out["start_has_end"]))):
            kept[b, int(out["starts"][b, k])] = 1
        assert np.array_equal(kept, raw["ned_start_predictions"])
        starts, valid = np.asarray(out["starts"]), np.asarray(out["start_valid"])
        assert [(b, starts[b, k]) for b, k in zip(*np.nonzero(valid))] == list(
            zip(raw["ned_end_rows_batch"], raw["ned_end_rows_start"])
        )
        if valid.any():
            _close(valid_rows(np.asarray(out["end_logits"]), valid), raw["ned_end_logits"], "end logits")
        count = raw["entity_count"]
        ev = np.asarray(out["ent_valid"])
        assert (ev.sum(1) == count).all()
        e = raw["entity_start"].shape[1]
        ref_valid = np.arange(e)[None] < count[:, None]
        if "ned_type_logits" not in raw:  # no entity in the batch
            assert count.sum() == 0
            seen["empty"] += 1
            continue
        assert np.array_equal(valid_rows(np.asarray(out["ent_start"]), ev), raw["entity_start"][ref_valid])
        assert np.array_equal(valid_rows(np.asarray(out["ent_end"]), ev), raw["entity_end"][ref_valid])
        n_t, n_r = raw["ned_type_logits"].shape[2], raw["re_entities_logits"].shape[2]
        _close(np.asarray(out["link_logits"])[:, :e, :n_t][ref_valid], raw["ned_type_logits"][ref_valid], "type")
        np.testing.assert_allclose(
            np.asarray(out["link_probs"])[:, :e, :n_t][ref_valid], raw["ned_type_probabilities"][ref_valid],
            atol=TOL, rtol=TOL,
        )  # fmt: skip
        assert np.array_equal(np.asarray(out["link_column"])[:, :e][ref_valid], raw["ned_type_predictions"][ref_valid])
        # the same linking head scored against the relation symbols (computed, unused by relik)
        ents = jax.jit(functools.partial(model.apply, method=Reader.type_logits))(
            {"params": params}, out["features"], out["ent_start"][:, :e], out["ent_end"][:, :e], batch["relation_pos"]
        )
        ents = np.asarray(ents)[:, :, :n_r][ref_valid]
        _close(ents, raw["re_entities_logits"][ref_valid], "re_entities logits")
        probs = np.asarray(jax.nn.sigmoid(ents))
        np.testing.assert_allclose(probs, raw["re_entities_probabilities"][ref_valid], atol=TOL, rtol=TOL)
        assert np.array_equal(np.round(probs), raw["re_entities_predictions"][ref_valid])
        rel = relations(params, out, batch, e)
        cells = ref_valid[:, :, None] & ref_valid[:, None, :]
        np.testing.assert_allclose(np.asarray(rel["relation_logits"])[cells], raw["re_logits"][cells], atol=TOL, rtol=0)
        np.testing.assert_allclose(np.asarray(rel["relation_probs"])[cells], raw["re_probabilities"][cells], atol=TOL)
        assert np.array_equal(np.asarray(rel["relation_pred"])[cells], raw["re_predictions"][cells])
        seen["relations"] += int(raw["re_predictions"][cells].sum())
        seen["use_nme" if bool(raw["use_nme"]) else "default"] += 1
    assert seen["default"] == 3 and seen["use_nme"] == 3 and seen["empty"] == 2 and seen["relations"] > 50


def test_official_typed_training_losses(typed_reader, fixtures_dir):
    """cie_train.npz: the four losses, their mean, and the teacher-forced logits."""
    model, params, _ = typed_reader
    names = {"loss": "loss", "start_loss": "ned_start_loss", "end_loss": "ned_end_loss",
             "link_loss": "ned_type_loss", "relation_loss": "re_loss"}  # fmt: skip
    n = 0
    for raw in fixture_batches(fixtures_dir, "cie_train"):
        batch = from_official(raw, "typed")
        losses = jax.jit(lambda p, b: programs.reader_losses(model, p, b))(params, jax.tree.map(jnp.asarray, batch))
        for ours, theirs in names.items():
            assert abs(float(losses[ours]) - float(raw[theirs])) <= TOL, (ours, float(losses[ours]), float(raw[theirs]))
        out = model.apply({"params": params}, jax.tree.map(jnp.asarray, batch))
        _close(out["start_logits"], raw["ned_start_logits"], "start")
        v = batch["gold_ent_valid"]
        e, n_t = raw["ned_type_logits"].shape[1:]
        _close(np.asarray(out["link_logits"])[:, :e, :n_t][v[:, :e]], raw["ned_type_logits"][v[:, :e]], "type")
        cells = v[:, :e, None] & v[:, None, :e]
        np.testing.assert_allclose(
            np.asarray(out["relation_logits"])[:, :e, :e][cells], raw["re_logits"][cells], atol=TOL, rtol=0
        )
        n += 1
    assert n == 2


def test_typed_rows_equal_the_official_inputs(typed_reader, fixtures_dir):
    """Every row of both fixture files rebuilt from its words and the candidates relik read."""
    from relik_jax.reader.inputs import CandidateEncoder, Vocab

    _, _, tok = typed_reader
    vocab = Vocab.from_tokenizer(tok)
    ents, rels = CandidateEncoder(tok, "[E-0]"), CandidateEncoder(tok, "[R-0]")
    z = {name: np.load(fixtures_dir / "reader" / f"{name}.npz") for name in ("cie_eval", "cie_train")}
    n = 0
    for r in read_jsonl(fixtures_dir / "reader" / "cie_rows.jsonl"):
        text, words = given_words(r["words"])
        (window,) = make_windows(text, words, len(r["words"]), len(r["words"]))
        cands = r["span_candidates_read"][1:] if r["use_nme"] else r["span_candidates_read"]
        (row,) = typed_rows(window, tokenize_words(tok, words), cands, r["triplet_candidates_read"], vocab, ents,
                            rels, type_symbols=33, use_nme=r["use_nme"])  # fmt: skip
        arrays = z[r["fixture"]]
        key = f"b{r['batch']}_"
        ids = arrays[key + "input_ids"][r["row"]]
        att = arrays[key + "attention_mask"][r["row"]].astype(bool)
        assert row.input_ids.tolist() == ids[att].tolist(), (r["fixture"], r["batch"], r["row"])
        b = collate([row], batch_size=1, length_buckets=(len(row.input_ids),), column_buckets=(128,))
        for k in ("token_type_ids", "prediction_mask"):
            assert b[k][0].tolist() == arrays[key + k][r["row"]][att].tolist(), k
        assert (
            row.symbol_pos.tolist() == np.nonzero(arrays[key + "special_symbols_mask_entities"][r["row"]])[0].tolist()
        )
        assert row.relation_pos.tolist() == np.nonzero(arrays[key + "special_symbols_mask"][r["row"]])[0].tolist()
        assert row.columns == r["span_candidates_read"]
        n += 1
    assert n >= 20


def _key_spans(spans):
    return collections.Counter((s[0], s[1], s[2]) for s in spans)


def _key_triplets(ts):
    return collections.Counter((t[0][0], t[0][1], t[0][2], t[1], t[2][0], t[2][1], t[2][2]) for t in ts)


@pytest.mark.parametrize("use_nme", [False, True])
def test_official_typed_pipeline_parity(fixtures_dir, use_nme):
    """`pipeline/cie_output*.jsonl`: spans (with their candidate labels, `--NME--` kept), triplets
    and confidences, every window's spans and triplets; lists over the symbols cut as relik does."""
    pipe = ReaderPipeline.from_pretrained(
        fixtures_dir / "models" / "relik-reader-cie-tiny", batch_size=4, use_nme=use_nme, overflow="cut", **FEW
    )
    inputs = read_jsonl(fixtures_dir / "pipeline" / "cie_input.jsonl")
    refs = read_jsonl(fixtures_dir / "pipeline" / ("cie_output_nme.jsonl" if use_nme else "cie_output.jsonl"))
    n_spans = n_triplets = 0
    for i, ref in zip(inputs, refs):
        out = pipe(i["text"], i["span_candidates"], relations=i["triplet_candidates"]).to_official_dict(
            "typed", with_windows=True
        )
        assert _key_spans(out["spans"]) == _key_spans(ref["spans"]), i["id"]
        assert _key_triplets(out["triplets"]) == _key_triplets(ref["triplets"]), i["id"]

        def ordered(ts):  # the same triplet may come from two windows with two confidences
            return sorted(((t[0][:3], t[1], t[2][:3]), t[3]) for t in ts)

        for (key, conf), (ref_key, ref_conf) in zip(ordered(out["triplets"]), ordered(ref["triplets"])):
            assert key == ref_key and abs(conf - ref_conf) <= 0.01
        assert len(out["windows"]) == len(ref["windows"])
        for w, rw in zip(out["windows"], ref["windows"]):
            assert w["offset"] == rw["offset"] and w["words"] == rw["words"]
            assert collections.Counter(map(tuple, w["spans"])) == collections.Counter(map(tuple, rw["spans"]))
            assert _key_triplets(w["triplets"]) == _key_triplets(rw["triplets"])
        n_spans, n_triplets = n_spans + len(ref["spans"]), n_triplets + len(ref["triplets"])
        if use_nme:
            assert all(s[2] in [NME, *i["span_candidates"]] for s in out["spans"])
    assert n_spans > 100 and n_triplets > 100


def test_typed_bad_input(fixtures_dir, caplog):
    """Where relik 1.0.7 crashes (no span candidate) or drops candidates silently (more than its
    symbols, rows over max_length): one clear error, or every candidate read over several rows."""
    folder = fixtures_dir / "models" / "relik-reader-cie-tiny"
    pipe = ReaderPipeline.from_pretrained(folder, batch_size=4, **FEW)
    inputs = read_jsonl(fixtures_dir / "pipeline" / "cie_input.jsonl")
    doc = inputs[7]  # 40 span candidates, 33 symbols
    text, cands, rels = doc["text"], doc["span_candidates"], doc["triplet_candidates"]
    with pytest.raises(DataError, match="needs span candidates"):
        pipe(text, [], relations=rels)
    # use_nme: an empty list is [--NME--]: every span is --NME--
    nme = ReaderPipeline.from_pretrained(folder, batch_size=4, use_nme=True, **FEW)(text, [], relations=rels)
    assert nme.spans and {s.label for s in nme.spans} == {NME}
    # no relation candidate: spans, no triplet (as relik)
    assert not pipe(text, cands, relations=[]).triplets
    # more candidates than symbols: split over rows; every candidate can be chosen
    split = pipe(text, cands, relations=rels)
    windows = split.windows
    assert [len(c) for c in windows[0].candidates_read] == [33, 7]
    cut_pipe = ReaderPipeline.from_pretrained(folder, batch_size=4, overflow="cut", **FEW)
    with caplog.at_level(logging.WARNING):
        cut = cut_pipe(text, cands, relations=rels)
    assert "overflow='cut'" in caplog.text
    assert [len(c) for c in cut.windows[0].candidates_read] == [33]
    assert {(s.start, s.end) for s in cut.spans} <= {(s.start, s.end) for s in split.spans}
    # rows over max_length: split, never the official truncation that drops every relation
    long = [f"{c} of the very long name number {k}" for k, c in enumerate(cands[:30])]
    short = ReaderPipeline.from_pretrained(folder, batch_size=4, max_length=160, **FEW)
    out = short(text, long, relations=rels)
    read = [c for w in out.windows for c in w.candidates_read]
    assert len(read) > 1 and sum(map(len, read)) == 30 * len(out.windows)
    rows = short.rows(short.prepare(0, *given_words(text.split()), long, rels))
    assert all(r.length <= 160 and len(r.relations) == len(rels) for r in rows)
    with pytest.raises(DataError, match="does not fit"):
        ReaderPipeline.from_pretrained(folder, batch_size=4, max_length=64)(text, long, relations=rels)


def test_typed_training_labels_equal_the_official(typed_reader, fixtures_dir):
    """cie_train.npz's labels (starts, ends, the gold candidate column, relations) rebuilt from the
    documents' word spans and triplets by our row labeller."""
    from relik_jax.reader.inputs import CandidateEncoder, Vocab
    from relik_jax.reader.labels import collate_train, re_row_labels
    from relik_jax.reader.spec import get_spec

    _, _, tok = typed_reader
    vocab = Vocab.from_tokenizer(tok)
    ents, rels = CandidateEncoder(tok, "[E-0]"), CandidateEncoder(tok, "[R-0]")
    docs = read_jsonl(fixtures_dir / "reader" / "cie_train_docs.jsonl")
    by_batch = collections.defaultdict(list)
    for r in read_jsonl(fixtures_dir / "reader" / "cie_rows.jsonl"):
        if r["fixture"] == "cie_train":
            by_batch[r["batch"]].append(r)
    for b, raw in enumerate(fixture_batches(fixtures_dir, "cie_train")):
        rows, labels = [], []
        for r in sorted(by_batch[b], key=lambda r: r["row"]):
            d = docs[r["doc"]]
            text, words = given_words(d["words"])
            (window,) = make_windows(text, words, 32, 16)
            (row,) = typed_rows(window, tokenize_words(tok, words), r["span_candidates_read"][1:],
                                r["triplet_candidates_read"], vocab, ents, rels, type_symbols=33, use_nme=True)  # fmt: skip
            triplets = [(tuple(t["subject"][:2]), t["relation"], tuple(t["object"][:2])) for t in d["triplets"]]
            rows.append(row)
            labels.append(re_row_labels(row, [tuple(s) for s in d["spans"]], triplets))
        ref = from_official(raw, "typed")
        e = ref["gold_ent_valid"].shape[1]
        ours, _ = collate_train(rows, labels, get_spec("typed"), batch_size=len(rows), max_starts=e, max_entities=e,
                                length_buckets=(raw["input_ids"].shape[1],), column_buckets=(64,))  # fmt: skip
        assert np.array_equal(ours["input_ids"], raw["input_ids"])
        assert np.array_equal(ours["start_labels"], ref["start_labels"])
        v = ref["gold_ent_valid"]
        assert np.array_equal(ours["gold_ent_valid"], v)
        for k in ("gold_ent_start", "gold_ent_end", "gold_ent_label"):
            assert np.array_equal(ours[k][v], ref[k][v]), k
        n_r = ref["relation_labels"].shape[-1]
        cells = v[:, :, None] & v[:, None, :]
        assert np.array_equal(ours["relation_labels"][..., :n_r][cells], ref["relation_labels"][cells])
        if b == 1:  # rebel#188's "India" is left out of its candidates: no column (relik: an all-zero row)
            assert (ours["gold_ent_label"][v] == -1).sum() == 1


def test_typed_reader_learns(fixtures_dir, data_dir):
    """A new typed reader (our symbols, use_nme) learns CoNLL04 types and relations on a few windows."""
    from relik_jax.data.formats import read_re
    from relik_jax.reader.factory import new_reader
    from relik_jax.reader.labels import collate_train, re_row_labels
    from relik_jax.reader.spec import get_spec

    model, params, tok = new_reader(fixtures_dir / "models" / "tiny-bert", "typed", entity_symbols=6,
                                    relation_symbols=5, linears_hidden_size=32)  # fmt: skip
    assert model.config.use_nme and model.config.additional_special_symbols_types == 7
    pipe = ReaderPipeline(model, params, tok)
    docs = [d for d in read_re(data_dir / "conll04" / "train.jsonl")[:40] if d.triplets][:4]
    relations = sorted({r for d in docs for _, r, _ in d.triplets})
    rows, labels = [], []
    for n, d in enumerate(docs):
        for row in pipe.rows(pipe.prepare(n, *given_words(list(d.words)), ["Loc", "Org", "Peop", "Other"], relations)):
            rows.append(row)
            labels.append(re_row_labels(row, list(d.spans), list(d.triplets)))
    batch, cut = collate_train(rows, labels, get_spec("typed"), batch_size=len(rows), max_starts=16, max_entities=16)
    assert cut == 0 and (batch["gold_ent_label"][batch["gold_ent_valid"]] >= 1).all()  # column 0 is --NME--
    params, losses = fit(model, params, batch)
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]
    logits = np.asarray(
        model.apply({"params": params}, jax.tree.map(jnp.asarray, batch))["link_logits"]
    )  # teacher-forced, gold entities
    v = batch["gold_ent_valid"]
    assert (logits.argmax(-1)[v] == batch["gold_ent_label"][v]).mean() >= 0.8  # the types are learnt
