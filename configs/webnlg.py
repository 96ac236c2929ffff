"""RE on WebNLG (exact match, 216 relations: read in groups of `reader.relation_symbols` per row).

  python -m relik_jax.train --config=configs/webnlg.py --config.data.dir=../shared/data/webnlg
`:tiny`: the bundled RE sample.
"""

from relik_jax.training.config import base_config, variant


def get_config(arg: str | None = None):
    c = base_config()
    c.reader.task = "re"
    c.data.dataset = "webnlg"
    c.reader.relation_symbols = 24
    c.train.batch_size = 32
    c.train.epochs = 10
    c.optim.learning_rate = 1e-4
    return variant(c, arg)
