"""The duplicate head: symmetric features, numpy inference that matches its weights, the shipped
weights load and separate a reworded question from a near miss (real MiniLM)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tokenlean.cache.head import LEXICAL, DuplicateHead, lexical_features, shipped_head


def random_head(rng: np.random.Generator, dimension: int = 8) -> DuplicateHead:
    width = len(LEXICAL) + 2 * dimension
    return DuplicateHead(
        {
            "depth": np.array(2),
            "mean": rng.standard_normal(len(LEXICAL)),
            "scale": rng.uniform(0.5, 2.0, len(LEXICAL)),
            "w0": rng.standard_normal((width, 5)),
            "b0": rng.standard_normal(5),
            "w1": rng.standard_normal((5, 1)),
            "b1": rng.standard_normal(1),
            "vocabulary": np.array(["cat", "dog", "rare"]),
            "idf": np.array([1.0, 1.5, 6.0]),
            "unknown_idf": np.array(8.0),
        }
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Is a cat bigger than a dog?", "Is a dog bigger than a cat?"),
        ("How do I learn Python in 30 days?", "What is the best way to learn Python quickly?"),
        ("Why can't I sleep?", "Why do I sleep so much, Doctor Who?"),
    ],
)
def test_features_and_score_are_symmetric(a: str, b: str) -> None:
    assert lexical_features(a, b, 0.8, {"cat": 2.0}, 5.0) == lexical_features(b, a, 0.8, {"cat": 2.0}, 5.0)
    rng = np.random.default_rng(0)
    head = random_head(rng)
    u, v = rng.standard_normal(8), rng.standard_normal(8)
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    assert head.score(a, [b], u, v[None]) == pytest.approx(head.score(b, [a], v, u[None]), abs=1e-6)


def test_forward_is_the_two_layer_perceptron_of_its_weights() -> None:
    rng = np.random.default_rng(1)
    head = random_head(rng)
    rows = rng.standard_normal((3, len(LEXICAL) + 16)).astype(np.float32)
    (w0, b0), (w1, b1) = head.layers
    expected = 1 / (1 + np.exp(-(np.maximum(rows @ w0 + b0, 0) @ w1 + b1)[:, 0]))
    assert np.allclose(head.forward(rows), expected, atol=1e-5)
    assert head.score("q", [], rows[0], rows[:0]) == []


def test_rare_words_only_one_side_has_weigh_more() -> None:
    idf = {"the": 0.1, "weight": 3.0, "lose": 4.0, "gain": 4.0, "fast": 2.5, "how": 0.2}
    near = lexical_features("how to lose weight fast", "how to gain weight fast", 0.9, idf, 9.0)
    same = lexical_features("how to lose weight fast", "how to lose the weight fast", 0.9, idf, 9.0)
    top = LEXICAL.index("idf_novel_top")
    assert near[top] == 4.0 and same[top] == 0.1


def test_shipped_head_separates_rewording_from_near_miss(embedder: Any) -> None:
    head = shipped_head()
    texts = [
        "How can I lose weight quickly?",
        "What is the fastest way to lose weight?",
        "How can I gain weight quickly?",
        "How can I lose weight quickly after pregnancy?",
    ]
    vectors = embedder.embed(texts)
    duplicate, *near_misses = head.score(texts[0], texts[1:], vectors[0], vectors[1:])
    assert all(0.0 <= p <= 1.0 for p in (duplicate, *near_misses))
    assert duplicate > max(near_misses)
