"""RE on CoNLL04 with typed entities (the official recipe's reader): relik 1.0.7's typed-entity /
closed-IE reader (`reader.task = "typed"`) reads the four entity types (Loc, Org, Peop, Other) as its
span candidates, labels every span with one and feeds the type into the relation features. MiniLM.

python -m relik_jax.train --config=configs/conll04_typed.py --config.data.dir=../shared/data/conll04
python -m relik_jax.train --config=configs/conll04_typed.py:tiny    # the bundled sample, a few steps
"""

from relik_jax.training.config import base_config, variant


def get_config(arg: str | None = None):
    c = base_config()
    c.reader.task = "typed"
    c.reader.entity_symbols = 8  # --NME-- + [E-0..7]: the 4 types and room
    c.reader.relation_symbols = 8
    c.reader.use_nme = True
    c.reader.retriever = "none"  # the candidates are the types, every window reads all of them
    c.data.dataset = "conll04"
    c.data.num_candidates = 4
    c.data.window_size = 32
    c.data.window_stride = 16
    c.train.batch_size = 8
    c.train.epochs = 15
    c.optim.learning_rate = 1e-4
    c.optim.head_learning_rate = 5e-4
    c.optim.layer_decay = 0.9
    c.checkpoint.every = 500
    c.eval.every = 0
    c.eval.tune_threshold = True
    return variant(c, arg)
