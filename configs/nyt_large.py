"""Paper-scale relation extraction (ReLiK-large's reader): DeBERTa-v3-large on NYT's 24 relations,
bf16 compute — for TPU slices.

  python -m relik_jax.aot --config=configs/nyt_large.py --topology=v5e-8 --find-max-batch   # no weights needed
  python -m relik_jax.train --config=configs/nyt_large.py --config.model.encoder=DEBERTA_V3_LARGE_FOLDER \\
      --config.data.dir=NYT_FOLDER
See configs/aida_large.py for `model.encoder` and the memory levers.
"""

from relik_jax.training.config import base_config, variant


def get_config(arg: str | None = None):
    c = base_config()
    c.reader.task = "re"
    c.data.dataset = "nyt"
    c.model.encoder = "microsoft/deberta-v3-large"
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "layer"
    c.mesh.fsdp = True
    c.reader.relation_symbols = 24
    c.reader.max_starts = 24
    c.reader.max_entities = 24
    c.data.max_length = 512
    c.train.batch_size = 64
    c.train.epochs = 10
    c.optim.learning_rate = 2e-5
    return variant(c, arg)
