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


def test_a_kept_vector_is_read_while_the_model_is_busy(
    embedder: SentenceTransformerEmbedder, passes: list[int]
) -> None:
    """A later stage of one request does not queue behind another request's pass through the model."""
    import threading

    first = embedder.embed(["How do tides work?"])
    results: list[np.ndarray] = []
    with embedder._lock:  # another request's text is being embedded
        reader = threading.Thread(target=lambda: results.append(embedder.embed(["How do tides work?"])))
        reader.start()
        reader.join(timeout=60)
        finished_while_busy = not reader.is_alive()
    reader.join()
    assert finished_while_busy
    assert passes == [1] and np.array_equal(results[0], first)


def test_texts_queued_behind_a_busy_model_run_as_one_batch(
    embedder: SentenceTransformerEmbedder, passes: list[int]
) -> None:
    """Concurrent requests' texts share one pass; each gets its own text's vector."""
    import threading
    import time

    texts = ["Why is the sky blue?", "How do I bake bread at home?", "What is a prime number?"]
    results: dict[str, np.ndarray] = {}

    def embed(text: str) -> None:
        results[text] = embedder.embed([text])

    with embedder._lock:  # the model is busy with another request
        readers = [threading.Thread(target=embed, args=(text,)) for text in texts]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + 60
        while len(embedder._waiting) < len(texts) and time.monotonic() < deadline:
            time.sleep(0.01)
    for reader in readers:
        reader.join()
    assert passes == [3]
    embedder._recent.clear()
    for text in texts:
        alone = embedder.embed([text])
        np.testing.assert_allclose(results[text], alone, atol=1e-5)
    assert passes == [3, 1, 1, 1]


def test_concurrent_callers_each_get_their_own_texts_vector(embedder: SentenceTransformerEmbedder) -> None:
    """Eight threads embedding overlapping texts, batched and kept in any interleaving."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"Question {i}: how far is planet {i} from its star?" for i in range(12)]
    embedder._recent.clear()
    reference = {text: embedder._encode([text])[0] for text in texts}
    embedder._recent.clear()
    calls = [texts[(7 * k) % len(texts)] for k in range(96)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda text: embedder.embed([text]), calls))
    for text, vector in zip(calls, results, strict=True):
        np.testing.assert_allclose(vector[0], reference[text], atol=1e-5)
    assert not embedder._waiting


def test_texts_that_differ_only_in_whitespace_share_one_pass(
    embedder: SentenceTransformerEmbedder, passes: list[int]
) -> None:
    """The cache embeds its cleaned query, the router the raw turn: MiniLM reads the same word pieces."""
    raw = "Pulley formulas\r\na) the speed of one pulley  "
    cleaned = "Pulley formulas\na) the speed of one pulley"
    first = embedder.embed([raw])
    second = embedder.embed([cleaned])
    assert passes == [1]
    np.testing.assert_allclose(first, second, atol=1e-6)
    embedder.embed(["Pulley formulas\na) the speed of two pulleys"])
    assert passes == [1, 1]
