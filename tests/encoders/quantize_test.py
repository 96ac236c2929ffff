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
    assert census["ynnpack s8xs8->s32"] == 6 * int8.model.config.encoder.num_layers, census


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


def test_int8_is_for_the_reader_only(fixtures_dir):
    from relik_jax.inference.relik import Relik

    with pytest.raises(ConfigError, match="int8 is for the reader"):
        Relik.from_pretrained(fixtures_dir / "models" / "relik-reader-span-tiny", retriever_dtype="int8")
    with pytest.raises(ConfigError, match="float32, bfloat16 or int8"):
        Relik.from_pretrained(fixtures_dir / "models" / "relik-reader-span-tiny", dtype="int4")


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
