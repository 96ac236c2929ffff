"""Shape buckets."""

from __future__ import annotations

import pytest

from relik_jax.core.shapes import bucket, power_of_two_buckets


def test_buckets():
    assert bucket(17, (16, 32, 64)) == 32 and bucket(16, (16, 32)) == 16
    with pytest.raises(ValueError, match="exceeds the largest bucket"):
        bucket(65, (16, 32, 64))
    assert power_of_two_buckets(32) == (1, 2, 4, 8, 16, 32)
    assert power_of_two_buckets(24) == (1, 2, 4, 8, 16, 24)
