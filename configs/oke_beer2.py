"""BEER2 (bidirectional retriever-reader training) on the data of `configs/oke.py`: one jitted step
trains the reader and the retriever, which share one encoder; the reader reads the current
retriever's candidates, and the gold spans' own queries retrieve and train beside each window's.

  python -m relik_jax.train --config=configs/oke_beer2.py --workdir=runs/oke_beer2
  python -m relik_jax.evaluate runs/oke_beer2 ../shared/data/*/test.jsonl

Ablations (benchmarks/beer2_ablation.py): `--config.joint.span_queries=False` (joint, no span queries),
`--config.joint.share_encoder=False` (two encoders). `:tiny` runs on the bundled EL sample (CI).
See relik_jax/training/joint_task.py for what is the paper's and what is ours.
"""

from pathlib import Path

from relik_jax.data.tfds_builders import GERBIL_EL_TESTS
from relik_jax.training.config import base_config, variant

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config(arg: str | None = None):
    c = base_config()
    c.kind = "joint"
    c.reader.task = "el"
    c.reader.candidates = "retrieved"
    c.reader.retriever = "train"  # stage 1 as in configs/oke.py: its passage tower, index and encoder start BEER2
    c.reader.shuffle_candidates = 0.5
    c.data.dataset = "oke"
    c.data.dir = str(SHARED_DATA)
    c.data.kb = str(SHARED_DATA / "kb" / "gold_titles.tsv")
    c.data.test_split = ",".join(GERBIL_EL_TESTS)
    c.data.num_candidates = 32
    c.reader.entity_symbols = 100
    c.reader.max_starts = 16
    c.reader.max_entities = 32
    c.train.batch_size = 16
    c.train.epochs = 20
    c.optim.learning_rate = 5e-5
    c.optim.head_learning_rate = 5e-4
    c.retriever.passages_per_batch = 128
    c.retriever.max_hard_negatives = 4
    c.joint.span_k = 8
    c.retriever.epochs = 20  # stage 1: the same as configs/oke.py
    c.retriever.batch_size = 32
    c.retriever.learning_rate = 2e-5
    c.retriever.mine_hard_negatives = True
    c.checkpoint.every = 100
    c.eval.batch_size = 16
    c = variant(c, arg)
    if arg == "tiny":
        c.joint.max_span_queries = 4
    return c
