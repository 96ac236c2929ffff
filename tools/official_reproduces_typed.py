"""A typed reader folder we exported (e.g. a training run's `export/`): relik 1.0.7 loads it and
computes our start, linking and relation logits on the rows our pipeline builds for RE documents.

    python tools/official_reproduces_typed.py RUN/export ../shared/data/conll04/test.jsonl \
        --candidates Loc,Org,Peop,Other [--docs 32]

Needs the official venv (`bash ../shared/bench/setup_official.sh`). Prints the largest differences
and whether every label and relation decision is the same.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reader"))
from checkpoint_test import OFFICIAL_DUMP

from relik_jax.core.assets import official_python
from relik_jax.data.formats import read_re
from relik_jax.data.windows import given_words
from relik_jax.reader import programs
from relik_jax.reader.checkpoint import load_reader
from relik_jax.reader.inputs import collate
from relik_jax.reader.model import Reader
from relik_jax.reader.pipeline import ReaderPipeline

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("folder")
ap.add_argument("data", help="RE jsonl")
ap.add_argument("--candidates", required=True, help="comma-separated span candidates")
ap.add_argument("--docs", type=int, default=32)
args = ap.parse_args()
folder = args.folder
if official_python() is None:
    raise SystemExit("error: the official relik venv is not set up: bash ../shared/bench/setup_official.sh")
model, params, tok = load_reader(folder)
pipe = ReaderPipeline(model, params, tok)
docs = read_re(args.data)[: args.docs]
rels = sorted({r for d in read_re(args.data) for _, r, _ in d.triplets})
cands = args.candidates.split(",")
rows = [r for n, d in enumerate(docs) for r in pipe.rows(pipe.prepare(n, *given_words(list(d.words)), cands, rels))]
tmp = Path(os.environ.get("TMPDIR", "/tmp"))
n_t, n_r = len(rows[0].symbol_pos), len(rows[0].relation_pos)
b = collate(rows, batch_size=len(rows), length_buckets=(max(r.length for r in rows),), column_buckets=(n_t, n_r, 64))
special = np.zeros_like(b["input_ids"], bool)
ents = np.zeros_like(special)
for i, r in enumerate(rows):
    special[i, r.relation_pos] = True
    ents[i, r.symbol_pos] = True
inputs = {k: b[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids", "prediction_mask")}
np.savez(str(tmp / "in.npz"), **inputs, special_symbols_mask=special, special_symbols_mask_entities=ents)
p = subprocess.run(
    [str(official_python()), "-c", OFFICIAL_DUMP, folder, str(tmp / "in.npz"), str(tmp / "out.npz")],
    capture_output=True,
    text=True,
    env={**os.environ, "HF_HUB_OFFLINE": "1"},
)
assert p.returncode == 0, p.stderr[-1500:]
ref = np.load(str(tmp / "out.npz"))
batch = jax.tree.map(jnp.asarray, b)
out = programs.predict_spans(model, params, batch, max_starts=32, max_entities=64)
cnt = np.asarray(out["ent_valid"]).sum(1)
e = ref["ned_type_logits"].shape[1]
valid = np.arange(e)[None] < cnt[:, None]
text = ~b["prediction_mask"].astype(bool)
vec = model.apply(
    {"params": params},
    out["features"],
    out["ent_start"][:, :e],
    out["ent_end"][:, :e],
    batch["relation_pos"],
    True,
    out["ent_emb"][:, :e],
    method=Reader.relation_vectors,
)
rel = np.asarray(model.apply({"params": params}, *vec, method=Reader.relation_cells))
cells = valid[:, :, None] & valid[:, None, :]
print(
    f"{len(docs)} documents, {len(rows)} rows, {int(cnt.sum())} entities; max |ours - relik 1.0.7|:",
    {
        "start": float(np.abs(np.asarray(out["start_logits"])[text] - ref["ned_start_logits"][text]).max()),
        "type": float(np.abs(np.asarray(out["link_logits"])[:, :e, :n_t][valid] - ref["ned_type_logits"][valid]).max()),
        "relation": float(np.abs(rel[cells] - ref["re_logits"][cells]).max()),
    },
    "same labels:",
    bool((np.asarray(out["link_column"])[:, :e][valid] == ref["ned_type_logits"].argmax(-1)[valid]).all()),
    "same relations:",
    bool(((rel[..., 1] > rel[..., 0])[cells] == (ref["re_logits"][..., 1] > ref["re_logits"][..., 0])[cells]).all()),
)
