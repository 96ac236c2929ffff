"""int8 inference (qwix PTQ on the encoder's dense layers): its dots are YNNPACK's int8 kernels,
its hidden states and logits stay close to fp32, and its decisions mostly equal fp32's."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relik_jax.core import hlo
from relik_jax.core.errors import ConfigError
from relik_jax.encoders import quantize

# Tolerances, measured on the fixture readers (random heads calibrated to fire: their decisions sit
# at the rounding edge, so agreement here is a floor, not what a trained reader gets).
MIN_COSINE = 0.99  # per-token cosine of the encoder's last hidden states, int8 vs fp32
MIN_AGREEMENT = 0.75  # (span, label) / triplet items equal to fp32's on the calibration documents


@pytest.fixture(scope="module")
def span_readers(fixtures_dir):
    from relik_jax.reader.pipeline import ReaderPipeline

    folder = fixtures_dir / "models" / "relik-reader-span-tiny"
    return ReaderPipeline.from_pretrained(folder), ReaderPipeline.from_pretrained(folder, dtype="int8")


def _features(p, ids):
    return p.model.apply({"params": p.params}, ids, jnp.ones_like(ids), jnp.zeros_like(ids), method="features")


def test_int8_weights_are_stored_quantized_and_the_heads_are_not(span_readers):
    fp32, int8 = span_readers
    assert quantize.is_quantized(int8.params) and not quantize.is_quantized(fp32.params)
    assert not quantize.is_quantized({k: v for k, v in int8.params.items() if k != "transformer_model"})


def test_int8_hidden_states_and_logits_close_to_fp32(span_readers):
    fp32, int8 = span_readers
    ids = jnp.asarray(np.random.default_rng(0).integers(1000, 20000, (2, 48)), jnp.int32)
    a, b = np.asarray(_features(fp32, ids)), np.asarray(_features(int8, ids))
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() >= MIN_COSINE, cos.min()
    start = lambda p, f: p.model.apply({"params": p.params}, f, method="start_logits")  # noqa: E731
    la, lb = np.asarray(start(fp32, jnp.asarray(a))), np.asarray(start(int8, jnp.asarray(b)))
    assert np.abs(la - lb).max() <= 0.1 * np.abs(la).max(), (np.abs(la - lb).max(), np.abs(la).max())


def test_int8_program_runs_int8_dots(span_readers):
    from tests.core.hlo_test import _span_batch

    _, int8 = span_readers
    text = int8._predict.lower(int8.params, _span_batch(), text_length=64).compile().as_text()
    census = hlo.dot_census(text)
    assert census["ynnpack s8xs8->s32"] == quantize.INT8_DOTS_PER_LAYER * int8.model.config.encoder.num_layers, census


@pytest.mark.parametrize("task", ["span", "triplet"])
def test_int8_decisions_agree_with_fp32_on_the_calibration_documents(fixtures_dir, task):
    from relik_jax.inference.relik import Relik

    folder = fixtures_dir / "models" / f"relik-reader-{task}-tiny"
    docs = [json.loads(line) for line in (fixtures_dir / "models" / f"calibration_{task}.jsonl").open()][:12]
    items = {}
    for dtype in ("float32", "int8"):
        relik = Relik.from_pretrained(folder, dtype=dtype)
        # (EL: the entity candidates; RE: each document's relation names, as the benchmarks give them)
        outs = relik([d["text"] for d in docs], candidates=[d["candidates"] for d in docs])
        got = set()
        for i, o in enumerate(outs):
            got |= {(i, s.start, s.end, s.label) for s in o.spans}
            got |= {(i, t.subject.start, t.subject.end, t.relation, t.object.start, t.object.end) for t in o.triplets}
        items[dtype] = got
    a, b = items["float32"], items["int8"]
    assert a, "the fixture reader decided nothing: the comparison would be empty"
    assert len(a & b) / len(a | b) >= MIN_AGREEMENT, (len(a), len(b), len(a & b))


def test_bad_dtype_is_refused(fixtures_dir):
    from relik_jax.inference.relik import Relik

    for kw in ({"dtype": "int4"}, {"retriever_dtype": "fp8"}):
        with pytest.raises(ConfigError, match="float32, bfloat16 or int8"):
            Relik.from_pretrained(fixtures_dir / "models" / "relik-reader-span-tiny", **kw)


def test_int8_query_encoder_runs_int8_dots_and_keeps_the_passages(fixtures_dir):
    """`DenseRetriever.int8_queries`: query vectors close to fp32's (cosine), the same top-k on the
    fixture passages for most queries, passage vectors (the index side) unchanged, int8 dots."""
    from relik_jax.data.jsonl import read_jsonl
    from relik_jax.retriever.dense import DenseRetriever

    fp32 = DenseRetriever.from_encoder(fixtures_dir / "models" / "tiny-bert", batch_size=8)
    queries = [r["text"] for r in read_jsonl(fixtures_dir / "retriever" / "queries.jsonl")]
    passages = [r["text"] for r in read_jsonl(fixtures_dir / "retriever" / "passages.jsonl")]
    fp32.build_index([str(i) for i in range(len(passages))], passages, progress=False)
    q8 = fp32.int8_queries()
    assert q8.query_dtype == "int8" and fp32.query_dtype == "float32"
    assert q8.index is fp32.index
    np.testing.assert_array_equal(q8.embed_passages(passages[:8]), fp32.embed_passages(passages[:8]))
    a, b = fp32.embed_questions(queries), q8.embed_questions(queries)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() >= MIN_COSINE, cos.min()
    top = lambda r: [{h.id for h in hits} for hits in r.retrieve(queries, k=5)]  # noqa: E731
    same = np.mean([x == y for x, y in zip(top(fp32), top(q8))])
    assert same >= 0.8, same  # measured 0.9 (20 queries, 200 passages)
    ids = jax.ShapeDtypeStruct((8, 16), np.int32)
    text = q8._embedder("question").lower(q8._params_for("question"), ids, ids).compile().as_text()
    assert (
        hlo.dot_census(text)["ynnpack s8xs8->s32"]
        == quantize.INT8_DOTS_PER_LAYER * fp32.model.config.question.num_layers
    )


def test_int8_of_a_model_without_matching_layers_says_so():
    import flax.linen as nn

    class Plain(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(4, name="head")(x)

    m = Plain()
    x = jnp.ones((2, 3))
    params = m.init(jax.random.key(0), x)["params"]
    with pytest.raises(ValueError, match="no weight of Plain matched"):
        quantize.int8(m, params, x, method="__call__")


def _ids(rng, shape):
    ids = jnp.asarray(rng.integers(1000, 20000, shape), jnp.int32)
    return ids, jnp.ones_like(ids), jnp.zeros_like(ids)


def _rel_error(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(a)))


def test_smoothing_scales_and_their_inverses_multiply_to_one(fixtures_dir):
    from relik_jax.reader.pipeline import load_reader

    model, params, _ = load_reader(fixtures_dir / "models" / "relik-reader-span-tiny", dtype=jnp.bfloat16)
    rng = np.random.default_rng(1)
    batches = [_ids(rng, (2, 24)), _ids(rng, (3, 40)), _ids(rng, (1, 16))]  # differing activations
    stats = quantize.smoothing_stats(model, params, batches, method="features")
    found = 0
    for path, node in jax.tree_util.tree_flatten_with_path(
        stats, is_leaf=lambda x: isinstance(x, dict) and "count" in x
    )[0]:
        if isinstance(node, dict) and "sum_of_sq_scale" in node:
            n = float(node["count"])
            assert n == 3, (path, n)
            s, inv = np.asarray(node["sum_of_sq_scale"]) / n, np.asarray(node["sum_of_inv_sq_scale"]) / n
            np.testing.assert_allclose(s * inv, 1.0, rtol=1e-5)
            found += 1
    assert found == quantize.INT8_DOTS_PER_LAYER * model.config.encoder.num_layers, found


def test_smoothquant_recovers_the_precision_an_outlier_channel_takes(fixtures_dir):
    """A LayerNorm channel 40x the others (as trained BERTs have) ruins per-token int8 of the next
    dots; SmoothQuant's per-channel scales move it into the weights."""
    from relik_jax.reader.pipeline import READER_METHODS, load_reader

    folder = fixtures_dir / "models" / "relik-reader-span-tiny"
    model, params, _ = load_reader(folder, dtype=jnp.bfloat16)
    ln = params["transformer_model"]["embeddings"]["LayerNorm"]
    ln["scale"], ln["bias"] = np.array(ln["scale"]), np.array(ln["bias"])
    ln["scale"][5] *= 40.0
    ln["bias"][5] += 8.0
    rng = np.random.default_rng(2)
    x = _ids(rng, (2, 48))
    fp32 = model.clone(dtype=jnp.float32).apply({"params": params}, *x, method="features")
    s = jax.ShapeDtypeStruct((1, 8), np.int32)
    errors = {}
    for name, calibration in (("absmax", None), ("smooth", [_ids(rng, (4, 48)) for _ in range(2)])):
        qm, qp = quantize.int8(
            model, params, s, s, s, method="features", methods=READER_METHODS, calibration=calibration
        )
        errors[name] = _rel_error(fp32, qm.apply({"params": qp}, *x, method="features"))
    assert errors["smooth"] < 0.7 * errors["absmax"], errors


def test_int8_pipeline_smooths_by_default_and_not_with_calibration_false(fixtures_dir):
    from qwix.contrib import smooth_quant

    from relik_jax.core.errors import DataError
    from relik_jax.reader.pipeline import Calibration, ReaderPipeline

    folder = fixtures_dir / "models" / "relik-reader-triplet-tiny"
    smoothed = lambda p: any(  # noqa: E731
        isinstance(v, smooth_quant.WithSqScale)
        for v in jax.tree.leaves(p.params, is_leaf=lambda v: isinstance(v, smooth_quant.WithSqScale))
    )
    assert smoothed(ReaderPipeline.from_pretrained(folder, dtype="int8"))
    plain = ReaderPipeline.from_pretrained(folder, dtype="int8", calibration=False)
    assert quantize.is_quantized(plain.params) and not smoothed(plain)
    with pytest.raises(DataError, match="at least one text"):
        ReaderPipeline.from_pretrained(folder, dtype="int8", calibration=Calibration(texts=[]))


def test_relik_int8_calibrates_on_the_texts_it_is_given(fixtures_dir):
    """`Relik.from_pretrained(..., calibration=...)` reaches the reader's SmoothQuant: other texts,
    other smoothing scales."""
    from qwix.contrib import smooth_quant

    from relik_jax.inference.relik import Relik
    from relik_jax.reader.pipeline import Calibration

    folder = fixtures_dir / "models" / "relik-reader-span-tiny"

    def scales(relik):
        leaves = jax.tree.leaves(relik.reader.params, is_leaf=lambda v: isinstance(v, smooth_quant.WithSqScale))
        return np.concatenate([np.asarray(v.inv_sq_scale) for v in leaves if isinstance(v, smooth_quant.WithSqScale)])

    default = scales(Relik.from_pretrained(folder, dtype="int8"))
    mine = scales(Relik.from_pretrained(folder, dtype="int8", calibration=Calibration(texts=["Zzz qqq xxx."] * 3)))
    assert default.shape == mine.shape and not np.allclose(default, mine)
