"""Entity linking end to end on the real data of `../shared/data`: the retriever fine-tuned on the OKE
train documents, then the reader trained on its candidates (ReLiK's recipe), scored on every GERBIL
EL test set (InKB strong-match F1, MD F1, recall@k).

  python -m relik_jax.train --config=configs/oke.py --workdir=runs/oke
  python -m relik_jax.evaluate runs/oke ../shared/data/*/test.jsonl       # the same scores, any time

Data (dataset `oke`): train = OKE 2015 train + OKE 2016 train, deduplicated and without the 88
OKE 2015 *test* sentences that OKE 2016 train repeats; dev = a fixed, seeded 10% of those
documents; KB = `kb/gold_titles.tsv` (titles only: 2,213 entities); test = ace2004, aquaint,
dbpedia_spotlight, n3_reuters128, n3_rss500, oke2015, oke2016. `--config.data.dir=FOLDER` for
another copy of that folder. `:tiny` runs both stages on the bundled EL sample (CI).
Today's recipe for comparison: `--config.reader.candidates=gold_plus_distractors`.
"""

from pathlib import Path

from relik_jax.data.tfds_builders import GERBIL_EL_TESTS
from relik_jax.training.config import base_config, variant

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config(arg: str | None = None):
    c = base_config()
    c.kind = "reader"
    c.reader.task = "el"
    c.reader.candidates = "retrieved"
    c.reader.retriever = "train"  # fine-tuned first in WORKDIR/retriever
    c.data.dataset = "oke"
    c.data.dir = str(SHARED_DATA)
    c.data.kb = str(SHARED_DATA / "kb" / "gold_titles.tsv")
    c.data.test_split = ",".join(GERBIL_EL_TESTS)
    c.data.num_candidates = 32  # the retriever's top-k each window reads
    c.reader.shuffle_candidates = 0.5  # see reader.shuffle_candidates (relik_jax.training.config)
    c.data.window_size = 32
    c.data.window_stride = 16
    c.reader.entity_symbols = 100
    c.reader.max_starts = 16
    c.reader.max_entities = 32
    c.train.batch_size = 16
    c.train.epochs = 20
    c.optim.learning_rate = 5e-5
    c.optim.head_learning_rate = 5e-4
    c.retriever.epochs = 20
    c.retriever.batch_size = 32
    c.retriever.learning_rate = 2e-5
    c.retriever.mine_hard_negatives = True
    c.retriever.passages_per_batch = 128
    c.checkpoint.every = 100
    c.eval.batch_size = 16
    return variant(c, arg)
