"""int8 inference: the encoders' dense layers as int8 x int8 -> int32 dots, through qwix.

`int8(model, params, *example_args, method=...)` returns `(model, params)` where `model` is the
same flax module with qwix's post-training quantization intercepting its dots (qwix PTQ: weights
quantized once per output channel, absmax; activations per token, dynamically, absmax), and
`params` has those weights stored as int8 + float32 scales. Only the dense layers of the
transformer are quantized (`DENSE_PATHS`): attention's two dots (activation x activation) stay
bf16 with f32 accumulation, and LayerNorm, softmax, GELU and every head (so every decision) stay
float32. XLA:CPU runs the int8 dots in YNNPACK's int8 kernels (VNNI / AMX); `hlo.dot_census`
shows them as `ynnpack s8xs8->s32`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import qwix

# The modules quantized, as qwix module-path regexes: the BERT / DeBERTa dense layers (Q, K, V,
# attention output, FFN in / out) under the encoder, wherever it sits in the model's tree.
DENSE_PATHS = (r"(.*/)?encoder/layer_\d+/.*(query|key|value|query_proj|key_proj|value_proj|dense)",)


def rules(paths: Sequence[str] = DENSE_PATHS) -> list[Any]:
    """qwix rules: int8 weights and int8 activations for the dots of the modules in `paths`."""
    return [qwix.QuantizationRule(module_path=p, weight_qtype=jnp.int8, act_qtype=jnp.int8) for p in paths]


def quantized_model(model: nn.Module, methods: Sequence[str], paths: Sequence[str] = DENSE_PATHS) -> nn.Module:
    """`model` with qwix PTQ intercepting the dots of `methods` (called by name in `apply`)."""
    return qwix.quantize_model(model, qwix.PtqProvider(rules(paths)), methods=tuple(methods))


def int8(
    model: nn.Module,
    params: Any,
    *example_args: Any,
    method: str,
    methods: Sequence[str] | None = None,
    paths: Sequence[str] = DENSE_PATHS,
) -> tuple[nn.Module, Any]:
    """`(quantized model, params with int8 weights)`; `example_args` are abstract or concrete
    inputs of `method` (only their shapes are used, to find which weights the dots read)."""
    qmodel = quantized_model(model, methods or (method,), paths)
    abstract = jax.eval_shape(lambda *a: qmodel.init(jax.random.key(0), *a, method=method), *example_args)
    abstract = nn.unbox(abstract)["params"]
    plain = jax.tree.map(jnp.asarray, nn.unbox(params))
    quantized = qwix.quantize_params(plain, abstract, allow_extra_params=True)
    merged = flax.traverse_util.flatten_dict(plain)
    merged.update(flax.traverse_util.flatten_dict(quantized))
    n = sum(1 for v in flax.traverse_util.flatten_dict(quantized).values() if not isinstance(v, jax.Array))
    if n == 0:
        raise ValueError(f"int8: no weight of {type(model).__name__} matched {list(paths)}")
    return qmodel, flax.traverse_util.unflatten_dict(merged)


def is_quantized(params: Any) -> bool:
    """Whether `params` holds qwix-quantized weights."""
    leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, qwix.QArray))
    return any(isinstance(x, qwix.QArray) for x in leaves)
