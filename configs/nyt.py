"""RE on NYT (exact match, 24 relations).

  python -m relik_jax.train --config=configs/nyt.py --config.data.dir=NYT_FOLDER
NYT_FOLDER holds train.jsonl, dev.jsonl, test.jsonl in ReLiK RE jsonl. `:tiny`: the bundled RE sample.
"""

from relik_jax.training.config import base_config, variant


def get_config(arg: str | None = None):
    c = base_config()
    c.reader.task = "re"
    c.data.dataset = "nyt"
    c.reader.relation_symbols = 24
    c.train.batch_size = 32
    c.train.epochs = 10
    c.optim.learning_rate = 1e-4
    return variant(c, arg)
