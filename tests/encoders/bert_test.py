"""BERT encoder: parity with transformers' PyTorch BertModel on the real MiniLM weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relik_jax.encoders import build_encoder

torch = pytest.importorskip("torch")

TEXTS = [
    "Rome is the capital of Italy.",
    "Marie Curie won two Nobel prizes, in physics (1903) and in chemistry (1911), a first for anyone.",
    "Ça va? 東京 is big 🙂",
]


def _torch_bert(path):
    from transformers import BertModel

    return BertModel.from_pretrained(str(path)).eval()


def _batch(tokenizer):
    enc = tokenizer(TEXTS, padding=True, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.mark.parametrize("block", [None, 0, 3, 12])
def test_bert_parity_minilm_last_hidden_state(minilm, minilm_path, block):
    module, params, _, tok = minilm
    batch = _batch(tok)
    assert batch["attention_mask"].min() == 0, "the batch must contain padding"
    with torch.no_grad():
        ref = _torch_bert(minilm_path)(**{k: torch.from_numpy(v) for k, v in batch.items()})
    out = module.apply({"params": params}, *(jnp.asarray(batch[k]) for k in batch), attention_block=block)
    valid = batch["attention_mask"].astype(bool)
    diff = np.abs(np.asarray(out.last_hidden_state) - ref.last_hidden_state.numpy())[valid]
    assert diff.max() <= 1e-4
    np.testing.assert_allclose(np.asarray(out.pooled), ref.pooler_output.numpy(), atol=1e-4)


def test_bert_parity_all_hidden_states(minilm, minilm_path):
    module, params, config, tok = minilm
    batch = _batch(tok)
    with torch.no_grad():
        ref = _torch_bert(minilm_path)(**{k: torch.from_numpy(v) for k, v in batch.items()}, output_hidden_states=True)
    out = module.apply({"params": params}, *(jnp.asarray(batch[k]) for k in batch), output_hidden_states=True)
    assert len(out.hidden_states) == config.num_layers + 1 == len(ref.hidden_states)
    valid = batch["attention_mask"].astype(bool)
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        assert np.abs(np.asarray(ours) - theirs.numpy())[valid].max() <= 1e-4


def test_bert_parity_gradients(fixtures_dir):
    """Gradients of a loss w.r.t. every parameter match PyTorch's autograd (tiny fixture BERT)."""
    from transformers import BertModel

    from relik_jax.encoders.hf import load_encoder, params_to_state_dict

    folder = fixtures_dir / "models" / "tiny-bert"
    module, params, _ = load_encoder(folder)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 30000, (2, 20))
    mask = np.ones_like(ids)
    mask[1, 12:] = 0

    def loss(p):
        h = module.apply({"params": p}, jnp.asarray(ids), jnp.asarray(mask)).last_hidden_state
        return jnp.sum(jnp.tanh(h) * jnp.asarray(mask)[..., None])

    grads = params_to_state_dict(jax.grad(loss)(params))
    model = BertModel.from_pretrained(str(folder)).eval()
    h = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
    (torch.tanh(h) * torch.from_numpy(mask)[..., None]).sum().backward()
    checked = 0
    for name, p in model.named_parameters():
        if name.startswith("pooler"):
            continue
        np.testing.assert_allclose(grads[name], p.grad.numpy(), atol=2e-4, rtol=1e-3, err_msg=name)
        checked += 1
    assert checked == len([k for k in grads if not k.startswith("pooler")])


def test_bf16_compute_close_to_fp32(minilm_path, minilm):
    """bf16 matmul operands (float32 accumulation) stay within the stated tolerance of fp32.

    Tolerance (README): per-token cosine similarity ≥ 0.999, max abs difference ≤ 0.15 on
    MiniLM hidden states whose values span about ±10.
    """
    from relik_jax.encoders.hf import load_encoder

    module, params, _, tok = minilm
    m16, p16, _ = load_encoder(minilm_path, dtype=jnp.bfloat16)
    batch = _batch(tok)
    args = [jnp.asarray(batch[k]) for k in batch]
    h32 = np.asarray(module.apply({"params": params}, *args).last_hidden_state)
    h16 = m16.apply({"params": p16}, *args).last_hidden_state
    assert h16.dtype == jnp.float32  # outputs stay float32; only matmul operands are bf16
    h16 = np.asarray(h16)
    valid = batch["attention_mask"].astype(bool)
    cos = (h32 * h16).sum(-1) / (np.linalg.norm(h32, axis=-1) * np.linalg.norm(h16, axis=-1))
    assert cos[valid].min() >= 0.999
    assert np.abs(h32 - h16)[valid].max() <= 0.15
    assert np.abs(h32 - h16)[valid].max() > 0, "bf16 path must actually compute in bf16"


def test_dropout_is_explicit_and_reproducible(minilm):
    module, params, _, tok = minilm
    batch = _batch(tok)
    args = [jnp.asarray(batch[k]) for k in batch]
    key = jax.random.key(0, impl="philox4x32")

    def run(k):
        return np.asarray(
            module.apply({"params": params}, *args, deterministic=False, rngs={"dropout": k}).last_hidden_state
        )

    a, b, c = run(key), run(key), run(jax.random.fold_in(key, 1))
    det = np.asarray(module.apply({"params": params}, *args).last_hidden_state)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3 and np.abs(a - det).max() > 1e-3


def test_logical_axis_names_cover_the_big_matrices(minilm):
    import flax.linen as nn

    module, _, config, _ = minilm
    abstract = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    specs = nn.get_partition_spec(abstract)
    names = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    used = {axis for spec in names for axis in spec if axis is not None}
    assert {"vocab", "embed", "heads", "mlp"} <= used
    assert specs["embeddings"]["word_embeddings"]["embedding"] == jax.sharding.PartitionSpec("vocab", "embed")
    assert specs["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"] == jax.sharding.PartitionSpec("embed", "mlp")
    assert config.num_layers == 6


def test_build_encoder_rejects_unknown_type(minilm):
    from relik_jax.core.errors import CheckpointError

    _, _, config, _ = minilm
    with pytest.raises(CheckpointError, match="unsupported model_type 'gpt2'"):
        build_encoder(config.replace(model_type="gpt2"))
