"""relik_jax's cIE reader: EL links + relations in one pass (no official equivalent)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relik_jax.core.errors import CheckpointError, DataError
from relik_jax.data.formats import read_re
from relik_jax.data.windows import given_words, make_windows
from relik_jax.reader import programs
from relik_jax.reader.factory import new_reader
from relik_jax.reader.inputs import CandidateEncoder, Vocab, el_rows, tokenize_words
from relik_jax.reader.labels import collate_train, re_row_labels
from relik_jax.reader.pipeline import ReaderPipeline
from relik_jax.reader.spec import get_spec
from tests.reader.helpers import fit

RELATIONS = ["Work_For", "Kill", "OrgBased_In", "Live_In", "Located_In"]


@pytest.fixture(scope="module")
def cie(fixtures_dir):
    return new_reader(
        fixtures_dir / "models" / "tiny-bert", "cie", entity_symbols=16, relation_symbols=5, linears_hidden_size=32
    )


def _batch(model, tok, docs):
    vocab = Vocab.from_tokenizer(tok)
    ent_enc, rel_enc = CandidateEncoder(tok, "[E-0]"), CandidateEncoder(tok, "[R-0]")
    rows, labels = [], []
    for d in docs:
        text, words = given_words(list(d.words))
        candidates = sorted({label for _, _, label in d.spans})  # the entity types play the KB here
        pieces = tokenize_words(tok, words)
        for w in make_windows(text, words, 32, 16):
            for row in el_rows(w, pieces, candidates, vocab, ent_enc, relations=RELATIONS, relation_encoder=rel_enc):
                rows.append(row)
                labels.append(re_row_labels(row, list(d.spans), list(d.triplets)))
    batch, cut = collate_train(rows, labels, get_spec("cie"), batch_size=len(rows), max_starts=16, max_entities=16)
    assert cut == 0
    return batch


def test_cie_labels_and_learning(cie, data_dir):
    model, params, tok = cie
    docs = [d for d in read_re(data_dir / "conll04" / "train.jsonl")[:40] if d.triplets][:4]
    batch = _batch(model, tok, docs)
    assert batch["gold_ent_valid"].sum() >= 8 and (batch["relation_labels"] == 1).sum() >= 4
    assert set(batch) >= {"relation_pos", "relation_valid", "gold_ent_label", "end_labels"}
    # links point at real columns (the span's type, here) and never at [CLS]
    assert (batch["gold_ent_label"][batch["gold_ent_valid"]] >= 1).all()
    params, losses = fit(model, params, batch)
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]
    parts = programs.reader_losses(model, params, jax.tree.map(jnp.asarray, batch))
    assert set(parts) == {"loss", "start_loss", "end_loss", "link_loss", "relation_loss"}


def test_cie_annotation(cie):
    model, params, tok = cie
    pipe = ReaderPipeline(model, params, tok, batch_size=4)
    out = pipe(
        "Marie Curie was born in Warsaw and worked in Paris .", ["Marie Curie", "Warsaw", "Paris"], relations=RELATIONS
    )
    assert {s.label for s in out.spans} <= {"Marie Curie", "Warsaw", "Paris", "--NME--"}
    assert all(t.relation in RELATIONS for t in out.triplets)
    spans = {(s.start, s.end) for s in out.spans}
    assert all(
        (t.subject.start, t.subject.end) in spans and (t.object.start, t.object.end) in spans for t in out.triplets
    )
    with pytest.raises(DataError, match="needs relation candidates"):
        pipe("Marie Curie was born in Warsaw.", ["Warsaw"])
    with pytest.raises(DataError, match="at most 5 relation candidates"):
        pipe("Marie Curie was born in Warsaw.", ["Warsaw"], relations=[f"r{i}" for i in range(6)])


def test_cie_save_load_and_no_official_export(cie, tmp_path):
    from relik_jax.reader.checkpoint import load_reader, save_reader

    model, params, tok = cie
    save_reader(tmp_path / "cie", model.config, params, tok, with_encoder_folder=False)
    model2, params2, tok2 = load_reader(tmp_path / "cie")
    assert model2.config.task == "cie" and len(tok2) == len(tok)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(np.asarray(a), b)
    with pytest.raises(CheckpointError, match="no equivalent"):
        save_reader(tmp_path / "official", model.config, params, tok)
