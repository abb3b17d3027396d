"""The cache behind the in-process proxy, driven by the official openai client: tenants, headers, SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.cache import CacheStage
from tokenlean.middleware import Pipeline
from tokenlean.proxy.app import create_app

QUESTION: Any = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is our refund policy?"},
]


@pytest.fixture
async def proxy(embedder: Any) -> AsyncIterator[tuple[httpx.AsyncClient, FakeBackend]]:
    backend = FakeBackend(lambda r: f"answer for {r.tenant}: {r.last_user_text}")
    app = create_app(Pipeline(backend, [CacheStage(embedder=embedder)]), api_keys=["key-alice", "key-bob"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        yield http, backend


def client(http: httpx.AsyncClient, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url="http://proxy/v1", http_client=http)


def cache_events(reply: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in reply.model_extra["tokenlean"]["events"]
        if e["stage"] == "cache" and e["action"] != "timing"
    ]


async def test_two_api_keys_never_share_answers(proxy: tuple[httpx.AsyncClient, FakeBackend]) -> None:
    http, backend = proxy
    alice, bob = client(http, "key-alice"), client(http, "key-bob")
    first = await alice.chat.completions.create(model="fake", messages=QUESTION, temperature=0)
    other = await bob.chat.completions.create(model="fake", messages=QUESTION, temperature=0)
    again = await alice.chat.completions.create(model="fake", messages=QUESTION, temperature=0)
    assert cache_events(other)[0]["action"] == "miss" and cache_events(again)[0]["action"] == "hit"
    assert first.choices[0].message.content != other.choices[0].message.content  # each tenant its own answer
    assert again.choices[0].message.content == first.choices[0].message.content
    assert len(backend.requests) == 2


async def test_headers_and_extra_body_control_the_cache(proxy: tuple[httpx.AsyncClient, FakeBackend]) -> None:
    http, backend = proxy
    alice = client(http, "key-alice")
    await alice.chat.completions.create(model="fake", messages=QUESTION, temperature=0)
    raw = await alice.chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION, temperature=0, extra_headers={"x-tokenlean-cache-no-cache": "true"}
    )
    assert raw.headers["x-tokenlean-cache"] == "miss"
    hit = await alice.chat.completions.with_raw_response.create(
        model="fake", messages=QUESTION, temperature=0
    )
    assert hit.headers["x-tokenlean-cache"] == "hit" and int(hit.headers["x-tokenlean-tokens-saved"]) > 0
    event = cache_events(hit.parse())[0]
    assert event["kind"] == "exact" and event["similarity"] == 1.0
    with pytest.raises(openai.BadRequestError) as caught:
        await alice.chat.completions.create(
            model="fake", messages=QUESTION, temperature=0, extra_body={"tokenlean": {"cache": {"ttl": -5}}}
        )
    assert caught.value.body["param"] == "tokenlean.cache.ttl"  # type: ignore[index]
    assert len(backend.requests) == 2


async def test_streamed_hit_arrives_as_sse_chunks(proxy: tuple[httpx.AsyncClient, FakeBackend]) -> None:
    http, backend = proxy
    alice = client(http, "key-alice")
    streamed: Any = await alice.chat.completions.create(
        model="fake", messages=QUESTION, temperature=0, stream=True
    )
    first = "".join([c.choices[0].delta.content or "" async for c in streamed if c.choices])
    replay: Any = await alice.chat.completions.create(
        model="fake", messages=QUESTION, temperature=0, stream=True
    )
    chunks = [c async for c in replay]
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(texts) == first and len(texts) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert len(backend.requests) == 1
