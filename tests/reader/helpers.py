"""Shared by the reader tests: the batches of an official fixture file, valid rows, a short fit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from relik_jax.reader import programs


def fixture_batches(fixtures_dir, name):
    """The batches of `reader/{name}.npz`, each a dict without its `b{i}_` prefix."""
    z = np.load(fixtures_dir / "reader" / f"{name}.npz")
    for b in range(int(z["meta_n_batches"])):
        yield {k[len(f"b{b}_") :]: z[k] for k in z.files if k.startswith(f"b{b}_")}


def valid_rows(x, valid):
    """`x[b, k]` for every valid `(b, k)`, stacked in order."""
    return np.stack([x[b, k] for b in range(valid.shape[0]) for k in range(valid.shape[1]) if valid[b, k]])


def fit(model, params, batch, steps: int = 30, learning_rate: float = 3e-3):
    """Adam on one batch's teacher-forced loss: `(params, losses per step)`."""
    tx = optax.adam(learning_rate)
    jb = jax.tree.map(jnp.asarray, batch)

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(lambda p: programs.reader_losses(model, p, jb)["loss"])(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    state = tx.init(params)
    losses = []
    for _ in range(steps):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    return params, losses
