"""The MiniLM embedder keeps recent single-text vectors, so stages embedding one request's text share a pass."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tokenlean import embeddings
from tokenlean.embeddings import SentenceTransformerEmbedder


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture
def passes(embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many texts each call of the real model encoded."""
    encode, seen = embedder._model.encode, []

    def counted(texts: list[str], **kwargs: Any) -> Any:
        seen.append(len(texts))
        return encode(texts, **kwargs)

    monkeypatch.setattr(embedder._model, "encode", counted)
    embedder._recent.clear()
    return seen


def test_the_same_text_runs_the_model_once(embedder: SentenceTransformerEmbedder, passes: list[int]) -> None:
    first = embedder.embed(["What is the capital of France?"])
    again = embedder.embed(["What is the capital of France?"])
    other = embedder.embed(["What is the capital of Spain?"])
    assert passes == [1, 1]
    assert np.array_equal(first, again) and first.shape == (1, embedder.dimension)
    assert not np.allclose(first, other)


def test_a_kept_vector_cannot_be_changed_through_a_result(
    embedder: SentenceTransformerEmbedder, passes: list[int]
) -> None:
    first = embedder.embed(["Name three colours."])
    first[0, :] = 0.0
    assert np.linalg.norm(embedder.embed(["Name three colours."])) == pytest.approx(1.0, abs=1e-5)


def test_batches_are_not_kept_and_the_kept_texts_are_bounded(
    embedder: SentenceTransformerEmbedder, passes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embeddings, "RECENT_TEXTS", 2)
    embedder.embed(["one", "two"])
    embedder.embed(["one", "two"])
    for text in ("a", "b", "c", "a"):  # "a" was pushed out by "c"
        embedder.embed([text])
    assert passes == [2, 2, 1, 1, 1, 1]
