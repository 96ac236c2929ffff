"""Shared test fixtures: paths to ../shared, the embedded MiniLM, small HF folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RELIK_JAX_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
DATA = SHARED / "data"


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (the project's ../shared folder is absent)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _need(FIXTURES, "official parity fixtures")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(DATA, "shared datasets")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from relik_jax.core.assets import default_encoder_path
    from relik_jax.core.errors import CheckpointError

    try:
        return default_encoder_path()
    except CheckpointError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def minilm(minilm_path):
    """(module, params, config, tokenizer) of the embedded MiniLM, loaded once."""
    from relik_jax.encoders.hf import load_encoder, load_tokenizer

    module, params, config = load_encoder(minilm_path)
    return module, params, config, load_tokenizer(minilm_path)
