"""Paper-scale entity linking (ReLiK-large's reader): DeBERTa-v3-large, 100 candidates per window,
rows up to 1024 tokens, bf16 compute — for TPU slices.

  python -m relik_jax.aot --config=configs/aida_large.py --topology=v5e-8 --find-max-batch   # no weights needed
  python -m relik_jax.train --config=configs/aida_large.py --config.model.encoder=DEBERTA_V3_LARGE_FOLDER \\
      --config.data.dir=AIDA_FOLDER --config.data.kb=titles.tsv
`model.encoder` names the public model: `aot` compiles from its published shapes
(relik_jax/resources/encoder_shapes); training needs the weights in a local folder. The memory levers
(`model.remat`, `mesh.fsdp`, `optim.accumulate`) are measured by `aot` (README, "TPU").
"""

from relik_jax.training.config import base_config, variant


def get_config(arg: str | None = None):
    c = base_config()
    c.reader.task = "el"
    c.data.dataset = "aida"
    c.model.encoder = "microsoft/deberta-v3-large"
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "layer"
    c.mesh.fsdp = True
    c.data.num_candidates = 100
    c.reader.entity_symbols = 100
    c.reader.max_starts = 24
    c.reader.max_entities = 24
    c.data.max_length = 1024
    c.train.batch_size = 64
    c.train.epochs = 10
    c.optim.learning_rate = 1e-5
    c.optim.head_learning_rate = 1e-4
    return variant(c, arg)
