"""BEER2 joint training (`kind = "joint"`): both losses reach the shared encoder, one encoder's
parameters, the refreshed index, the rows from the current retriever, and a tiny run end to end."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relik_jax.core.types import NME
from relik_jax.inference.relik import Relik
from relik_jax.retriever.dense import DenseRetriever
from relik_jax.retriever.model import BiEncoder, RetrieverConfig
from relik_jax.training.joint_task import JointTask, parameter_count
from tests.training.helpers import config, train_here

BEER2 = "oke_beer2.py:tiny"


@pytest.fixture(scope="module")
def task():
    return JointTask(config(name=BEER2))


@pytest.fixture(scope="module")
def separate():
    """Two encoders, no span queries (the ablation's other settings)."""
    return JointTask(config("joint.share_encoder=False", "joint.span_queries=False", name=BEER2))


def _grads(task) -> dict[str, dict]:
    """The gradient of each loss term (reader, window NCE, span NCE) w.r.t. every parameter: one
    compiled reverse-mode Jacobian of the three terms."""
    batch = {k: jnp.asarray(v) for k, v in task.batch(list(range(task.batch_size))).items()}
    terms = ("reader_loss", "window_nce", "span_nce")

    def parts(p):
        aux = task.loss(p, batch, None)[1]
        return jnp.stack([aux.get(t, jnp.zeros(())) for t in terms])

    jac = jax.jit(jax.jacrev(parts))(task.init_params)
    return {t: jax.tree.map(lambda x, i=i: x[i], jac) for i, t in enumerate(terms)}


def _norm(tree) -> float:
    return float(jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))))


def test_both_losses_reach_the_shared_encoder(task):
    g = _grads(task)
    reader_only, window_only, span_only = g["reader_loss"], g["window_nce"], g["span_nce"]
    assert _norm(reader_only["reader"]["transformer_model"]) > 0
    assert _norm(window_only["reader"]["transformer_model"]) > 0  # Retriever loss → the reader's encoder
    assert _norm(span_only["reader"]["transformer_model"]) > 0
    assert _norm(window_only["query_norm"]) > 0
    assert _norm(reader_only["query_norm"]) == 0  # the reader loss does not touch the query pooling
    assert _norm(window_only["passage_encoder"]) == 0  # frozen passage tower (stop_gradient)


def test_with_separate_encoders_the_retriever_loss_does_not_reach_the_reader(task, separate):
    g = _grads(separate)["window_nce"]
    assert _norm(g["reader"]["transformer_model"]) == 0 and _norm(g["question_encoder"]) > 0
    # one encoder's parameters when shared: the separate model has exactly one more encoder
    shared_n, separate_n = parameter_count(task.init_params), parameter_count(separate.init_params)
    encoder_n = parameter_count(task.init_params["reader"]["transformer_model"])
    assert separate_n - shared_n == encoder_n
    hidden = task.model.config.encoder.hidden_size
    assert shared_n == (
        parameter_count(task.init_params["reader"]) + parameter_count(task.init_params["passage_encoder"]) + 2 * hidden
    )


def test_refreshed_index_equals_a_fresh_exact_index_of_the_current_passage_tower(task):
    t = task
    t.config.joint.train_passages = True
    saved_index, saved_rows = t.view.index, (t.rows, t.labels, t.queries)
    try:
        _refresh_and_compare(t)
    finally:
        t.config.joint.train_passages = False
        t.view.index = saved_index
        t.rows, t.labels, t.queries = saved_rows


def _refresh_and_compare(t):
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: x, t.init_params)  # "trained": the passage tower moved
    params["passage_encoder"] = jax.tree.map(
        lambda x: x + 0.02 * rng.standard_normal(x.shape).astype(x.dtype), params["passage_encoder"]
    )
    before = np.asarray(t.view.index.embeddings).copy()
    t.begin_epoch(1, params)
    pe = params["passage_encoder"]
    tower_cfg = t.view.model.config.passage
    fresh = DenseRetriever(
        BiEncoder(RetrieverConfig(tower_cfg)),
        {"question_encoder": {"encoder": pe["transformer_model"], "layer_norm_layer": pe["layer_norm_layer"]}},
        t.view.tokenizer, passage_max_length=t.config.retriever.passage_max_length,
    )  # fmt: skip
    fresh.build_index(t.kb, t.passages, progress=False)
    got = np.asarray(t.view.index.embeddings)
    assert not np.allclose(got, before)
    np.testing.assert_allclose(got, np.asarray(fresh.index.embeddings), rtol=1e-5, atol=1e-4)
    queries = np.random.default_rng(1).standard_normal((4, got.shape[1])).astype(np.float32)
    assert (t.view.index.search(queries, 5)[1] == fresh.index.search(queries, 5)[1]).all()


def _lost_golds(t) -> tuple[int, int]:
    """Checks every row reads its window's retrieved top-k and no gold it missed; returns (gold
    titles missing from their row's candidates, --NME-- labels)."""
    top_k = t.settings.top_k
    lost = nme = 0
    for row, lab, (text, gold, hard) in zip(t.rows, t.labels, t.queries):
        assert row.window.text == text
        cands = list(row.columns[2:])
        assert len(cands) <= top_k and len(set(cands)) == len(cands)
        titles = {t for _, _, t in gold if t != NME}
        assert not set(hard) & titles  # hard negatives are never a gold entity
        missing = titles - set(cands)
        assert not missing & set(row.columns)  # a missed gold is not added...
        lost += len(missing)
        nme += sum(row.columns[c] == NME for c in lab.columns)  # ...its mention is --NME--
    return lost, nme


def test_rows_read_the_current_retriever_and_span_queries_recover_missed_golds(task, separate):
    assert len(task.rows) == len(task.queries) > 0
    lost_window, nme_window = _lost_golds(separate)  # window queries only (the untrained retriever)
    lost_spans, _ = _lost_golds(task)  # + the gold spans' own queries
    assert lost_window > 0 and nme_window > 0  # the rule was exercised
    assert lost_spans < lost_window


def test_tiny_beer2_run_and_its_bundle_uses_span_queries(tmp_path, capsys):
    w = tmp_path / "w"
    train_here(w, "train.steps=2", name=BEER2)
    out = capsys.readouterr().out
    assert "best checkpoint: step 2 (inkb_f1" in out
    relik = Relik.from_pretrained(w / "bundle")
    assert relik.settings.span_queries == 8 and relik.retriever is not None
    text = "Marie Curie was born in Warsaw and moved to Paris ."
    one = relik(text, retrieve_k=10)
    plain = relik(text, span_queries=0, retrieve_k=10)
    assert isinstance(one.spans, list) and isinstance(plain.spans, list)
    assert len(one.windows[0].retrieved) == len(plain.windows[0].retrieved) == 10
