"""CacheStage over FakeBackend with the real MiniLM embedder: hits, misses, policy, options, streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.cache import CacheStage
from tokenlean.cache.head import DEFAULT_THRESHOLD
from tokenlean.cache.stores.memory import MemoryStore
from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.middleware import Chunk, Event, Message, Pipeline, Request, Response


def ask(user: str, system: str = "You are a helpful assistant.", **kw: Any) -> Request:
    fields: dict[str, Any] = {"model": "fake", "temperature": 0, **kw}
    return Request(messages=(Message("system", system), Message("user", user)), **fields)


def cache_event(response: Response) -> Event:
    return next(e for e in response.events if e.stage == "cache" and e.action != "timing")


def setup(embedder: Any, **options: Any) -> tuple[Pipeline, FakeBackend, CacheStage]:
    backend = FakeBackend(lambda r: f"answer to: {r.last_user_text}")
    stage = CacheStage(embedder=embedder, **options)
    return Pipeline(backend, [stage]), backend, stage


async def test_exact_miss_then_hit(embedder: Any) -> None:
    pipeline, backend, _ = setup(embedder)
    first = await pipeline(ask("What is the capital of France?"))
    second = await pipeline(ask("What is the capital of France?"))
    assert cache_event(first).action == "miss" and cache_event(first).data["stored"] is True
    event = cache_event(second)
    assert event.action == "hit" and event.data["kind"] == "exact" and event.data["similarity"] == 1.0
    assert second.text == first.text and len(backend.requests) == 1
    assert event.data["saved_completion_tokens"] == first.usage.completion_tokens


async def test_semantic_hit_on_a_paraphrase(embedder: Any) -> None:
    pipeline, backend, _ = setup(embedder)
    await pipeline(ask("How do I learn Python?"))
    hit = await pipeline(ask("How can I learn Python?"))
    event = cache_event(hit)
    assert event.action == "hit" and event.data["kind"] == "semantic"
    assert event.data["score"] >= DEFAULT_THRESHOLD["learned"] and event.data["similarity"] < 1.0
    assert hit.text == "answer to: How do I learn Python?" and len(backend.requests) == 1


async def test_near_miss_is_rejected_by_the_head(embedder: Any) -> None:
    pipeline, backend, _ = setup(embedder)
    await pipeline(ask("How do I lose weight fast?"))
    near = await pipeline(ask("How do I lose belly fat fast?"))
    event = cache_event(near)
    assert event.action == "miss" and event.data["rejected"] == "head" and len(backend.requests) == 2


async def test_guard_decision_keeps_the_earlier_rule(embedder: Any) -> None:
    pipeline, _, stage = setup(embedder, decision="guard")
    assert stage.cache.threshold == DEFAULT_THRESHOLD["guard"] == 0.7
    await pipeline(ask("How do I learn Python?"))
    event = cache_event(await pipeline(ask("How can I learn Python?")))
    assert event.action == "hit" and 0.7 <= event.data["score"] <= event.data["similarity"] < 1.0
    with pytest.raises(ConfigError):
        CacheStage(decision="magic")  # type: ignore[arg-type]


async def test_different_system_prompt_never_hits(embedder: Any) -> None:
    pipeline, backend, _ = setup(embedder)
    await pipeline(ask("How do I say good morning?", system="Answer in French."))
    same_question = await pipeline(ask("How do I say good morning?", system="Answer in German."))
    paraphrase = await pipeline(ask("How can I say good morning?", system="Answer in Spanish."))
    assert cache_event(same_question).action == "miss" and cache_event(paraphrase).action == "miss"
    control = await pipeline(ask("How can I say good morning?", system="Answer in French."))
    assert cache_event(control).action == "hit"  # the same paraphrase does match within its own context
    assert len(backend.requests) == 3


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("Is a cat bigger than a dog?", "Is a dog bigger than a cat?"),
        ("Is Berlin larger than Paris?", "Is Paris larger than Berlin?"),
        ("What is 17 times 23?", "What is 17 times 24?"),
        ("How much is 250 euros in dollars?", "How much is 350 euros in dollars?"),
        ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"),
    ],
)
async def test_reversed_comparison_changed_number_or_negation_never_hits(
    embedder: Any, stored: str, asked: str
) -> None:
    pipeline, backend, _ = setup(embedder, threshold=0.05)  # even at a near-zero threshold
    await pipeline(ask(stored))
    response = await pipeline(ask(asked))
    event = cache_event(response)
    assert event.action == "miss" and event.data.get("rejected") in {
        "order",
        "numbers",
        "negation",
        "direction",
    }
    assert response.text == f"answer to: {asked}" and len(backend.requests) == 2


async def test_sampled_requests_are_not_cached_unless_configured(embedder: Any) -> None:
    pipeline, backend, _ = setup(embedder)
    for _ in range(2):
        response = await pipeline(ask("Tell me a story.", temperature=0.8))
    assert cache_event(response).action == "skip" and len(backend.requests) == 2
    seeded = [await pipeline(ask("Tell me a story.", temperature=0.8, seed=7)) for _ in range(2)]
    assert cache_event(seeded[1]).action == "hit"
    lax, lax_backend, _ = setup(embedder, deterministic_only=False)
    for _ in range(2):
        response = await lax(ask("Tell me a story.", temperature=0.8))
    assert cache_event(response).action == "hit" and len(lax_backend.requests) == 1


async def test_tenants_never_share_entries(embedder: Any) -> None:
    pipeline, backend, _ = setup(embedder)
    await pipeline(ask("What is our refund policy?", tenant="key-alice"))
    other = await pipeline(ask("What is our refund policy?", tenant="key-bob"))
    again = await pipeline(ask("What is our refund policy?", tenant="key-alice"))
    assert cache_event(other).action == "miss" and cache_event(again).action == "hit"
    assert len(backend.requests) == 2


async def test_per_request_controls(embedder: Any) -> None:
    pipeline, backend, _ = setup(embedder)
    question = "Name three primary colours."
    no_store = await pipeline(ask(question, options={"cache": {"no_store": True}}))
    assert cache_event(no_store).data["stored"] is False
    await pipeline(ask(question))
    no_cache = await pipeline(ask(question, options={"cache": {"no_cache": True}}))
    assert cache_event(no_cache).action == "miss" and cache_event(no_cache).data["read"] is False
    spaced = await pipeline(ask(question, options={"cache": {"namespace": "eval-run-2"}}))
    assert cache_event(spaced).action == "miss"
    off = await pipeline(ask(question, options={"cache": False}))
    assert not [e for e in off.events if e.stage == "cache" and e.action != "timing"]
    exact_only = await pipeline(ask("Name 3 primary colours please.", options={"cache": {"semantic": False}}))
    assert cache_event(exact_only).action == "miss"
    assert len(backend.requests) == 6


async def test_ttl_expires_entries(embedder: Any) -> None:
    pipeline, backend, _ = setup(embedder)
    await pipeline(ask("What time zone is Tokyo in?", options={"cache": {"ttl": 0.2}}))
    assert cache_event(await pipeline(ask("What time zone is Tokyo in?"))).action == "hit"
    await asyncio.sleep(0.3)
    assert cache_event(await pipeline(ask("What time zone is Tokyo in?"))).action == "miss"
    assert len(backend.requests) == 2


@pytest.mark.parametrize(
    ("option", "param"),
    [
        ({"ttl": -1}, "tokenlean.cache.ttl"),
        ({"ttl": "soon"}, "tokenlean.cache.ttl"),
        ({"no_cache": "maybe"}, "tokenlean.cache.no_cache"),
        ({"namespace": ""}, "tokenlean.cache.namespace"),
        ({"threshold": 1.5}, "tokenlean.cache.threshold"),
        ({"nocache": True}, "tokenlean.cache.nocache"),
        ("yes", "tokenlean.cache"),
    ],
)
async def test_bad_options_are_bad_requests_naming_the_field(embedder: Any, option: Any, param: str) -> None:
    pipeline, backend, _ = setup(embedder)
    with pytest.raises(BadRequestError) as caught:
        await pipeline(ask("q", options={"cache": option}))
    assert caught.value.param == param and not backend.requests


async def test_eviction_by_count_and_bytes(embedder: Any) -> None:
    store = MemoryStore(max_entries=3, max_bytes=10**9)
    pipeline, _, _ = setup(embedder, store=store)
    exact = {"cache": {"semantic": False}}
    for i in ["Alpha question?", "Beta question?", "Gamma question?"]:
        await pipeline(ask(i, options=exact))
    await pipeline(ask("Alpha question?", options=exact))  # a hit: Alpha is now the most recently used
    await pipeline(ask("Delta question?", options=exact))  # evicts Beta, the least recently used
    assert await store.count() == 3
    assert cache_event(await pipeline(ask("Alpha question?", options=exact))).action == "hit"
    assert cache_event(await pipeline(ask("Beta question?", options=exact))).action == "miss"
    small = MemoryStore(max_entries=100, max_bytes=3000)
    pipeline, _, _ = setup(embedder, store=small)
    for n in range(5):
        await pipeline(ask(f"Question number {n}?"))
    assert small.bytes <= 3000 and 1 <= await small.count() < 5


async def test_streamed_miss_is_teed_and_stored_on_completion(embedder: Any) -> None:
    pipeline, backend, _ = setup(embedder)
    response = await pipeline(ask("Explain recursion briefly.", stream=True))
    assert response.is_streaming and cache_event(response).data["stored"] == "pending"
    chunks = [chunk async for chunk in response.stream]  # type: ignore[union-attr]
    assert "".join(c.text for c in chunks) == "answer to: Explain recursion briefly."
    stored = [e for c in chunks for e in c.events]
    assert stored and stored[0].action == "stored" and stored[0].data["stored"] is True
    hit = await pipeline(ask("Explain recursion briefly.", stream=True))
    assert hit.is_streaming and cache_event(hit).action == "hit"
    replayed = [chunk async for chunk in hit.stream]  # type: ignore[union-attr]
    assert len([c for c in replayed if c.text]) > 1  # streamed as several chunks, not one blob
    assert "".join(c.text for c in replayed) == "answer to: Explain recursion briefly."
    assert [c.finish_reason for c in replayed if c.finish_reason] == ["stop"] and replayed[
        -1
    ].usage is not None
    assert len(backend.requests) == 1


async def test_aborted_stream_stores_nothing(embedder: Any) -> None:
    pipeline, backend, stage = setup(embedder)
    response = await pipeline(ask("Write a long poem about the sea.", stream=True))
    stream = response.stream
    assert stream is not None
    await stream.__anext__()
    await stream.aclose()  # type: ignore[attr-defined]  # the client disconnected
    assert await stage.storage.count() == 0
    again = await pipeline(ask("Write a long poem about the sea."))
    assert cache_event(again).action == "miss" and len(backend.requests) == 2


class BrokenStreamBackend(FakeBackend):
    """Streams two chunks, then fails: a backend dying mid-answer."""

    async def complete(self, request: Request) -> Response:
        self.requests.append(request)

        async def chunks() -> AsyncIterator[Chunk]:
            yield Chunk(0, "partial")
            yield Chunk(0, " answer")
            raise ConnectionError("upstream went away")

        return Response(model=self.model, stream=chunks())


async def test_stream_failing_midway_stores_nothing(embedder: Any) -> None:
    stage = CacheStage(embedder=embedder)
    pipeline = Pipeline(BrokenStreamBackend(), [stage])
    response = await pipeline(ask("Anything?", stream=True))
    with pytest.raises(ConnectionError):
        await response.aread()
    assert await stage.storage.count() == 0


async def test_long_final_turn_is_matched_exactly_only(embedder: Any) -> None:
    pipeline, backend, _ = setup(embedder, max_query_chars=100)
    document = "Context: " + "lorem ipsum dolor sit amet " * 20
    await pipeline(ask(document + " Question: who wrote it?"))
    other = await pipeline(ask(document + " Question: when was it written?"))
    assert cache_event(other).action == "miss" and len(backend.requests) == 2
