"""The duplicate head: symmetric features, numpy inference that matches its weights, the shipped
weights load and separate a reworded question from a near miss (real MiniLM)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tokenlean.cache.head import LEXICAL, DuplicateHead, lexical_features, shipped_head


def random_head(rng: np.random.Generator, dimension: int = 8) -> DuplicateHead:
    """One raw-feature perceptron (the unprefixed format) over ``[lexical, u*v, |u-v|]``."""
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


def adapter_ensemble(rng: np.random.Generator, dimension: int = 8, members: int = 3) -> DuplicateHead:
    """``members`` perceptrons, each with its own adapter, over ``[lexical, a*b, |a-b|, a.b]``."""
    width = len(LEXICAL) + 2 * dimension + 1
    weights: dict[str, Any] = {
        "members": np.array(members),
        "mean": rng.standard_normal(len(LEXICAL)),
        "scale": rng.uniform(0.5, 2.0, len(LEXICAL)),
    }
    for k in range(members):
        weights |= {
            f"m{k}_adapter": rng.standard_normal((dimension, dimension)),
            f"m{k}_raw": np.array(0),
            f"m{k}_depth": np.array(2),
            f"m{k}_w0": rng.standard_normal((width, 4)),
            f"m{k}_b0": rng.standard_normal(4),
            f"m{k}_w1": rng.standard_normal((4, 1)),
            f"m{k}_b1": rng.standard_normal(1),
        }
    return DuplicateHead(weights)


def unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True))


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
    u, v = unit(rng.standard_normal(8)), unit(rng.standard_normal(8))
    for head in (random_head(rng), adapter_ensemble(rng)):
        assert head.score(a, [b], u, v[None]) == pytest.approx(head.score(b, [a], v, u[None]), abs=1e-5)


def test_forward_is_the_two_layer_perceptron_of_its_weights() -> None:
    rng = np.random.default_rng(1)
    head = random_head(rng)
    lexical = rng.standard_normal((3, len(LEXICAL))).astype(np.float32)
    u, v = unit(rng.standard_normal((3, 8))), unit(rng.standard_normal((3, 8)))
    (w0, b0), (w1, b1) = head.members[0].layers
    x = np.hstack([lexical, u * v, np.abs(u - v)])
    expected = 1 / (1 + np.exp(-(np.maximum(x @ w0 + b0, 0) @ w1 + b1)[:, 0]))
    assert np.allclose(head.forward(np.hstack([lexical, u, v]).astype(np.float32)), expected, atol=1e-5)
    assert head.score("q", [], u[0], u[:0]) == []


def test_ensemble_averages_its_members_logits_over_adapted_vectors() -> None:
    rng = np.random.default_rng(2)
    head = adapter_ensemble(rng)
    lexical = rng.standard_normal((4, len(LEXICAL))).astype(np.float32)
    u, v = unit(rng.standard_normal((4, 8))), unit(rng.standard_normal((4, 8)))
    logits = []
    for member in head.members:
        assert member.adapter is not None and not member.raw
        a, b = unit(u @ member.adapter), unit(v @ member.adapter)
        x = np.hstack([lexical, a * b, np.abs(a - b), np.sum(a * b, axis=1, keepdims=True)])
        (w0, b0), (w1, b1) = member.layers
        logits.append((np.maximum(x @ w0 + b0, 0) @ w1 + b1)[:, 0])
    expected = 1 / (1 + np.exp(-np.mean(logits, axis=0)))
    assert np.allclose(head.forward(np.hstack([lexical, u, v]).astype(np.float32)), expected, atol=1e-5)


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
