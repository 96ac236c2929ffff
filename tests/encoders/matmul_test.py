"""The dense layers' matmul: fp32 is a plain dot; bf16 has its own backward (bf16 cotangents, a real
transpose for the weight gradient) whose gradients equal JAX's own to bf16 rounding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relik_jax.encoders import layers


@pytest.fixture(autouse=True)
def native_bf16_dots(monkeypatch):
    """These tests are about YNNPACK's bf16 kernels: keep them on every CPU (on one without bf16 dot
    instructions the default runs bf16 dots in f32, `core.platform.bf16_dots_in_f32`)."""
    monkeypatch.setenv("RELIK_JAX_BF16_DOTS", "native")


def _reference(x, w, dtype):
    return jax.lax.dot_general(
        x.astype(dtype), w.astype(dtype), (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32
    )


def test_transpose_2d_is_a_transpose():
    for shape in [(16, 3), (7, 5), (12, 4)]:
        a = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape)
        np.testing.assert_array_equal(layers.transpose_2d(a), a.T)


def test_fp32_matmul_is_the_plain_dot():
    rng = np.random.default_rng(0)
    x, w = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32), jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
    np.testing.assert_array_equal(layers.matmul(x, w, jnp.float32), _reference(x, w, jnp.float32))


def test_bf16_matmul_values_and_gradients_match_autodiff():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, 16, 24)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(24, 40)) * 0.2, jnp.float32)
    g = jnp.asarray(rng.normal(size=(3, 16, 40)), jnp.float32)

    def loss(f):
        return lambda x, w: jnp.sum(f(x, w) * g)

    ours = jax.jit(jax.grad(loss(lambda x, w: layers.matmul(x, w, jnp.bfloat16)), argnums=(0, 1)))(x, w)
    ref = jax.jit(jax.grad(loss(lambda x, w: _reference(x, w, jnp.bfloat16)), argnums=(0, 1)))(x, w)
    np.testing.assert_array_equal(layers.matmul(x, w, jnp.bfloat16), _reference(x, w, jnp.bfloat16))
    for a, b, name in zip(ours, ref, ("dx", "dw")):
        assert a.dtype == jnp.float32 and a.shape == b.shape, name
        # ours rounds the cotangent to bf16 (JAX's keeps it f32): relative error ~ bf16's 2^-8
        err = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
        assert err < 1e-2, (name, err)


def test_bf16_matmul_gradients_keep_the_input_dtypes():
    x = jnp.ones((4, 8), jnp.bfloat16)
    w = jnp.ones((8, 2), jnp.float32)
    dx, dw = jax.grad(lambda x, w: layers.matmul(x, w, jnp.bfloat16).sum(), argnums=(0, 1))(x, w)
    assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(dw, np.float32), 4.0)


def test_bf16_layer_kernels_cast_once_leave_the_outputs_bitwise_equal(fixtures_dir):
    """`layers.layer_kernels_in`: only the transformer layers' kernels change dtype (not embeddings,
    LayerNorms, biases, heads), and a bf16 reader's outputs are bitwise those of float32-stored kernels."""
    import flax

    from relik_jax.reader.checkpoint import load_reader
    from relik_jax.reader.pipeline import ReaderPipeline

    folder = fixtures_dir / "models" / "relik-reader-span-tiny"
    model, params, _ = load_reader(folder, dtype=jnp.bfloat16)
    params = jax.device_put(params)
    cast = layers.layer_kernels_in(params, jnp.bfloat16)
    changed = {
        "/".join(k)
        for k, v in flax.traverse_util.flatten_dict(cast).items()
        if v.dtype != flax.traverse_util.flatten_dict(params)[k].dtype
    }
    assert changed and all("/encoder/layer_" in k and k.endswith("/kernel") for k in changed), sorted(changed)[:5]
    assert len(changed) == 6 * model.config.encoder.num_layers  # Q, K, V, attention out, FFN in, FFN out
    ids = jnp.asarray(np.random.default_rng(3).integers(1000, 20000, (2, 40)), jnp.int32)
    feats = lambda p: model.apply({"params": p}, ids, jnp.ones_like(ids), jnp.zeros_like(ids), method="features")  # noqa: E731
    np.testing.assert_array_equal(np.asarray(feats(params)), np.asarray(feats(cast)))
    pipe = ReaderPipeline.from_pretrained(folder, dtype=jnp.bfloat16)
    kernel = pipe.params["transformer_model"]["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"]
    assert kernel.dtype == jnp.bfloat16


def test_bf16_matmul_as_f32_dots_gives_the_same_values_and_f32_dots(monkeypatch):
    """On a CPU without bf16 dot instructions the bf16 path rounds its operands to bf16 and runs the
    dot in f32 (`RELIK_JAX_BF16_DOTS`): the same products and f32 accumulation as YNNPACK's bf16
    kernel, so values and gradients equal the native bf16 path's to f32 summation order."""
    from relik_jax.core import hlo

    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(4, 32, 96)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(96, 64)) * 0.1, jnp.float32)

    def run(mode):
        monkeypatch.setenv("RELIK_JAX_BF16_DOTS", mode)
        f = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(layers.matmul(x, w, jnp.bfloat16) ** 2), argnums=(0, 1)))
        return f(x, w), hlo.dots(f.lower(x, w).compile().as_text())

    (v_native, g_native), dots_native = run("native")
    (v_f32, g_f32), dots_f32 = run("f32")
    assert {d.lhs for d in dots_f32} == {"f32"} and len(dots_f32) == 3, dots_f32  # forward, dx, dw
    if jax.default_backend() == "cpu":
        assert {d.lhs for d in dots_native} == {"bf16"}, dots_native
    np.testing.assert_allclose(float(v_f32), float(v_native), rtol=1e-5)
    for a, b in zip(g_f32, g_native):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-2, atol=1e-3)
        assert float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b)) < 2e-3
