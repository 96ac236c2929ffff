"""TensorFlow Datasets builders for ReLiK's datasets, written to array_record and read with
`as_data_source()` (random access, no TensorFlow).

The user supplies the files (`manual_dir`): each dataset names the files it expects, and a missing
one is reported with its full path. The bundled samples (`sample_el`, `sample_re`, `sample_cie`)
read the files shipped in the package. Records are validated (file and line named) before anything
is written; prepared data is cached under a folder keyed by the source files' paths, sizes and
modification times, so edited files are prepared again.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.data.formats import PARSERS
from relik_jax.data.jsonl import iter_jsonl

log = logging.getLogger(__name__)
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "resources" / "sample"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    kind: str  # "el" | "re" | "dpr"
    files: dict[str, str]  # split -> file name in manual_dir
    about: str
    sample: str | None = None  # a folder of the package's sample data


SPLITS3 = {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}
DATASETS: dict[str, DatasetSpec] = {
    "aida": DatasetSpec("el", SPLITS3, "AIDA-CoNLL in ReLiK EL jsonl (doc_text, char spans, Wikipedia titles)"),
    "blink": DatasetSpec("dpr", {"train": "train.jsonl", "dev": "dev.jsonl"}, "BLINK in DPR jsonl"),
    "nyt": DatasetSpec("re", SPLITS3, "NYT (exact match) in ReLiK RE jsonl"),
    "conll04": DatasetSpec("re", SPLITS3, "CoNLL04 (SpERT split) in ReLiK RE jsonl"),
    "webnlg": DatasetSpec("re", SPLITS3, "WebNLG in ReLiK RE jsonl"),
    "rebel": DatasetSpec("re", SPLITS3, "REBEL in ReLiK RE jsonl (span labels = entity titles)"),
    "sample_el": DatasetSpec("el", {"train": "train.jsonl", "dev": "dev.jsonl"}, "bundled EL sample", "el"),
    "sample_re": DatasetSpec("re", {"train": "train.jsonl", "dev": "dev.jsonl"}, "bundled RE sample", "re"),
    "sample_cie": DatasetSpec("re", {"train": "train.jsonl", "dev": "dev.jsonl"}, "bundled cIE sample", "re"),
}


def parser(kind: str) -> Callable[[dict, str, Any], Any]:
    if kind not in PARSERS:
        raise ConfigError(f"unknown dataset kind {kind!r}")
    return PARSERS[kind]


def source_dir(name: str, manual_dir: str | Path | None) -> Path:
    spec = dataset_spec(name)
    if spec.sample and not manual_dir:
        return SAMPLE_DIR / spec.sample
    if not manual_dir:
        expected = ", ".join(spec.files.values())
        raise ConfigError(f"dataset {name!r} ({spec.about}) needs its files: pass data.dir=FOLDER holding {expected}")
    return Path(manual_dir).expanduser().resolve()


def sample_file(name: str, file: str) -> str:
    """A file of the bundled sample (`kb.tsv`, `relations.tsv`) when `name` is a sample dataset, else ""."""
    return str(SAMPLE_DIR / file) if dataset_spec(name).sample else ""


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def source_files(name: str, manual_dir: str | Path | None, splits: Sequence[str] | None = None) -> dict[str, Path]:
    """The source file of each split; a missing file is reported with its full path."""
    spec = dataset_spec(name)
    folder = source_dir(name, manual_dir)
    out = {}
    for split, fname in spec.files.items():
        path = folder / fname
        required = splits is None or split in splits
        if not path.is_file():
            if required:
                raise DataError(
                    f"dataset {name!r}: expected the {split} split at {path} ({spec.about}); file not found"
                )
            continue
        out[split] = path
    return out


def _fingerprint(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for split, path in sorted(files.items()):
        st = path.stat()
        h.update(f"{split}:{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _builder_class():
    import tensorflow_datasets as tfds  # heavy (seconds to import): only when data is prepared or read

    class RelikJsonl(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """One ReLiK jsonl dataset: a `json` text feature per record (validated before writing)."""

        VERSION = tfds.core.Version("1.0.0")

        def __init__(self, *, files: dict[str, Path], **kwargs):
            self._files = files
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict({"json": tfds.features.Text()})
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate_examples(path) for split, path in self._files.items()}

        def _generate_examples(self, path):
            for n, record in iter_jsonl(path):
                yield n, {"json": json.dumps({"line": n, "record": record}, ensure_ascii=False)}

    return RelikJsonl


def default_data_root() -> Path:
    return Path(os.environ.get("RELIK_JAX_TFDS_DIR", Path.home() / ".cache" / "relik_jax" / "tfds"))


def prepare(name: str, manual_dir: str | Path | None = None, data_root: str | Path | None = None, splits=None):
    """The prepared builder of `name` (validates and writes array_record files on first use)."""
    files = source_files(name, manual_dir, splits)
    kind = dataset_spec(name).kind
    parse = parser(kind)
    root = Path(data_root or default_data_root()).expanduser() / f"{name}-{_fingerprint(files)}"
    root.parent.mkdir(parents=True, exist_ok=True)
    # one process prepares, the others wait and read (several processes of a run, parallel test workers)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder = _builder_class()(files=files, data_dir=str(root), file_format="array_record")
        if not builder.is_prepared():
            for path in files.values():  # validate first: errors name the file and line
                for n, record in iter_jsonl(path):
                    parse(record, f"{path}:{n}", n)
            log.info("preparing %s (%s) under %s", name, ", ".join(f"{s}: {p}" for s, p in files.items()), root)
            builder.download_and_prepare()
    return builder


def has_split(data: Any, split: str) -> bool:
    """Whether the files of a config's `data` section include `split`."""
    return split in source_files(data.dataset, data.dir or None, [])


def load_config_split(data: Any, split: str):
    """`load_split` for a config's `data` section (dataset, dir, tfds_dir)."""
    return load_split(data.dataset, split, data.dir or None, data.tfds_dir or None)


def load_split(name: str, split: str, manual_dir: str | Path | None = None, data_root: str | Path | None = None):
    """The documents of one split (ELDocument / REDocument / DPRSample), in source order."""
    builder = prepare(name, manual_dir, data_root, splits=[split])
    if split not in builder.info.splits:
        raise DataError(f"dataset {name!r} has no {split!r} split (it has {', '.join(builder.info.splits)})")
    source = builder.as_data_source(split=split)
    parse = parser(dataset_spec(name).kind)
    items = sorted((json.loads(source[i]["json"]) for i in range(len(source))), key=lambda x: x["line"])
    return [parse(x["record"], f"{name}/{split} line {x['line']}", x["line"]) for x in items]
