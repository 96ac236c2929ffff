"""TFDS builders: array_record written and read back with `as_data_source()`, clear errors."""

from __future__ import annotations

import json
import re

import pytest

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.data import tfds_builders
from relik_jax.data.formats import read_re


def test_sample_round_trips_through_array_record(tmp_path):
    docs = tfds_builders.load_split("sample_re", "dev", data_root=tmp_path)
    assert docs == read_re(tfds_builders.SAMPLE_DIR / "re" / "dev.jsonl")
    assert list(tmp_path.rglob("*.array_record*"))


def test_user_files_edited_are_prepared_again(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rec = {"doc_id": 0, "doc_words": ["Rome", "is", "nice"], "doc_span_annotations": [[0, 1, "LOC"]]}
    (src / "train.jsonl").write_text(json.dumps(rec) + "\n")
    first = tfds_builders.load_split("conll04", "train", src, tmp_path / "tfds")
    (src / "train.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "doc_id": 1}) + "\n")
    second = tfds_builders.load_split("conll04", "train", src, tmp_path / "tfds")
    assert (len(first), len(second)) == (1, 2)


def test_missing_file_names_the_expected_path(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "train.jsonl"))):
        tfds_builders.load_split("conll04", "train", tmp_path, tmp_path / "tfds")


def test_malformed_record_names_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"doc_words": ["a"]}\n{"doc_words": []\n')
    with pytest.raises(DataError, match=r"train.jsonl:2"):
        tfds_builders.load_split("conll04", "train", tmp_path, tmp_path / "tfds")


def test_unknown_dataset_and_missing_dir():
    with pytest.raises(ConfigError, match="unknown dataset"):
        tfds_builders.load_split("nope", "train")
    with pytest.raises(ConfigError, match=r"data\.dir"):
        tfds_builders.load_split("aida", "train")
