"""The train step's bf16 lever (`model.param_dtype`): the forward / backward on a bf16 copy of the
params, the update on the float32 master params."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from relik_jax.parallel.mesh import make_mesh, replicated
from relik_jax.training.loop import make_train_step
from relik_jax.training.state import TrainState


class _Linear:
    """A least-squares task: enough to see which dtype the gradients were computed in."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.x = jnp.asarray(rng.standard_normal((64, 16)), jnp.float32)
        self.y = jnp.asarray(rng.standard_normal((64, 4)), jnp.float32)
        self.seen: list = []

    def loss(self, params, batch, rng):
        self.seen.append(params["w"].dtype)
        pred = jnp.dot(batch["x"].astype(params["w"].dtype), params["w"], preferred_element_type=jnp.float32)
        return jnp.mean((pred - batch["y"]) ** 2), {}


def _step(param_dtype):
    task = _Linear()
    tx = optax.sgd(0.1)
    mesh = make_mesh((1, 1), jax.devices()[:1])
    params = {"w": jnp.asarray(np.random.default_rng(1).standard_normal((16, 4)) * 0.1, jnp.float32)}
    before = {"w": np.asarray(params["w"])}  # the step donates the state
    state = TrainState.create(params, tx)
    sharding = jax.tree.map(lambda _: replicated(mesh), state)
    step = make_train_step(task, tx, lambda s: 0.1, dropout=False, accumulate=1, state_sharding=sharding,
                           mesh=mesh, param_dtype=param_dtype)  # fmt: skip
    new, metrics = step(state, {"x": task.x, "y": task.y}, jax.random.key(0))
    return task, before, new, metrics


def test_bf16_step_updates_float32_master_params():
    task32, p0, new32, m32 = _step(None)
    task16, _, new16, m16 = _step(jnp.bfloat16)
    assert task32.seen[0] == jnp.float32 and task16.seen[0] == jnp.bfloat16  # what the loss was given
    assert new16.params["w"].dtype == jnp.float32  # the master copy stays float32
    d32 = np.asarray(new32.params["w"] - p0["w"])
    d16 = np.asarray(new16.params["w"] - p0["w"])
    assert not np.array_equal(d16, d32)  # bf16 gradients differ in the last bits ...
    np.testing.assert_allclose(d16, d32, rtol=0.05, atol=2e-4)  # ... and make the same update
    assert abs(float(m16["loss"]) - float(m32["loss"])) < 1e-2
