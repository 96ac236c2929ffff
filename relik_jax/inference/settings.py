"""The per-call settings of `Relik` (a bundle stores its own defaults)."""

from __future__ import annotations

import dataclasses
from typing import Any

from relik_jax.core.errors import ConfigError
from relik_jax.retriever.span_queries import MERGE_RULES

ANNOTATION_TYPES = ("char", "word")


@dataclasses.dataclass
class Settings:
    """Per-call settings with their defaults (a bundle stores its own)."""

    top_k: int = 100
    window_size: int = 32
    window_stride: int = 16
    relation_threshold: float | None = None  # None: the reader's own
    annotation_type: str = "char"
    # BEER2 bundles: passages retrieved per span the reader found in a first pass (0: off), merged with
    # the window's own by `span_merge` (relik_jax.retriever.span_queries) before the second, final pass
    span_queries: int = 0
    span_merge: str = "interleave"

    def replace(self, **changes: Any) -> Settings:
        changes = {k: v for k, v in changes.items() if v is not None}
        out = dataclasses.replace(self, **changes)
        out.validate()
        return out

    def validate(self) -> None:
        if self.annotation_type not in ANNOTATION_TYPES:
            raise ConfigError(f"annotation_type must be one of {ANNOTATION_TYPES}, got {self.annotation_type!r}")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        if self.window_size < 1 or self.window_stride < 1:
            raise ConfigError(
                f"window_size and window_stride must be >= 1, got {self.window_size}, {self.window_stride}"
            )
        if self.window_stride > self.window_size:
            raise ConfigError(f"window_stride {self.window_stride} > window_size {self.window_size} would skip words")
        if self.span_queries < 0:
            raise ConfigError(f"span_queries must be >= 0, got {self.span_queries}")
        if self.span_merge not in MERGE_RULES:
            raise ConfigError(f"span_merge must be one of {MERGE_RULES}, got {self.span_merge!r}")
        t = self.relation_threshold
        if t is not None and not 0.0 <= t <= 1.0:
            raise ConfigError(f"relation_threshold must be in [0, 1], got {t}")
