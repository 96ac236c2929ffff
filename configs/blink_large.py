"""Paper-scale retriever (ReLiK's E5-base bi-encoder) on BLINK: 64 questions x 400 in-batch passages
per step, bf16 compute — for TPU slices.

  python -m relik_jax.aot --config=configs/blink_large.py --topology=v5e-8 --find-max-batch   # no weights needed
  python -m relik_jax.train --config=configs/blink_large.py --config.model.encoder=E5_BASE_V2_FOLDER \\
      --config.data.dir=BLINK_FOLDER
"""

from relik_jax.training.config import base_config, variant


def get_config(arg: str | None = None):
    c = base_config()
    c.kind = "retriever"
    c.data.dataset = "blink"
    c.model.encoder = "intfloat/e5-base-v2"
    c.model.compute_dtype = "bfloat16"
    c.train.batch_size = 64
    c.train.epochs = 2
    c.optim.learning_rate = 1e-5
    c.optim.head_learning_rate = 0.0
    c.optim.layer_decay = 1.0
    c.retriever.passages_per_batch = 400
    c.retriever.question_max_length = 64
    c.retriever.passage_max_length = 64
    c.eval.max_docs = 2000
    return variant(c, arg)
