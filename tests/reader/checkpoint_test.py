"""Official reader folders ⇄ relik_jax: conversion both ways, and the official package loads our export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from relik_jax.core.assets import official_python
from relik_jax.core.errors import CheckpointError
from relik_jax.reader.checkpoint import load_reader

TASKS = ["span", "triplet", "typed"]
FOLDER = {"span": "relik-reader-span-tiny", "triplet": "relik-reader-triplet-tiny", "typed": "relik-reader-cie-tiny"}
NPZ = {"span": "span_eval", "triplet": "triplet_eval", "typed": "cie_eval"}


def _convert(*args):
    return subprocess.run(
        [sys.executable, "-m", "relik_jax.convert", *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("task", TASKS)
def test_official_convert_round_trip(fixtures_dir, tmp_path, task):
    src = fixtures_dir / "models" / FOLDER[task]
    ours, back = tmp_path / "ours", tmp_path / "back"
    assert _convert("official-reader", src, ours).returncode == 0
    proc = _convert("export-official", ours, back)
    assert proc.returncode == 0, proc.stderr
    _, p0, tok0 = load_reader(src)
    _, p1, tok1 = load_reader(ours)
    for a, b in zip(jax.tree.leaves(p0), jax.tree.leaves(p1)):
        np.testing.assert_array_equal(a, b)
    assert len(tok0) == len(tok1)
    # The exported weights file has exactly the official names, shapes and values.
    w0, w2 = load_file(str(src / "model.safetensors")), load_file(str(back / "model.safetensors"))
    assert sorted(w0) == sorted(w2)
    for k in w0:
        np.testing.assert_array_equal(w0[k], w2[k], err_msg=k)
    cfg = json.loads((back / "config.json").read_text())
    assert cfg["model_type"] == "relik-reader" and cfg["transformer_model"] == "encoder"
    assert (back / "encoder" / "config.json").is_file()


def test_convert_refuses_bad_official_folders_in_one_line(tmp_path, fixtures_dir):
    proc = _convert("official-reader", fixtures_dir / "models" / "tiny-bert", tmp_path / "x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "not a relik reader folder" in proc.stderr.strip().splitlines()[-1]
    with pytest.raises(CheckpointError, match="not a local folder"):
        folder = tmp_path / "hub"
        folder.mkdir()
        src = fixtures_dir / "models" / "relik-reader-span-tiny"
        for f in src.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        cfg = json.loads((folder / "config.json").read_text())
        cfg["transformer_model"] = "microsoft/deberta-v3-base"
        (folder / "config.json").write_text(json.dumps(cfg))
        load_reader(folder)


OFFICIAL_CHECK = r"""
import json, os, sys, numpy as np, torch
from relik.reader.pytorch_modules.hf.configuration_relik import RelikReaderConfig
from relik.reader.pytorch_modules.hf.modeling_relik import RelikReaderREModel, RelikReaderSpanModel
folder, task, npz = sys.argv[1], sys.argv[2], sys.argv[3]
config = RelikReaderConfig.from_pretrained(folder)
config.transformer_model = os.path.join(folder, config.transformer_model)
model = (RelikReaderSpanModel if task == "span" else RelikReaderREModel).from_pretrained(folder, config=config).eval()
z = np.load(npz)
keys = ["input_ids", "attention_mask", "token_type_ids", "prediction_mask", "special_symbols_mask"]
if task != "span":
    keys.append("special_symbols_mask_entities")
batch = {k: torch.from_numpy(z["b0_" + k]) for k in keys}
with torch.no_grad():
    extra = {"is_prediction": True} if task != "span" else {}
    out = model(**batch, **extra)
diff = {"start": float(np.abs(out["ned_start_logits"].numpy() - z["b0_ned_start_logits"]).max())}
if task == "typed":  # the linking scores and the relations that read the entity embedding
    for key in ("ned_type_logits", "re_logits"):
        ref, got = z["b0_" + key], out[key].numpy()
        valid = ref > -1e29
        diff[key] = float(np.abs(got[valid] - ref[valid]).max())
print(json.dumps(diff))
"""


@pytest.mark.parametrize("task", TASKS)
def test_official_package_loads_our_export(fixtures_dir, tmp_path, task):
    """relik 1.0.7 loads the folder we export and computes the official fixture logits with it."""
    python = official_python()
    if python is None:
        pytest.skip(
            "official relik venv not found: run ../shared/bench/setup_official.sh (or set RELIK_OFFICIAL_PYTHON)"
        )
    out = tmp_path / "exported"
    assert _convert("export-official", fixtures_dir / "models" / FOLDER[task], out).returncode == 0
    proc = subprocess.run([str(python), "-c", OFFICIAL_CHECK, str(out), task, str(fixtures_dir / "reader" / f"{NPZ[task]}.npz")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    diff = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(diff) == (3 if task == "typed" else 1) and max(diff.values()) <= 1e-4, diff


OFFICIAL_DUMP = r"""
import os, sys, numpy as np, torch
from relik.reader.pytorch_modules.hf.configuration_relik import RelikReaderConfig
from relik.reader.pytorch_modules.hf.modeling_relik import RelikReaderREModel
folder, npz, out = sys.argv[1], sys.argv[2], sys.argv[3]
config = RelikReaderConfig.from_pretrained(folder)
config.transformer_model = os.path.join(folder, config.transformer_model)
model = RelikReaderREModel.from_pretrained(folder, config=config).eval()
z = np.load(npz)
batch = {k: torch.from_numpy(z[k]) for k in z.files}
with torch.no_grad():
    res = model(**batch, is_prediction=True)
np.savez(out, **{k: res[k].numpy() for k in ("ned_start_logits", "ned_type_logits", "re_logits")})
"""


def test_official_package_reproduces_our_typed_reader(fixtures_dir, tmp_path):
    """A typed reader made by relik_jax (new heads on tiny-bert, our symbols and tokenizer), saved in
    the official format: relik 1.0.7 loads it and computes our start, linking and relation logits
    on rows our pipeline built."""
    python = official_python()
    if python is None:
        pytest.skip(
            "official relik venv not found: run ../shared/bench/setup_official.sh (or set RELIK_OFFICIAL_PYTHON)"
        )
    import jax.numpy as jnp

    from relik_jax.data.windows import given_words
    from relik_jax.reader import programs
    from relik_jax.reader.checkpoint import save_reader
    from relik_jax.reader.factory import new_reader
    from relik_jax.reader.inputs import collate
    from relik_jax.reader.model import Reader
    from relik_jax.reader.pipeline import ReaderPipeline

    model, params, tok = new_reader(fixtures_dir / "models" / "tiny-bert", "typed", entity_symbols=5,
                                    relation_symbols=4, linears_hidden_size=32, rng=jax.random.key(3))  # fmt: skip
    folder = save_reader(tmp_path / "typed", model.config, params, tok)
    model, params, tok = load_reader(folder)  # what we saved is what we run
    pipe = ReaderPipeline(model, params, tok)
    words = ["Alice", "Smith", "works", "for", "Acme", "Corp", "in", "Paris", "and", "lives", "in", "Lyon"]
    doc = pipe.prepare(
        0, *given_words(words), ["Person", "Company", "City", "Other"], ["works for", "lives in", "based in"]
    )
    rows = pipe.rows(doc)
    assert len(rows) == 1 and rows[0].columns[0] == "--NME--"  # use_nme: our training layout
    n_t, n_r = len(rows[0].symbol_pos), len(rows[0].relation_pos)
    b = collate(rows, batch_size=1, length_buckets=(rows[0].length,), column_buckets=(n_t, n_r, 64))
    special = np.zeros_like(b["input_ids"], bool)
    special[0, rows[0].relation_pos] = True
    entities = np.zeros_like(special)
    entities[0, rows[0].symbol_pos] = True
    inputs = {k: b[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids", "prediction_mask")}
    np.savez(tmp_path / "in.npz", **inputs, special_symbols_mask=special, special_symbols_mask_entities=entities)
    proc = subprocess.run([str(python), "-c", OFFICIAL_DUMP, str(folder), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = np.load(tmp_path / "out.npz")
    batch = jax.tree.map(jnp.asarray, b)
    out = programs.predict_spans(model, params, batch, max_starts=32, max_entities=64)
    n = int(np.asarray(out["ent_valid"]).sum())
    assert n >= 1 and ref["ned_type_logits"].shape[1] == n
    np.testing.assert_allclose(np.asarray(out["start_logits"])[0][~b["prediction_mask"][0].astype(bool)],
                               ref["ned_start_logits"][0][~b["prediction_mask"][0].astype(bool)], atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(np.asarray(out["link_logits"])[0, :n, :n_t], ref["ned_type_logits"][0], atol=1e-4)
    vec = model.apply({"params": params}, out["features"], out["ent_start"][:, :n], out["ent_end"][:, :n],
                      batch["relation_pos"], True, out["ent_emb"][:, :n], method=Reader.relation_vectors)  # fmt: skip
    rel = model.apply({"params": params}, *vec, method=Reader.relation_cells)
    np.testing.assert_allclose(np.asarray(rel)[0], ref["re_logits"][0, :n, :n], atol=1e-4)
