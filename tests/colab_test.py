"""colab/*.ipynb execute top to bottom (nbclient, CPU, tiny sizes) and show what they promise: the
quickstart's highlighted spans (`<mark>`), the training curves as a PNG, the TPU notebook's mesh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

COLAB = Path(__file__).resolve().parents[1] / "colab"


def _run(name: str, tmp_path: Path, env: dict[str, str], timeout: int = 600):
    nb = nbformat.read(COLAB / name, as_version=4)
    old = dict(os.environ)
    os.environ.update(env | {"JAX_PLATFORMS": "cpu", "HOME": os.environ.get("HOME", str(tmp_path))})
    try:  # the kernel inherits this environment; it runs in tmp_path (its runs/ and pages go there)
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                         resources={"metadata": {"path": str(COLAB)}})  # fmt: skip
        client.execute(cwd=str(tmp_path))
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def _outputs(nb, mime: str) -> list[str]:
    return [
        o["data"][mime]
        for c in nb.cells if c.cell_type == "code"
        for o in c.get("outputs", []) if "data" in o and mime in o["data"]
    ]  # fmt: skip


def test_quickstart_renders_spans_links_and_windows(tmp_path, fixtures_dir):
    """With the official-format fixture EL reader and its calibration documents (a reader that fires)."""
    models = fixtures_dir / "models"
    nb = _run("quickstart.ipynb", tmp_path, {
        "RELIK_MODEL": str(models / "relik-reader-span-tiny"), "RELIK_DOCS": str(models / "calibration_span.jsonl"),
    })  # fmt: skip
    html = "\n".join(_outputs(nb, "text/html"))
    assert "<mark" in html and 'href="https://en.wikipedia.org/wiki/' in html and "<details>" in html
    page = (tmp_path / "annotations.html").read_text()
    assert page.startswith("<!doctype html>") and page.count('class="rj-doc"') == 4 and "<mark" in page


def test_training_notebook_plots_exports_and_reloads(tmp_path):
    nb = _run("training.ipynb", tmp_path, {"RELIK_STEPS": "6"})
    pngs = _outputs(nb, "image/png")
    assert pngs and len(pngs[0]) > 1000  # base64 PNG of the two curves
    assert (tmp_path / "runs" / "notebook" / "bundle").is_dir()
    assert _outputs(nb, "text/html")  # the reloaded bundle's annotation, rendered


def test_tpu_notebook_runs_a_sharded_step_on_8_cpu_devices(tmp_path):
    nb = _run("tpu.ipynb", tmp_path, {"XLA_FLAGS": ""})
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "devices: 8" in text and "mesh: {'data': 4, 'model': 2}" in text
    assert "steps: 2" in text and "is laid out as" in text
