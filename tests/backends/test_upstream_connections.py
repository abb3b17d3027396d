"""OpenAIBackend's upstream connections (the aiohttp pool) against the real fake upstream: uvicorn, real sockets.

The fake upstream records each request's client port (one per TCP connection); the ASGI wrapper
here counts the requests it is serving at once. Together they say how many connections the
backend really opened and how many requests shared the upstream at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.backends.conftest import WORDS, FakeUpstream, ServerThread
from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.middleware.types import Message, Request

ANSWER = "".join(WORDS)


class Counted:
    """ASGI wrapper: the most HTTP responses the upstream was producing at one moment (``peak``).

    A response counts until its last body message is sent, not until the app returns: the app
    may still be winding down while the client already sends its next request on that connection.
    """

    def __init__(self, app: Any) -> None:
        self.app, self.inflight, self.peak = app, 0, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        done = False

        async def counted_send(message: dict[str, Any]) -> None:
            nonlocal done
            if message["type"] == "http.response.body" and not message.get("more_body") and not done:
                done, self.inflight = True, self.inflight - 1
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            if not done:
                self.inflight -= 1


@pytest.fixture
def served() -> Iterator[tuple[FakeUpstream, Counted, str]]:
    fake = FakeUpstream()
    counted = Counted(fake.app)
    server = ServerThread(counted).start()
    yield fake, counted, server.url
    server.stop()


def ports(fake: FakeUpstream) -> set[int]:
    return {call["_peer_port"] for call in fake.calls}


async def test_200_concurrent_streams_through_openai_backend_stay_within_max_connections(served) -> None:
    fake, counted, url = served
    backend = OpenAIBackend(url, model="echo", max_connections=24, health_interval=60)
    request = Request(messages=(Message("user", "Capital of France?"),), stream=True, extra={"drip_s": 0.01})

    async def one() -> str:
        response = await backend.complete(request)
        return "".join([chunk.text async for chunk in response.stream])

    try:
        answers = await asyncio.gather(*(one() for _ in range(200)), return_exceptions=True)
    finally:
        await backend.aclose()
    assert [a for a in answers if a != ANSWER] == []  # every stream complete, no error
    assert len(fake.calls) == 200
    assert len(ports(fake)) <= 24, "more connections opened than max_connections"
    assert 12 <= counted.peak <= 24  # they really ran side by side, never beyond the limit


async def test_sequential_streams_reuse_one_keep_alive_connection(served) -> None:  # type: ignore[no-untyped-def]
    """A stream read to ``[DONE]`` is drained, so its connection goes back to the pool."""
    fake, _, url = served
    backend = OpenAIBackend(url, model="echo", max_connections=4, health_interval=60)
    request = Request(messages=(Message("user", "Capital of France?"),), stream=True)
    try:
        for _ in range(5):
            response = await backend.complete(request)
            assert "".join([chunk.text async for chunk in response.stream]) == ANSWER
    finally:
        await backend.aclose()
    assert len(fake.calls) == 5 and len(ports(fake)) == 1
