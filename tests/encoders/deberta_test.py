"""DeBERTa-v2/v3 encoder: parity with transformers' DebertaV2Model on small random configs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from relik_jax.encoders.deberta import log_bucket_position, relative_positions

torch = pytest.importorskip("torch")

VARIANTS = {
    # DeBERTa-v3 style: buckets, shared keys, normalised relative embeddings, no absolute positions.
    "v3_shared_buckets_norm": dict(
        relative_attention=True, position_buckets=16, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
        share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0,
    ),
    "c2p_only_separate_keys": dict(
        relative_attention=True, position_buckets=-1, max_relative_positions=24, pos_att_type=["c2p"],
        share_att_key=False, norm_rel_ebd="none", position_biased_input=True, type_vocab_size=2,
    ),
    "p2c_only_buckets_string_type": dict(
        relative_attention=True, position_buckets=8, max_relative_positions=64, pos_att_type="p2c",
        share_att_key=False, norm_rel_ebd="layer_norm", position_biased_input=True, type_vocab_size=0,
    ),
    "both_no_norm_separate_keys": dict(
        relative_attention=True, position_buckets=12, max_relative_positions=-1, pos_att_type=["c2p", "p2c"],
        share_att_key=False, norm_rel_ebd="none", position_biased_input=False, type_vocab_size=0,
    ),
    # DeBERTa-v2-xlarge style extras: a convolution beside layer 0 and an embedding projection.
    "v2_conv_embed_proj": dict(
        relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"], share_att_key=True,
        norm_rel_ebd="layer_norm", conv_kernel_size=3, embedding_size=24, position_biased_input=False,
        type_vocab_size=0,
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def saved_deberta(request, tmp_path_factory):
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(0)
    cfg = DebertaV2Config(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, **VARIANTS[request.param],
    )  # fmt: skip
    model = DebertaV2Model(cfg).eval()
    with torch.no_grad():  # move every parameter off its init values (ones/zeros) so none can hide
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    return request.param, folder, model


def _inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 120, (3, 40))
    mask = np.ones_like(ids)
    mask[1, 25:] = 0
    mask[2, 6:] = 0
    return ids, mask, np.zeros_like(ids)


@pytest.mark.parametrize("block", [0, 4])
def test_deberta_parity_last_hidden_state(saved_deberta, block):
    from relik_jax.encoders.hf import load_encoder

    name, folder, model = saved_deberta
    module, params, config = load_encoder(folder)
    ids, mask, tt = _inputs()
    with torch.no_grad():
        ref = model(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), token_type_ids=torch.from_numpy(tt)
        )
    out = module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(tt), attention_block=block)
    diff = np.abs(np.asarray(out.last_hidden_state) - ref.last_hidden_state.numpy())
    assert diff[mask.astype(bool)].max() <= 1e-4, name
    assert config.relative_attention


def test_deberta_parity_hidden_states(saved_deberta):
    from relik_jax.encoders.hf import load_encoder

    _, folder, model = saved_deberta
    module, params, config = load_encoder(folder)
    ids, mask, _ = _inputs()
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_hidden_states=True)
    out = module.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask), output_hidden_states=True)
    valid = mask.astype(bool)
    assert len(out.hidden_states) == len(ref.hidden_states) == config.num_layers + 1
    for ours, theirs in zip(out.hidden_states, ref.hidden_states):
        assert np.abs(np.asarray(ours) - theirs.numpy())[valid].max() <= 1e-4


@pytest.mark.parametrize("bucket_size,max_position", [(256, 512), (16, 64), (8, 64), (32, 1024), (256, 24528)])
def test_log_buckets_match_transformers_parity(bucket_size, max_position):
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    rel = np.arange(-1023, 1024)[None, :] * np.ones((2, 1), np.int64)
    ref = make_log_bucket_position(torch.from_numpy(rel), bucket_size, max_position).long().numpy()
    np.testing.assert_array_equal(log_bucket_position(rel, bucket_size, max_position), ref)


def test_relative_positions_shape_and_sign():
    rel = relative_positions(10, -1, -1)
    assert rel.shape == (10, 10) and rel[3, 1] == 2 and rel[1, 3] == -2
