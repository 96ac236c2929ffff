"""Hugging Face folder ⇄ Flax params: round trips, embedding growth, clear errors for bad folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from relik_jax.core.errors import CheckpointError
from relik_jax.encoders.hf import flax_path_to_hf, grow_embeddings, load_encoder, load_tokenizer, save_encoder


def test_flax_path_to_hf_names():
    assert (
        flax_path_to_hf(("encoder", "layer_3", "attention", "self", "query", "kernel"))
        == "encoder.layer.3.attention.self.query.weight"
    )
    assert flax_path_to_hf(("embeddings", "word_embeddings", "embedding")) == "embeddings.word_embeddings.weight"
    assert (
        flax_path_to_hf(("encoder", "layer_0", "output", "LayerNorm", "scale"))
        == "encoder.layer.0.output.LayerNorm.weight"
    )
    assert flax_path_to_hf(("encoder", "rel_embeddings", "embedding")) == "encoder.rel_embeddings.weight"


def test_save_reload_round_trip_parity(minilm_path, tmp_path):
    """MiniLM → grow embeddings for 3 symbols → save → transformers loads it → same outputs."""
    torch = pytest.importorskip("torch")
    from transformers import BertModel

    symbols = ["--NME--", "[E-0]", "[E-1]"]
    tok = load_tokenizer(minilm_path, symbols)
    _, params, config = load_encoder(minilm_path, vocab_size=len(tok))
    assert config.vocab_size == 30522 + 3
    out_dir = save_encoder(tmp_path / "grown", config, params, tokenizer_from=tok)

    # Back through our loader: identical parameters.
    module2, params2, config2 = load_encoder(out_dir)
    assert config2.vocab_size == config.vocab_size
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # Through transformers' PyTorch class: the same hidden states, new symbols included.
    tok2 = load_tokenizer(out_dir)
    assert tok2.convert_tokens_to_ids("[E-1]") == 30524
    enc = tok2(["Paris --NME-- [E-0] France [E-1] Texas"], return_tensors="np")
    assert 30524 in enc["input_ids"]
    ref = BertModel.from_pretrained(str(out_dir)).eval()
    with torch.no_grad():
        expected = ref(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in enc.items()}).last_hidden_state.numpy()
    got = module2.apply(
        {"params": params2}, *(jnp.asarray(enc[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    )
    assert np.abs(np.asarray(got.last_hidden_state) - expected).max() <= 1e-4


def test_grow_embeddings_keeps_old_rows_and_adds_typical_new_ones(minilm):
    _, params, _, _ = minilm
    grown = grow_embeddings(params, 30522 + 5, jax.random.key(0))
    old = np.asarray(params["embeddings"]["word_embeddings"]["embedding"])
    new = np.asarray(grown["embeddings"]["word_embeddings"]["embedding"])
    np.testing.assert_array_equal(new[:30522], old)
    assert new.shape == (30527, 384)
    assert abs(np.linalg.norm(new[30522:], axis=1).mean() / np.linalg.norm(old, axis=1).mean() - 1) < 0.5
    with pytest.raises(CheckpointError, match="cannot shrink"):
        grow_embeddings(params, 100, jax.random.key(0))


def _copy_folder(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_folder_without_weights(tmp_path, fixtures_dir):
    folder = tmp_path / "noweights"
    folder.mkdir()
    shutil.copy(fixtures_dir / "models" / "tiny-bert" / "config.json", folder)
    with pytest.raises(CheckpointError, match="has no weights"):
        load_encoder(folder)


def test_missing_folder_and_missing_config(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_encoder(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_encoder(tmp_path)


def test_unsupported_model_type(tmp_path, fixtures_dir):
    folder = _copy_folder(fixtures_dir / "models" / "tiny-bert", tmp_path / "gpt")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"unsupported model_type 'gpt2'"):
        load_encoder(folder)


def test_shape_mismatch_names_the_weight(tmp_path, fixtures_dir):
    folder = _copy_folder(fixtures_dir / "models" / "tiny-bert", tmp_path / "wrong")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 64
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError,
        match=r"encoder.layer.0.intermediate.dense.(weight|bias) has shape \[128(, 48)?\], but the config implies \[64(, 48)?\]",
    ):
        load_encoder(folder)


def test_missing_key_is_named(tmp_path, fixtures_dir):
    folder = _copy_folder(fixtures_dir / "models" / "tiny-bert", tmp_path / "missing")
    state = load_file(str(folder / "model.safetensors"))
    del state["encoder.layer.1.attention.self.key.bias"]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing 1 weight\(s\): encoder.layer.1.attention.self.key.bias"):
        load_encoder(folder)


def test_legacy_gamma_beta_names_and_prefix(tmp_path, fixtures_dir):
    """Old BERT checkpoints: `bert.` prefix, LayerNorm gamma/beta."""
    folder = _copy_folder(fixtures_dir / "models" / "tiny-bert", tmp_path / "legacy")
    state = load_file(str(folder / "model.safetensors"))
    renamed = {}
    for k, v in state.items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        renamed["bert." + k] = v
    renamed["cls.predictions.bias"] = np.zeros(3, np.float32)
    save_file(renamed, str(folder / "model.safetensors"), metadata={"format": "pt"})
    _, p1, _ = load_encoder(fixtures_dir / "models" / "tiny-bert")
    _, p2, _ = load_encoder(folder)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(a, b)


def test_pytorch_bin_folder(tmp_path, fixtures_dir):
    torch = pytest.importorskip("torch")
    folder = _copy_folder(fixtures_dir / "models" / "tiny-bert", tmp_path / "bin")
    state = load_file(str(folder / "model.safetensors"))
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    _, p1, _ = load_encoder(fixtures_dir / "models" / "tiny-bert")
    _, p2, _ = load_encoder(folder)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(a, b)


def test_hub_names_are_refused_with_a_reason():
    from relik_jax.core.assets import resolve_model_path

    with pytest.raises(CheckpointError, match="never downloads from a model hub"):
        resolve_model_path("microsoft/deberta-v3-base")


@pytest.mark.parametrize(
    "make_bad,expected",
    [
        (lambda d: None, "has no weights"),
        (
            lambda d: (d / "config.json").write_text('{"model_type": "t5", "vocab_size": 3}'),
            "unsupported model_type 't5'",
        ),
    ],
)
def test_cli_reports_bad_model_in_one_line(tmp_path, fixtures_dir, make_bad, expected):
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(fixtures_dir / "models" / "tiny-bert" / "config.json", folder)
    make_bad(folder)
    proc = subprocess.run(
        [sys.executable, "-m", "relik_jax.encode", "--model", str(folder)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last
