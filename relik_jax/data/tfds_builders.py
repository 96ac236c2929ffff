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

import numpy as np

from relik_jax.core.errors import ConfigError, DataError
from relik_jax.data.formats import PARSERS
from relik_jax.data.jsonl import iter_jsonl

log = logging.getLogger(__name__)
LINES_PER_FILE = 10**9
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "resources" / "sample"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    kind: str  # "el" | "re" | "dpr"
    files: dict[str, str | tuple[str, ...]]  # split -> file(s) in manual_dir (several: concatenated in order)
    about: str
    sample: str | None = None  # a folder of the package's sample data
    # (split, held-out split, fraction): a fixed, seeded share of `split`'s documents is `held-out split`
    holdout: tuple[str, str, float] | None = None
    # the documents of `split` are deduplicated (by text) and those whose text is in another split dropped
    # (OKE 2016 train holds 88 of the 101 OKE 2015 test sentences)
    disjoint_train: bool = False

    def source_split(self, split: str) -> str:
        """The split whose files hold `split` (itself, or the split a held-out split is taken from)."""
        return self.holdout[0] if self.holdout and split == self.holdout[1] else split

    @property
    def splits(self) -> list[str]:
        return [*self.files, *([self.holdout[1]] if self.holdout else [])]


GERBIL_EL_TESTS = ("ace2004", "aquaint", "dbpedia_spotlight", "n3_reuters128", "n3_rss500", "oke2015", "oke2016")


SPLITS3 = {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}
DATASETS: dict[str, DatasetSpec] = {
    "aida": DatasetSpec("el", SPLITS3, "AIDA-CoNLL in ReLiK EL jsonl (doc_text, char spans, Wikipedia titles)"),
    "blink": DatasetSpec("dpr", {"train": "train.jsonl", "dev": "dev.jsonl"}, "BLINK in DPR jsonl"),
    "nyt": DatasetSpec("re", SPLITS3, "NYT (exact match) in ReLiK RE jsonl"),
    "conll04": DatasetSpec("re", SPLITS3, "CoNLL04 (SpERT split) in ReLiK RE jsonl"),
    "webnlg": DatasetSpec("re", SPLITS3, "WebNLG in ReLiK RE jsonl"),
    "rebel": DatasetSpec("re", SPLITS3, "REBEL in ReLiK RE jsonl (span labels = entity titles)"),
    "oke": DatasetSpec(
        "el",
        {"train": ("oke2015/train.jsonl", "oke2016/train.jsonl"), **{t: f"{t}/test.jsonl" for t in GERBIL_EL_TESTS}},
        "OKE 2015 + 2016 train (dev = a seeded 10% of it) and the GERBIL EL test sets, in ReLiK EL jsonl: "
        "data.dir = a folder with <name>/train.jsonl and <name>/test.jsonl (../shared/data)",
        holdout=("train", "dev", 0.1),
        disjoint_train=True,
    ),
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


def source_files(
    name: str, manual_dir: str | Path | None, splits: Sequence[str] | None = None
) -> dict[str, list[Path]]:
    """The source file(s) of each split; a missing file of a required split is reported with its full path."""
    spec = dataset_spec(name)
    folder = source_dir(name, manual_dir)
    required = None if splits is None else {spec.source_split(s) for s in splits}
    out = {}
    for split, fnames in spec.files.items():
        paths = [folder / f for f in ((fnames,) if isinstance(fnames, str) else fnames)]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            if required is None or split in required:
                raise DataError(
                    f"dataset {name!r}: expected the {split} split at {missing[0]} ({spec.about}); file not found"
                )
            continue
        out[split] = paths
    return out


def _fingerprint(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for split, paths in sorted(files.items()):
        for path in paths:
            st = path.stat()
            h.update(f"{split}:{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _builder_class():
    import tensorflow_datasets as tfds  # heavy (seconds to import): only when data is prepared or read

    class RelikJsonl(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """One ReLiK jsonl dataset: a `json` text feature per record (validated before writing)."""

        VERSION = tfds.core.Version("1.0.0")

        def __init__(self, *, files: dict[str, list[Path]], **kwargs):
            self._files = files
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict({"json": tfds.features.Text()})
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate_examples(paths) for split, paths in self._files.items()}

        def _generate_examples(self, paths):
            for f, path in enumerate(paths):  # "line": the order of the concatenated files
                for n, record in iter_jsonl(path):
                    where = f"{path.parent.name}/{path.name}:{n}" if len(paths) > 1 else f"line {n}"
                    item = {"line": f * LINES_PER_FILE + n, "where": where, "record": record}
                    yield f"{f}:{n}", {"json": json.dumps(item, ensure_ascii=False)}

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
            for paths in files.values():  # validate first: errors name the file and line
                for path in paths:
                    for n, record in iter_jsonl(path):
                        parse(record, f"{path}:{n}", n)
            listing = ", ".join(f"{s}: {' + '.join(map(str, p))}" for s, p in files.items())
            log.info("preparing %s (%s) under %s", name, listing, root)
            builder.download_and_prepare()
    return builder


def has_split(data: Any, split: str) -> bool:
    """Whether the files of a config's `data` section include `split`."""
    spec = dataset_spec(data.dataset)
    return spec.source_split(split) in source_files(data.dataset, data.dir or None, [])


def split_names(value: str) -> list[str]:
    """`data.test_split` may name several splits: `"ace2004,aquaint"` → `["ace2004", "aquaint"]`."""
    return [s.strip() for s in value.split(",") if s.strip()]


def load_config_split(data: Any, split: str):
    """`load_split` for a config's `data` section (dataset, dir, tfds_dir)."""
    return load_split(data.dataset, split, data.dir or None, data.tfds_dir or None)


def holdout_indices(n: int, fraction: float, seed: int = 0) -> set[int]:
    """The positions of a held-out split among `n` documents: a fixed, seeded `fraction` (at least one)."""
    k = max(1, round(n * fraction)) if n > 1 else 0
    return set(np.random.default_rng(seed).permutation(n)[:k].tolist())


def _disjoint(name: str, builder: Any, docs: list) -> list:
    """`docs` without repeated texts and without the texts of the builder's other splits."""
    others = set()
    for split in builder.info.splits:
        if split != "train":
            source = builder.as_data_source(split=split)
            others |= {_text(json.loads(source[i]["json"])["record"]) for i in range(len(source))}
    seen: set[str] = set()
    out = []
    for d in docs:
        if d.text not in seen and d.text not in others:
            out.append(d)
        seen.add(d.text)
    log.info("%s train: %d documents, %d kept (repeats and texts of other splits dropped)", name, len(docs), len(out))
    return out


def _text(record: dict) -> str:
    return record.get("doc_text", record.get("text")) if "doc_words" not in record else " ".join(record["doc_words"])


def load_split(name: str, split: str, manual_dir: str | Path | None = None, data_root: str | Path | None = None):
    """The documents of one split (ELDocument / REDocument / DPRSample), in source order."""
    spec = dataset_spec(name)
    source_split = spec.source_split(split)
    builder = prepare(name, manual_dir, data_root, splits=[source_split])
    if source_split not in builder.info.splits:
        raise DataError(f"dataset {name!r} has no {split!r} split (it has {', '.join(spec.splits)})")
    source = builder.as_data_source(split=source_split)
    parse = parser(spec.kind)
    items = sorted((json.loads(source[i]["json"]) for i in range(len(source))), key=lambda x: x["line"])
    docs = [parse(x["record"], f"{name}/{source_split} {x.get('where', x['line'])}", x["line"]) for x in items]
    if spec.disjoint_train and source_split == "train":
        docs = _disjoint(name, builder, docs)
    if spec.holdout and split in spec.holdout[:2]:
        held = holdout_indices(len(docs), spec.holdout[2])
        keep_held = split == spec.holdout[1]
        docs = [d for i, d in enumerate(docs) if (i in held) == keep_held]
    return docs
