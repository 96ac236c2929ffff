"""Closed IE (entity linking + relations in one pass) on REBEL; with no data folder, on the
bundled cIE sample — the README's first command.

  python -m relik_jax.train --config=configs/rebel.py                         # bundled sample
  python -m relik_jax.train --config=configs/rebel.py --config.data.dir=REBEL_FOLDER \\
      --config.data.kb=titles.tsv --config.data.relations=relations.tsv
"""

from relik_jax.training.config import base_config, variant


def get_config(arg: str | None = None):
    c = base_config()
    c.reader.task = "cie"
    c.data.dataset = "rebel"
    c.data.num_candidates = 20
    c.reader.entity_symbols = 32
    c.reader.relation_symbols = 8
    c.train.batch_size = 16
    c.train.epochs = 6
    c.optim.learning_rate = 1e-4
    c.optim.head_learning_rate = 1e-3
    c.checkpoint.every = 50
    c.eval.every = 25
    return variant(c, arg)
