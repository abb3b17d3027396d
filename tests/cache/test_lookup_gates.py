"""The learnt lookup's gates (real MiniLM, shipped head): vetoes are absolute, the guard-score floor
is a penalty that a permissive threshold can overcome, the default threshold cannot."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tokenlean.cache.keys import request_keys
from tokenlean.cache.semantic import DEFAULT_THRESHOLD, NOVELTY_PENALTY, ResponseCache, novelty_penalised
from tokenlean.cache.stores.memory import MemoryStore
from tokenlean.middleware import Message, Request

STORED = "How do I learn Python?"
# Cosine 0.81 to STORED, but many content words STORED lacks: the guard score (0.21) is under the floor.
WORDY = "What is the best way for a complete beginner to start learning Python programming quickly?"


def keys(text: str) -> Any:
    request = Request(
        messages=(Message("system", "Be brief."), Message("user", text)), model="m", temperature=0
    )
    return request_keys(request, tenant=None, namespace="test")


async def cache_with(embedder: Any, text: str) -> ResponseCache:
    cache = ResponseCache(MemoryStore(), embedder=embedder)
    await cache.put(keys(text), "Write code daily.", ttl=None, vector=None)
    return cache


def test_penalty_takes_its_logits_off_the_probability() -> None:
    probability = np.array([0.1, 0.5, 0.9, 0.999])
    logits = np.log(probability / (1 - probability))
    penalised = novelty_penalised(probability)
    assert np.allclose(np.log(penalised / (1 - penalised)), logits - NOVELTY_PENALTY)
    assert np.all(np.diff(penalised) > 0) and np.all(penalised < probability)


async def test_under_the_floor_is_a_miss_at_the_default(embedder: Any) -> None:
    cache = await cache_with(embedder, STORED)
    lookup = await cache.lookup(keys(WORDY))
    assert lookup.hit is None and lookup.rejected == "novelty"


async def test_under_the_floor_hits_at_a_permissive_threshold_with_the_penalised_score(
    embedder: Any,
) -> None:
    cache = await cache_with(embedder, STORED)
    u, v = embedder.embed([WORDY, STORED])
    probability = cache.head.score(WORDY, [STORED], u, v.reshape(1, -1))[0]
    expected = float(novelty_penalised(np.array([probability]))[0])
    assert expected < DEFAULT_THRESHOLD["learned"]
    below = await cache.lookup(keys(WORDY), threshold=expected * 0.99)
    above = await cache.lookup(keys(WORDY), threshold=min(1.0, expected * 1.01 + 1e-6))
    assert below.hit is not None and below.hit.kind == "semantic"
    assert below.hit.score == pytest.approx(expected, rel=1e-5) and below.hit.score < probability
    assert above.hit is None and above.rejected == "novelty"


async def test_a_veto_holds_at_any_threshold(embedder: Any) -> None:
    cache = await cache_with(embedder, "What is 17 times 23?")
    lookup = await cache.lookup(keys("What is 17 times 24?"), threshold=1e-6)
    assert lookup.hit is None and lookup.rejected == "numbers"
