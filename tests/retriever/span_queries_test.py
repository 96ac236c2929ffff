"""BEER2 span queries: token ranges of character spans, the merge rules, and span vectors that are
the mean of their tokens' states (checked against the encoder's own hidden states)."""

from __future__ import annotations

import numpy as np
import pytest

from relik_jax.core.errors import ConfigError
from relik_jax.retriever.dense import DenseRetriever, Hit
from relik_jax.retriever.span_queries import merge, token_ranges


def _hits(*pairs):
    return [Hit(t, t, s) for t, s in pairs]


def test_token_ranges_skip_special_tokens_and_cut_spans():
    offsets = [(0, 0), (0, 5), (6, 11), (12, 15), (15, 18), (0, 0)]  # [CLS] Marie Curie wa ##s [SEP]
    assert token_ranges(offsets, [(0, 11), (6, 11), (13, 16), (40, 45)]) == [(1, 3), (2, 3), (3, 5), None]


def test_interleave_gives_every_span_its_best_passage():
    window = _hits(("A", 9.0), ("B", 8.0), ("C", 7.0))
    spans = [_hits(("X", 1.0), ("A", 0.5)), _hits(("Y", 2.0))]
    assert [h.text for h in merge(window, spans, 4, "interleave")] == ["A", "X", "Y", "B"]
    assert [h.text for h in merge(window, spans, 4, "score")] == ["A", "B", "C", "Y"]
    with pytest.raises(ConfigError, match="unknown span merge rule"):
        merge(window, spans, 3, "sum")


def test_span_vectors_are_pooled_token_states(minilm_path):
    r = DenseRetriever.from_encoder(minilm_path)
    text = "Marie Curie was born in Warsaw ."
    windows, spans = r.embed_spans([text, "Rome"], [[(0, 11), (24, 30)], []])
    np.testing.assert_allclose(windows, r.embed_questions([text, "Rome"]), atol=1e-5)
    assert spans[0].shape == (2, 384) and spans[1].shape == (0, 384)
    # a span covering the whole text (all tokens but [CLS]/[SEP]) is close to, not equal to, the window
    whole = r.embed_spans([text], [[(0, len(text))]])[1][0][0]
    cos = whole @ windows[0] / np.linalg.norm(whole) / np.linalg.norm(windows[0])
    assert 0.9 < cos < 1.0 - 1e-6
    # Warsaw's span query retrieves Warsaw first among titles the window query ranks otherwise
    titles = ["Marie Curie", "Warsaw", "Paris", "Physics"]
    r.build_index(titles, titles, progress=False)
    merged = r.retrieve_with_spans([text], [[(24, 30)]], k=2, span_k=1, rule="interleave")[0]
    assert "Warsaw" in [h.text for h in merged]
