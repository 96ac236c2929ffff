"""TextEncoder: bucketed static shapes (one compilation per bucket), pooling, truncation."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from relik_jax.core.shapes import count_compilations
from relik_jax.encoders.text_encoder import TextEncoder, truncate_ids


@pytest.fixture(scope="module")
def encoder(minilm):
    module, params, config, tok = minilm
    return TextEncoder(module, params, tok, config, max_length=128, batch_size=8, length_buckets=(16, 32, 64))


def _texts(rng, n, min_words, max_words):
    words = [
        "the",
        "river",
        "city",
        "capital",
        "of",
        "france",
        "paris",
        "nobel",
        "prize",
        "physics",
        "chemistry",
        "marie",
        "curie",
    ]
    return [" ".join(rng.choice(words, rng.integers(min_words, max_words + 1))) for _ in range(n)]


def test_forward_compiles_once_per_bucket(encoder):
    rng = np.random.default_rng(0)
    # Warm up every length bucket (16, 32, 64, 128 tokens) at batch 8: one compilation each.
    with count_compilations() as warm:
        for n_words in (3, 20, 50, 100):
            batch = encoder.tokenize(["word " * n_words] * 8)
            encoder.forward(batch)
    assert warm.count == 4
    with count_compilations() as c:
        for _ in range(20):
            encoder.forward(encoder.tokenize(_texts(rng, 8, 2, 5)))
            encoder.forward(encoder.tokenize(_texts(rng, 8, 18, 25)))
    assert c.count == 0
    # A new bucket compiles exactly once.
    with count_compilations() as c:
        for _ in range(3):
            encoder.forward(encoder.tokenize(_texts(rng, 3, 2, 5)))
    assert c.count == 1


def test_encode_matches_unbatched_and_keeps_order(encoder):
    rng = np.random.default_rng(1)
    texts = _texts(rng, 19, 1, 30)
    batched = encoder.encode(texts)
    one_by_one = np.concatenate([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=2e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_truncation_keeps_the_closing_token_and_warns(encoder, caplog):
    long_text = "word " * 400
    ids, cut = truncate_ids(encoder.tokenizer, [long_text, "short"], 128)
    assert cut == 1 and len(ids[0]) == 128 and ids[0][-1] == encoder.tokenizer.sep_token_id
    exact, cut = truncate_ids(encoder.tokenizer, ["word " * 126], 128)
    assert cut == 0 and len(exact[0]) == 128
    with caplog.at_level(logging.WARNING):
        encoder.tokenize([long_text])
    assert "truncated" in caplog.text
