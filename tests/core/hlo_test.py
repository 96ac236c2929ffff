"""Which kernel runs each dot of a compiled program (`relik_jax.core.hlo`), and how many dots of
the EL reader's bf16 programs run outside YNNPACK's low-precision kernels (a ceiling at today's
count: a change that makes a dot fall back to an f32 or Eigen dot fails here)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relik_jax.core import hlo

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's kernels")


@pytest.fixture(autouse=True)
def native_bf16_dots(monkeypatch):
    """These tests are about YNNPACK's bf16 kernels: keep them on every CPU (on one without bf16 dot
    instructions the default runs bf16 dots in f32, `core.platform.bf16_dots_in_f32`)."""
    monkeypatch.setenv("RELIK_JAX_BF16_DOTS", "native")


def _census(f, *args):
    return hlo.dot_census(jax.jit(f).lower(*args).compile().as_text())


def test_census_tells_the_fast_dots_from_the_upcast_ones():
    a = jnp.ones((64, 64), jnp.bfloat16)
    i8 = jnp.ones((64, 64), jnp.int8)
    assert _census(lambda a: jax.lax.dot(a, a, preferred_element_type=jnp.float32), a) == {"ynnpack bf16xbf16->f32": 1}
    # a plain bf16 dot is upcast to an f32 one (5x slower): counted as f32, hence slow
    plain = jax.jit(lambda a: a @ a).lower(a).compile().as_text()
    assert [d.lhs for d in hlo.dots(plain)] == ["f32"] and len(hlo.slow_dots(plain)) == 1
    assert _census(lambda x: jax.lax.dot(x, x, preferred_element_type=jnp.int32), i8) == {"ynnpack s8xs8->s32": 1}
    # the weight-gradient layout (contracting the leading axes) is not YNNPACK's: Eigen, in f32
    tn = jax.jit(lambda x: jax.lax.dot_general(x, x, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32))
    assert [(d.kernel, d.lhs) for d in hlo.dots(tn.lower(a).compile().as_text())] == [("xla", "f32")]


def test_a_transposed_operand_no_longer_upcasts_attention():
    from relik_jax.encoders.attention import dot_nt

    q = jnp.ones((128, 32), jnp.float32)
    assert _census(lambda q: dot_nt(q, q, jnp.bfloat16), q) == {"ynnpack bf16xbf16->f32": 1}
    # what it replaces: `q @ k.T` in bf16 is an f32 dot
    assert "ynnpack f32xf32->f32" in _census(
        lambda q: jnp.dot(q.astype(jnp.bfloat16), q.astype(jnp.bfloat16).T, preferred_element_type=jnp.float32), q
    )


def _span_batch(b=2, length=128, cols=16):
    from relik_jax.reader.pipeline import _shape

    batch = {k: _shape((b, length), np.int32) for k in ("input_ids", "attention_mask", "token_type_ids",
                                                          "prediction_mask")}  # fmt: skip
    return batch | {"symbol_pos": _shape((b, cols), np.int32), "symbol_valid": _shape((b, cols), bool)}


# Today's counts (2026-12-02). Forward: the entity-vs-candidate scores (`link_logits`, kept f32 on
# purpose: the decisions) and the end head's 1-wide output (a matrix-vector product). Train step:
# attention's backward (4 dots per layer: JAX's transpose of its f32-result dots) and the heads'.
FORWARD_SLOW = 2
TRAIN_SLOW = 14


def test_el_reader_bf16_forward_runs_its_dots_in_low_precision_kernels(fixtures_dir):
    from relik_jax.reader.pipeline import ReaderPipeline

    p = ReaderPipeline.from_pretrained(fixtures_dir / "models" / "relik-reader-span-tiny", dtype=jnp.bfloat16)
    text = p._predict.lower(p.params, _span_batch(), text_length=64).compile().as_text()
    slow = hlo.slow_dots(text)
    fast = [d for d in hlo.dots(text) if d.fast]
    layers = p.model.config.encoder.num_layers
    assert len(fast) >= 8 * layers, hlo.dot_census(text)  # 6 dense + 2 attention dots per layer
    assert len(slow) <= FORWARD_SLOW, [(d.lhs, d.kernel, d.op_name) for d in slow]


def test_el_reader_bf16_train_step_backward_is_low_precision_too(fixtures_dir):
    from relik_jax.official.batches import from_official
    from relik_jax.reader import programs
    from relik_jax.reader.checkpoint import load_reader
    from tests.reader.helpers import fixture_batches

    model, params, _ = load_reader(fixtures_dir / "models" / "relik-reader-span-tiny", dtype=jnp.bfloat16)
    batch = jax.tree.map(jnp.asarray, from_official(next(iter(fixture_batches(fixtures_dir, "span_train"))), "span"))
    key = jax.random.key(0)
    grad = jax.value_and_grad(lambda p, b: programs.reader_losses(model, p, b, deterministic=False, rng=key)["loss"])
    text = jax.jit(grad).lower(params, batch).compile().as_text()
    slow = hlo.slow_dots(text)
    # before the bf16 matmul's own backward: 61 of 89 dots were f32 (every dense layer's gradients)
    assert len(slow) <= TRAIN_SLOW, [(d.lhs, d.kernel, d.op_name) for d in slow]
    assert sum(d.fast for d in hlo.dots(text)) >= 3 * 6 * model.config.encoder.num_layers


def test_el_reader_bf16_forward_without_bf16_instructions_runs_f32_dots_of_the_same_values(fixtures_dir, monkeypatch):
    """`RELIK_JAX_BF16_DOTS=f32` (the default on a CPU without bf16 dot instructions): no bf16 dot is
    left in the compiled forward, the encoder's dots are YNNPACK's f32 kernels, and the hidden states
    are the native bf16 path's to f32 summation order (then bf16 rounding)."""
    from relik_jax.reader.pipeline import ReaderPipeline

    folder = fixtures_dir / "models" / "relik-reader-span-tiny"
    ids = jnp.asarray(np.random.default_rng(5).integers(1000, 20000, (2, 48)), jnp.int32)
    dots, feats = {}, {}
    for mode in ("native", "f32"):
        monkeypatch.setenv("RELIK_JAX_BF16_DOTS", mode)
        p = ReaderPipeline.from_pretrained(folder, dtype=jnp.bfloat16)
        dots[mode] = hlo.dots(p._predict.lower(p.params, _span_batch(), text_length=64).compile().as_text())
        f = jax.jit(lambda params, ids, m=p.model: m.apply(
            {"params": params}, ids, jnp.ones_like(ids), jnp.zeros_like(ids), method="features"))  # fmt: skip
        feats[mode] = np.asarray(f(p.params, ids), np.float32)
    assert not [d for d in dots["f32"] if "bf16" in (d.lhs, d.rhs)], [
        (d.lhs, d.kernel, d.op_name) for d in dots["f32"] if "bf16" in (d.lhs, d.rhs)
    ]
    layers = p.model.config.encoder.num_layers
    assert sum(d.kernel == "ynnpack" and d.lhs == "f32" for d in dots["f32"]) >= 8 * layers
    assert len(dots["f32"]) == len(dots["native"])
    a, b = feats["f32"].reshape(-1, feats["f32"].shape[-1]), feats["native"].reshape(-1, feats["native"].shape[-1])
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert cos.min() > 0.9999, cos.min()
