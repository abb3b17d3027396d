"""CacheStage as a library: lookup / store without a pipeline, real MiniLM and the shipped head."""

from __future__ import annotations

from typing import Any

import pytest

from tokenlean.cache import CacheStage
from tokenlean.errors import BadRequestError
from tokenlean.middleware import Message, Request, Response, Usage
from tokenlean.middleware.types import Choice


def ask(user: str, **kw: Any) -> Request:
    fields: dict[str, Any] = {"model": "m", "temperature": 0, **kw}
    return Request(messages=(Message("system", "Be brief."), Message("user", user)), **fields)


def answer(text: str) -> Response:
    return Response(model="m", choices=(Choice(0, text, "stop"),), usage=Usage(5, 3))


async def test_store_then_lookup_exact_and_reworded(embedder: Any) -> None:
    cache = CacheStage(embedder=embedder)
    assert await cache.lookup(ask("How do I learn Python?")) is None
    assert await cache.store(ask("How do I learn Python?"), answer("Write code daily."))
    exact = await cache.lookup(ask("How do I learn Python?"))
    reworded = await cache.lookup(ask("How can I learn Python?"))
    assert exact is not None and exact.text == "Write code daily."
    assert exact.events[0].data["kind"] == "exact"
    assert reworded is not None and reworded.text == "Write code daily."
    event = reworded.events[0]
    assert event.action == "hit" and event.data["kind"] == "semantic" and event.data["tokens_saved"] == 8


async def test_near_miss_is_not_served(embedder: Any) -> None:
    cache = CacheStage(embedder=embedder)
    await cache.store(ask("How do I lose weight fast?"), answer("Eat less."))
    assert await cache.lookup(ask("How do I gain weight fast?")) is None
    assert await cache.lookup(ask("How do I lose weight fast without exercise?")) is None


async def test_policy_applies_to_the_library_calls(embedder: Any) -> None:
    cache = CacheStage(embedder=embedder)
    hot = ask("What is the capital of France?", temperature=0.9)
    assert await cache.store(hot, answer("Paris")) is False
    assert await cache.lookup(hot) is None
    other_tenant = ask("What is the capital of France?", tenant="b")
    await cache.store(ask("What is the capital of France?", tenant="a"), answer("Paris"))
    assert await cache.lookup(other_tenant) is None
    unfinished = Response(model="m", choices=(Choice(0, "Pa", None),))
    assert await cache.store(ask("Capital of Italy?"), unfinished) is False


async def test_a_stream_cannot_be_stored(embedder: Any) -> None:
    async def chunks() -> Any:
        yield None

    cache = CacheStage(embedder=embedder)
    with pytest.raises(BadRequestError):
        await cache.store(ask("Hi?"), Response(model="m", stream=chunks()))
