"""int8 inference: the encoders' dense layers as int8 x int8 -> int32 dots, through qwix.

`int8(model, params, *example_args, method=...)` returns `(model, params)` where `model` is the
same flax module with qwix's post-training quantization intercepting its dots (qwix PTQ: weights
quantized once per output channel, absmax; activations per token, dynamically, absmax), and
`params` has those weights stored as int8 + float32 scales. Only the dense layers of the
transformer are quantized (`DENSE_PATHS`: all but the FFN's output layer, which stays bf16):
attention's two dots (activation x activation) stay bf16 with f32 accumulation, and LayerNorm,
softmax, GELU and every head (so every decision) stay float32. XLA:CPU runs the int8 dots in
YNNPACK's int8 kernels (VNNI / AMX); `hlo.dot_census` shows them as `ynnpack s8xs8->s32`.

With `calibration` (batches of example inputs), the quantization is SmoothQuant (qwix's
`contrib.smooth_quant`, alpha 0.5): per input channel, `s = max|x|^a / max|w|^(1-a)` measured on the
calibration batches moves the activations' outlier channels into the weights (`x / s`, `s * w`) before
both are rounded; per-token int8 of a LayerNorm output with a few outlier channels otherwise loses most
of the other channels' precision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import qwix
from qwix.contrib import smooth_quant

# The modules quantized, as qwix module-path regexes: the BERT / DeBERTa dense layers Q, K, V,
# attention output and FFN in, under the encoder, wherever it sits in the model's tree. The FFN's
# output layer stays bfloat16: its input (GELU's output, 4x wide, one-signed and heavy-tailed) lost
# the most under per-token int8, and with it in bf16 the trained CoNLL04 reader's dev-split
# decisions went from 97.0% to 99.3% of triplets equal to fp32 (all five others in int8; keeping
# Q/K/V, or the first layer, in bf16 instead reached 96.0% / 97.6%; README "Speed vs the official").
DENSE_PATHS = (
    r"(.*/)?encoder/layer_\d+/(attention/self/(query|key|value|query_proj|key_proj|value_proj)"
    r"|attention/output/dense|intermediate/dense)",
)
INT8_DOTS_PER_LAYER = 5  # the dots DENSE_PATHS quantizes in each transformer layer


SMOOTHING = 0.5  # SmoothQuant's alpha: the share of the activations' range moved into the weights


def rules(paths: Sequence[str] = DENSE_PATHS, alpha: float | None = None) -> list[Any]:
    """qwix rules: int8 weights and int8 activations for the dots of the modules in `paths`
    (SmoothQuant rules with `alpha`)."""
    if alpha is None:
        return [qwix.QuantizationRule(module_path=p, weight_qtype=jnp.int8, act_qtype=jnp.int8) for p in paths]
    return [smooth_quant.SqRule(module_path=p, weight_qtype=jnp.int8, act_qtype=jnp.int8, alpha=alpha) for p in paths]


class SmoothedPtqProvider(qwix.PtqProvider):
    """qwix PTQ (int8 weights x int8 activations per token) that first divides the activations by the
    SmoothQuant scales of a smoothed weight (`smooth_quant.WithSqScale`, whose rows were multiplied
    by them). qwix's own `SqInferenceProvider` dequantizes the weights and runs a float dot (weight-only
    int8); this one keeps the int8 x int8 -> int32 dot."""

    def dot_general(self, lhs, rhs, dimension_numbers, *args, **kwargs):
        if isinstance(rhs, smooth_quant.WithSqScale):
            (lhs_contracting,), _ = dimension_numbers[0]
            shape = [1] * lhs.ndim
            shape[lhs_contracting] = -1
            lhs = lhs.astype(jnp.float32) * rhs.inv_sq_scale.reshape(shape)
        return super().dot_general(lhs, rhs, dimension_numbers, *args, **kwargs)


def quantized_model(model: nn.Module, methods: Sequence[str], paths: Sequence[str] = DENSE_PATHS) -> nn.Module:
    """`model` with qwix PTQ intercepting the dots of `methods` (called by name in `apply`); smoothed
    weights (`int8(..., calibration=...)`) are read with their scales."""
    return qwix.quantize_model(model, SmoothedPtqProvider(rules(paths)), methods=tuple(methods))


def smoothing_stats(
    model: nn.Module,
    params: Any,
    batches: Iterable[Sequence[Any]],
    *,
    method: str,
    paths: Sequence[str] = DENSE_PATHS,
    alpha: float = SMOOTHING,
) -> Any:
    """SmoothQuant's per-channel scales of every quantized dot, from `method` run on `batches`
    (qwix's calibration; the scales are averaged over the batches and their inverses are the
    inverses of those averages, so the smoothing leaves `x @ w` unchanged before rounding). The
    statistics come from the float32 model (a module with a `dtype` field is cloned to float32):
    the reference the int8 model approximates."""
    if "dtype" in getattr(model, "__dataclass_fields__", {}):
        model = model.clone(dtype=jnp.float32)
    cal = qwix.quantize_model(model, smooth_quant.SqCalibrationProvider(rules(paths, alpha)), methods=(method,))

    @jax.jit
    def step(params, stats, *args):
        variables = {"params": params, **({"quant_stats": stats} if stats is not None else {})}
        _, new = cal.apply(variables, *args, method=method, mutable=["quant_stats"])
        return new["quant_stats"]

    stats = None
    for args in batches:
        stats = step(params, stats, *args)
    if stats is None:
        raise ValueError("int8: no calibration batch")

    def exact_inverse(node):
        if isinstance(node, dict) and "sum_of_sq_scale" in node:
            n = node["count"].astype(jnp.float32)
            return {**node, "sum_of_inv_sq_scale": n * n / node["sum_of_sq_scale"]}
        if isinstance(node, dict):
            return {k: exact_inverse(v) for k, v in node.items()}
        return node

    return exact_inverse(flax.core.unfreeze(stats))


def int8(
    model: nn.Module,
    params: Any,
    *example_args: Any,
    method: str,
    methods: Sequence[str] | None = None,
    paths: Sequence[str] = DENSE_PATHS,
    calibration: Iterable[Sequence[Any]] | None = None,
    alpha: float = SMOOTHING,
) -> tuple[nn.Module, Any]:
    """`(quantized model, params with int8 weights)`; `example_args` are abstract or concrete
    inputs of `method` (only their shapes are used, to find which weights the dots read).
    `calibration`: batches of `method`'s inputs for SmoothQuant (with `alpha`); None = plain absmax PTQ."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"int8: SmoothQuant alpha must be in [0, 1], got {alpha}")
    plain = jax.tree.map(jnp.asarray, nn.unbox(params))
    smoothed = calibration is not None
    qmodel = quantized_model(model, methods or (method,), paths)
    abstract = jax.eval_shape(lambda *a: qmodel.init(jax.random.key(0), *a, method=method), *example_args)
    abstract = nn.unbox(abstract)["params"]
    if smoothed:
        stats = smoothing_stats(model, plain, calibration, method=method, paths=paths, alpha=alpha)
        quantized = smooth_quant.quantize_params(plain, abstract, stats, allow_extra_params=True)
    else:
        quantized = qwix.quantize_params(plain, abstract, allow_extra_params=True)
    merged = flax.traverse_util.flatten_dict(plain)
    merged.update(flax.traverse_util.flatten_dict(quantized))
    n = sum(1 for v in flax.traverse_util.flatten_dict(quantized).values() if not isinstance(v, jax.Array))
    if n == 0:
        raise ValueError(f"int8: no weight of {type(model).__name__} matched {list(paths)}")
    return qmodel, flax.traverse_util.unflatten_dict(merged)


def calibration_texts() -> list[str]:
    """The package's calibration texts: 40 sentences of news, science and history written for it
    (`relik_jax/resources/calibration_texts.txt`), what SmoothQuant measures by default."""
    text = (resources.files("relik_jax.resources") / "calibration_texts.txt").read_text("utf-8")
    return [t for t in text.splitlines() if t.strip()]


def is_quantized(params: Any) -> bool:
    """Whether `params` holds qwix-quantized weights."""
    leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, qwix.QArray))
    return any(isinstance(x, qwix.QArray) for x in leaves)
