"""Small JAX helpers: compilation counting, shape buckets."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import jax

_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@dataclasses.dataclass
class CompileCount:
    """Number of XLA backend compilations seen while the context was open."""

    count: int = 0


@contextlib.contextmanager
def count_compilations() -> Iterator[CompileCount]:
    """Counts XLA compilations (cache hits excluded) inside the `with` block.

    >>> with count_compilations() as c:
    ...     f(x)
    >>> c.count
    """
    counter = CompileCount()

    def listener(event: str, duration_secs: float, **kwargs) -> None:
        if event == _BACKEND_COMPILE_EVENT:
            counter.count += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counter
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def bucket(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket ≥ n; `ValueError` when n exceeds the largest."""
    for b in sorted(buckets):
        if n <= b:
            return b
    raise ValueError(f"{n} exceeds the largest bucket {max(buckets)}")


def capped_buckets(buckets: Sequence[int], limit: int) -> tuple[int, ...]:
    """The buckets below `limit`, then `limit` itself (the largest bucket is the cap)."""
    return (*(b for b in buckets if b < limit), limit)


def power_of_two_buckets(max_size: int) -> tuple[int, ...]:
    """1, 2, 4, … up to and including `max_size`."""
    out, b = [], 1
    while b < max_size:
        out.append(b)
        b *= 2
    out.append(max_size)
    return tuple(out)
