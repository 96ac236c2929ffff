"""The optimizer's per-parameter decisions (decay mask, layer-wise learning rates) and schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from relik_jax.core.errors import ConfigError
from relik_jax.training.optim import decays, lr_multiplier, make_optimizer, schedule


def _cfg(**kw):
    base = dict(learning_rate=1e-3, head_learning_rate=1e-2, layer_decay=0.5, weight_decay=0.1, warmup=0,
                clip_norm=0.0, accumulate=1, b1=0.9, b2=0.999, eps=1e-8)  # fmt: skip
    return ml_collections.ConfigDict({**base, **kw})


PARAMS = {
    "transformer_model": {
        "embeddings": {"word_embeddings": {"embedding": jnp.ones((4, 2))}, "LayerNorm": {"scale": jnp.ones(2)}},
        "encoder": {
            "layer_0": {"output": {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}},
            "layer_1": {"output": {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}},
        },
    },
    "re_classifier": {"in_proj": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}},
}


def test_decay_mask_spares_biases_and_layer_norm():
    assert decays("['encoder']['layer_0']['output']['dense']['kernel']")
    assert decays("['embeddings']['word_embeddings']['embedding']")
    assert not decays("['encoder']['layer_0']['output']['dense']['bias']")
    assert not decays("['embeddings']['LayerNorm']['scale']")
    assert not decays("['re_projector']['LayerNorm']['bias']")


def test_layerwise_multipliers():
    kw = dict(num_layers=2, layer_decay=0.5, head_scale=10.0, encoder_key="transformer_model")
    assert lr_multiplier("['transformer_model']['encoder']['layer_1']['x']", **kw) == 1.0
    assert lr_multiplier("['transformer_model']['encoder']['layer_0']['x']", **kw) == 0.5
    assert lr_multiplier("['transformer_model']['embeddings']['x']", **kw) == 0.25
    assert lr_multiplier("['re_classifier']['in_proj']['kernel']", **kw) == 10.0


def test_zero_gradient_step_only_decays_weight_matrices_scaled_per_layer():
    tx, _ = make_optimizer(_cfg(), total_steps=10, num_layers=2)
    state = tx.init(PARAMS)
    grads = jax.tree.map(jnp.zeros_like, PARAMS)
    updates, _ = tx.update(grads, state, PARAMS)
    # warmup=0: the first step's lr is the peak; update = -lr * multiplier * wd * param where decayed
    u = updates["transformer_model"]
    np.testing.assert_allclose(u["encoder"]["layer_1"]["output"]["dense"]["kernel"], -1e-3 * 1.0 * 0.1, rtol=1e-6)
    np.testing.assert_allclose(u["encoder"]["layer_0"]["output"]["dense"]["kernel"], -1e-3 * 0.5 * 0.1, rtol=1e-6)
    np.testing.assert_allclose(u["embeddings"]["word_embeddings"]["embedding"], -1e-3 * 0.25 * 0.1, rtol=1e-6)
    np.testing.assert_array_equal(u["encoder"]["layer_0"]["output"]["dense"]["bias"], 0.0)
    np.testing.assert_array_equal(u["embeddings"]["LayerNorm"]["scale"], 0.0)
    np.testing.assert_allclose(updates["re_classifier"]["in_proj"]["kernel"], -1e-2 * 0.1, rtol=1e-6)


def test_schedule_warms_up_then_decays_to_zero():
    s = schedule(1.0, total_steps=10, warmup_steps=4)
    np.testing.assert_allclose([float(s(i)) for i in (0, 2, 4, 7, 10)], [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)


def test_accumulation_applies_every_k_steps():
    tx, _ = make_optimizer(_cfg(accumulate=2, weight_decay=0.0), total_steps=4, num_layers=2)
    state = tx.init(PARAMS)
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    u1, state = tx.update(grads, state, PARAMS)
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(u1))
    u2, state = tx.update(grads, state, PARAMS)
    assert all(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(u2))


@pytest.mark.parametrize("bad", [dict(learning_rate=0.0), dict(layer_decay=1.5), dict(accumulate=0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        make_optimizer(_cfg(**bad), total_steps=10, num_layers=2)
