"""The optimizer: AdamW with linear warm-up and decay, layer-wise learning-rate decay, no weight
decay on biases / LayerNorm, gradient clipping and optional gradient accumulation.

Every per-parameter decision is taken from the parameter's path, so the same transformation works
on plain and on logically-boxed (sharding-annotated) param trees.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import optax

from relik_jax.core.errors import ConfigError

_LAYER = re.compile(r"\['layer_(\d+)'\]")
_NO_DECAY = ("bias", "LayerNorm", "layer_norm", "norm")


def _path(path) -> str:
    return jax.tree_util.keystr(path)


def decays(path: str) -> bool:
    """Weight decay applies to weight matrices and embeddings, never to biases or LayerNorm."""
    return not any(f"'{n}" in path for n in _NO_DECAY) and "scale'" not in path


def lr_multiplier(path: str, *, num_layers: int, layer_decay: float, head_scale: float, encoder_key: str) -> float:
    """Layer-wise decay: the top encoder layer gets 1, layer i gets decay^(n-1-i), the embeddings
    decay^n; everything outside the encoder (heads, projections) gets `head_scale`."""
    if f"['{encoder_key}']" not in path:
        return head_scale
    m = _LAYER.search(path)
    depth = num_layers - 1 - int(m.group(1)) if m else (0 if "pooler" in path else num_layers)
    return layer_decay**depth


class _Empty(NamedTuple):
    pass


def scale_by_path(fn) -> optax.GradientTransformation:
    """Multiplies each update by `fn(path)` (a constant per parameter)."""

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map_with_path(lambda p, u: u * fn(_path(p)), updates), state

    return optax.GradientTransformation(lambda params: _Empty(), update)


def schedule(learning_rate: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to `learning_rate`, then linear decay to 0 at `total_steps`."""
    warmup_steps = min(warmup_steps, total_steps)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1)),
            optax.linear_schedule(learning_rate, 0.0, max(total_steps - warmup_steps, 1)),
        ],
        [warmup_steps],
    )


def validate_optim(cfg: Any) -> None:
    """The rules of an `optim` config section (`ConfigError` naming the key)."""
    if cfg.learning_rate <= 0:
        raise ConfigError(f"optim.learning_rate must be > 0, got {cfg.learning_rate}")
    if not 0 < cfg.layer_decay <= 1:
        raise ConfigError(f"optim.layer_decay must be in (0, 1], got {cfg.layer_decay}")
    if cfg.accumulate < 1:
        raise ConfigError(f"optim.accumulate must be >= 1, got {cfg.accumulate}")


def make_optimizer(
    cfg: Any,
    *,
    total_steps: int,
    num_layers: int,
    encoder_key: str = "transformer_model",
    frozen: tuple[str, ...] = (),
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """`cfg`: learning_rate, head_learning_rate, layer_decay, weight_decay, warmup (fraction of the
    steps, or steps when >= 1), clip_norm, accumulate, b1, b2, eps. `frozen`: top-level param keys
    that are never updated (no Adam state, no weight decay)."""
    validate_optim(cfg)
    updates = -(-total_steps // cfg.accumulate)
    warmup = int(cfg.warmup if cfg.warmup >= 1 else round(cfg.warmup * updates))
    lr = schedule(cfg.learning_rate, updates, warmup)
    head_lr = cfg.head_learning_rate or cfg.learning_rate

    def multiplier(path: str) -> float:
        return lr_multiplier(
            path,
            num_layers=num_layers,
            layer_decay=cfg.layer_decay,
            head_scale=head_lr / cfg.learning_rate,
            encoder_key=encoder_key,
        )

    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    parts += [
        optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
        optax.add_decayed_weights(
            cfg.weight_decay, mask=lambda p: jax.tree_util.tree_map_with_path(lambda k, _: decays(_path(k)), p)
        ),
        optax.scale_by_learning_rate(lr),
        scale_by_path(multiplier),
    ]
    tx = optax.chain(*parts)
    if frozen:

        def labels(params):
            return {k: jax.tree.map(lambda _, k=k: "frozen" if k in frozen else "train", v) for k, v in params.items()}

        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    if cfg.accumulate > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=cfg.accumulate)
    return tx, lr
