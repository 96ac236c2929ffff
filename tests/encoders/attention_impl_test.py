"""Every attention implementation that runs on this CPU against the blocked one of today (fp32,
≤ 1e-5): XLA's fused `dot_product_attention`, and the TPU splash-attention Pallas kernel in
interpret mode; the switch by backend; per-layer rematerialisation (same gradients)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relik_jax.core.errors import ConfigError
from relik_jax.encoders import attention as attn
from relik_jax.encoders import build_encoder
from relik_jax.encoders.config import EncoderConfig

TINY = EncoderConfig(
    model_type="bert", vocab_size=100, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
    hidden_dropout=0.0, attention_dropout=0.0,
)  # fmt: skip


def _qkv(b=2, length=128, n=4, d=16, lengths=(100, 128), seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(rng.standard_normal((b, length, n, d)), jnp.float32) for _ in range(3))
    mask = jnp.asarray(np.arange(length)[None, :] < np.asarray(lengths)[:, None])
    return q * d**-0.5, k, v, mask


@pytest.mark.parametrize("impl", ["blocked4", "xla", "splash_interpret"])
def test_attention_implementations_match_the_blocked_one(impl):
    q, k, v, mask = _qkv()
    ref = np.asarray(attn.dot_product_attention(q, k, v, mask, block=0))
    if impl == "blocked4":
        out = attn.dot_product_attention(q, k, v, mask, block=4)
    elif impl == "xla":
        out = attn.fused_attention(q, k, v, mask, implementation="xla")
    else:
        out = attn.splash_attention(q, k, v, mask, interpret=True).reshape(ref.shape)
    real = np.asarray(mask)[..., None]  # padding queries' outputs are never read
    np.testing.assert_allclose(np.asarray(out) * real, ref * real, atol=1e-5)


def test_splash_falls_back_to_xla_off_its_128_tiles():
    q, k, v, mask = _qkv(length=48, lengths=(30, 48))
    ref = attn.fused_attention(q, k, v, mask, implementation="xla")
    np.testing.assert_array_equal(np.asarray(attn.fused_attention(q, k, v, mask, implementation="splash")),
                                  np.asarray(ref))  # fmt: skip


def test_the_switch_by_backend():
    assert attn.resolve_implementation("auto", backend="cpu") == "blocked"
    assert attn.resolve_implementation("auto", backend="tpu") == "splash"
    assert attn.resolve_implementation("auto", backend="gpu") == "cudnn"
    assert attn.resolve_implementation("auto", backend="tpu", relative=True) == "xla"  # DeBERTa: its own terms
    assert attn.resolve_implementation("xla", backend="cpu") == "xla"
    with pytest.raises(ConfigError, match="relative-position"):
        attn.resolve_implementation("splash", backend="tpu", relative=True)
    with pytest.raises(ConfigError, match="unknown attention"):
        attn.resolve_implementation("flash", backend="tpu")


def _encode(config: EncoderConfig, params=None):
    model = build_encoder(config)
    ids = jnp.asarray(np.random.default_rng(1).integers(1, 100, (2, 128)), jnp.int32)
    mask = jnp.asarray(np.arange(128)[None, :] < np.asarray([[90], [128]])).astype(jnp.int32)
    params = params or model.init(jax.random.key(0), ids, mask)["params"]
    return params, model.apply({"params": params}, ids, mask).last_hidden_state, mask


def test_encoder_with_xla_attention_matches_auto_on_cpu():
    params, ref, mask = _encode(TINY)  # auto on CPU = blocked
    _, out, _ = _encode(TINY.replace(attention="xla"), params)
    real = np.asarray(mask)[..., None].astype(bool)
    np.testing.assert_allclose(np.asarray(out) * real, np.asarray(ref) * real, atol=1e-5)


@pytest.mark.parametrize("policy", ["layer", "dots_saveable"])
def test_remat_gives_the_same_gradients(policy):
    ids = jnp.asarray(np.random.default_rng(2).integers(1, 100, (2, 32)), jnp.int32)
    mask = jnp.ones_like(ids)

    def grads(config, params=None):
        model = build_encoder(config)
        params = params or model.init(jax.random.key(0), ids, mask)["params"]

        def loss(p):
            return jnp.sum(model.apply({"params": p}, ids, mask, deterministic=True).last_hidden_state ** 2)

        return params, jax.grad(loss)(params), jax.make_jaxpr(jax.grad(loss))(params)

    params, ref, plain = grads(TINY)
    _, got, remat = grads(TINY.replace(remat=policy), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6), got, ref)
    assert "checkpoint" in str(remat) or "remat" in str(remat)
    assert "checkpoint" not in str(plain) and "remat" not in str(plain)
