"""The dense layers' matmul: fp32 is a plain dot; bf16 has its own backward (bf16 cotangents, a real
transpose for the weight gradient) whose gradients equal JAX's own to bf16 rounding."""

import jax
import jax.numpy as jnp
import numpy as np

from relik_jax.encoders import layers


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
