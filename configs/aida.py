"""Entity linking on AIDA-CoNLL (reader; candidates = gold titles + KB distractors).

  python -m relik_jax.train --config=configs/aida.py --config.data.dir=AIDA_FOLDER --config.data.kb=titles.tsv
AIDA_FOLDER holds train.jsonl, dev.jsonl, test.jsonl in ReLiK EL jsonl (the AIDA text is not
redistributable: convert your own copy). `:tiny` trains on the bundled EL sample.
"""

from relik_jax.training.config import base_config, variant


def get_config(arg: str | None = None):
    c = base_config()
    c.reader.task = "el"
    c.data.dataset = "aida"
    c.data.num_candidates = 50
    c.reader.entity_symbols = 100
    c.train.batch_size = 16
    c.train.epochs = 10
    c.optim.learning_rate = 5e-5
    c.optim.head_learning_rate = 5e-4
    return variant(c, arg)
