"""Retriever pre-training on BLINK (DPR jsonl: question, positive_ctxs, hard_negative_ctxs).

  python -m relik_jax.train --config=configs/blink.py --config.data.dir=BLINK_FOLDER
BLINK_FOLDER holds train.jsonl and dev.jsonl. With no data folder (or `:tiny`), the bundled EL
sample is turned into DPR samples (window → its gold entities' passages).
"""

from relik_jax.training.config import base_config, variant


def get_config(arg: str | None = None):
    c = base_config()
    c.kind = "retriever"
    c.data.dataset = "blink"
    c.train.batch_size = 32
    c.train.epochs = 2
    c.optim.learning_rate = 2e-5
    c.optim.head_learning_rate = 0.0
    c.optim.layer_decay = 1.0
    c.retriever.passages_per_batch = 128
    c.eval.max_docs = 2000
    return variant(c, arg)
