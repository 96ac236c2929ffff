"""The contract between the training loop and what it trains (`ReaderTask`, `RetrieverTask`).

The loop (`relik_jax.training.loop.train_and_evaluate`) knows nothing of readers or retrievers: it
asks the task for its batches, differentiates its loss, evaluates with it and, at the end, hands it
the best params (`finish`: threshold tuning, test evaluation, exports). Params are always passed in;
a task never holds the params being trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np


@dataclasses.dataclass
class Finish:
    """What a task's `finish` made of the best params: metrics rows to report and written folders."""

    rows: dict[str, dict[str, float]]  # split (and setting) → metrics
    exports: dict[str, Path] = dataclasses.field(default_factory=dict)  # what → folder (e.g. "reader", "bundle")


class Task(Protocol):
    batch_size: int  # global rows per step
    num_layers: int  # encoder layers (layer-wise learning-rate decay)
    main_metric: str  # the `evaluate` key that selects the best checkpoint (higher is better)
    replicated_keys: tuple[str, ...]  # batch fields every device reads whole (not split over 'data')
    init_params: Any  # the params training starts from (plain arrays)
    frozen_keys: tuple[str, ...]  # top-level param keys the optimizer leaves as they are (e.g. a frozen tower)

    def abstract_params(self) -> Any:
        """Shapes and logical axis names of the params (boxed), without allocating them."""

    def steps_per_epoch(self) -> int: ...

    def begin_epoch(self, epoch: int, params: Any) -> None:
        """Called before the batches of `epoch` are built (e.g. hard-negative mining)."""

    def epoch_order(self, epoch: int) -> Sequence[Sequence[int]]:
        """The example indices of each batch of `epoch`; the same on every host and after a resume."""

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """The global batch of `indices`, padded to `batch_size` rows; `row_valid` marks the real ones."""

    def loss(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array | None) -> tuple[jax.Array, dict]:
        """`(loss, auxiliary metrics)`; `rng` is the dropout key (None: deterministic)."""

    def evaluate(self, params: Any, split: str | None = None) -> dict[str, float]:
        """Metrics of `params` on a split (default: the config's eval split)."""

    def export(self, params: Any, folder: Path) -> Path:
        """Writes `params` as the task's model folder (a reader folder, a retriever folder)."""

    def finish(self, params: Any, workdir: Path, best: dict[str, float]) -> Finish:
        """End-of-training policy with the best params (`best`: their dev metrics)."""
