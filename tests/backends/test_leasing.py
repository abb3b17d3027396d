"""LeasingTransport (and OpenAIBackend on it) against the real fake upstream: uvicorn, real sockets.

The fake upstream records each request's client port (one per TCP connection); the ASGI wrapper
here counts the requests it is serving at once. Together they say how many connections the
transport really opened and how many requests shared the upstream at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.backends.conftest import WORDS, FakeUpstream, ServerThread
from tokenlean.backends.leasing import LeasingTransport
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


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": True, **fields}


async def streamed_text(client: httpx.AsyncClient, **fields: Any) -> str:
    """One streamed chat completion read to ``[DONE]``: its text."""
    text = []
    async with client.stream("POST", "/v1/chat/completions", json=chat(**fields)) as answer:
        assert answer.status_code == 200
        async for line in answer.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:])["choices"]:
                    text.append(choice["delta"].get("content", ""))
    return "".join(text)


def ports(fake: FakeUpstream) -> set[int]:
    return {call["_peer_port"] for call in fake.calls}


def client_for(url: str, transport: LeasingTransport, **options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=httpx.Timeout(10.0), **options)


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


async def test_150_concurrent_streams_share_8_connections(served) -> None:
    fake, counted, url = served
    transport = LeasingTransport(8)
    async with client_for(url, transport) as client:
        texts = await asyncio.gather(*(streamed_text(client, drip_s=0.005) for _ in range(150)))
        assert transport.connections[0] == 0  # nothing still lent
        assert transport.connections[1] <= 8
    assert texts == [ANSWER] * 150
    assert len(ports(fake)) <= 8 and counted.peak <= 8


async def test_sequential_requests_reuse_one_keep_alive_connection(served) -> None:
    fake, _, url = served
    transport = LeasingTransport(4)
    async with client_for(url, transport) as client:
        for _ in range(5):
            assert await streamed_text(client) == ANSWER
        answer = await client.post("/v1/chat/completions", json=chat(stream=False))
        assert answer.status_code == 200
        assert transport.connections == (0, 1)
    assert len(fake.calls) == 6 and len(ports(fake)) == 1


async def test_connections_idle_past_keepalive_expiry_are_closed(served) -> None:
    import psutil

    fake, _, url = served
    upstream_port = int(url.rsplit(":", 1)[1])

    def open_sockets() -> int:
        return sum(
            1
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == upstream_port and c.status == psutil.CONN_ESTABLISHED
        )

    transport = LeasingTransport(4, keepalive_expiry=0.3)
    async with client_for(url, transport) as client:
        await asyncio.gather(*(streamed_text(client, drip_s=0.05) for _ in range(4)))
        assert transport.connections == (0, 4) and open_sockets() == 4
        before = ports(fake)
        await asyncio.sleep(0.5)
        assert await streamed_text(client) == ANSWER
        assert fake.calls[-1]["_peer_port"] not in before  # the expired connection was not reused
        assert transport.connections == (0, 1) and open_sockets() == 1  # the other three closed


async def test_a_stream_closed_early_gives_its_slot_back(served) -> None:
    fake, _, url = served
    transport = LeasingTransport(1)
    async with client_for(url, transport) as client:
        request = client.build_request("POST", "/v1/chat/completions", json=chat(drip_s=0.05, repeat=20))
        answer = await client.send(request, stream=True)
        async for _ in answer.aiter_bytes():
            break  # abandoned after the first read
        await answer.aclose()
        assert transport.connections == (0, 1)
        unread = await client.send(
            client.build_request("POST", "/v1/chat/completions", json=chat()), stream=True
        )
        await unread.aclose()  # never read, closed
        assert await asyncio.wait_for(streamed_text(client), 5) == ANSWER
    first, second, third = (call["_peer_port"] for call in fake.calls)
    assert first != second != third  # a half-read connection is closed, never lent again


async def test_a_failed_send_gives_its_slot_back(free_port_url: str) -> None:
    transport = LeasingTransport(1)
    async with client_for(free_port_url, transport) as client:
        for _ in range(3):  # with a leaked slot the second attempt would wait forever
            with pytest.raises(httpx.ConnectError):
                await asyncio.wait_for(client.post("/v1/chat/completions", json=chat()), 5)
        assert transport.connections == (0, 1)


async def test_cancelled_requests_give_their_slot_back(served) -> None:
    fake, _, url = served
    transport = LeasingTransport(1)
    async with client_for(url, transport) as client:
        slow = asyncio.create_task(client.post("/v1/chat/completions", json=chat(model="slow", sleep_s=20)))
        while not fake.calls:  # cancelled while the upstream holds the request
            await asyncio.sleep(0.01)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        # answered while the upstream still holds the cancelled request (20 s): not queued behind it
        assert await asyncio.wait_for(streamed_text(client), 15) == ANSWER
        async with client.stream("POST", "/v1/chat/completions", json=chat(drip_s=0.05)) as holding:
            waiting = asyncio.create_task(streamed_text(client))  # waits for the only slot
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await holding.aread()
        assert await asyncio.wait_for(streamed_text(client), 15) == ANSWER
        assert transport.connections == (0, 1)


async def test_with_two_connections_a_third_request_waits_its_turn(served) -> None:
    fake, counted, url = served
    transport = LeasingTransport(2)
    async with client_for(url, transport) as client:
        texts = await asyncio.gather(*(streamed_text(client, drip_s=0.05) for _ in range(3)))
    assert texts == [ANSWER] * 3  # the third waited for a connection instead of failing
    assert counted.peak == 2 and len(ports(fake)) == 2


async def test_a_pool_timeout_is_honoured(served) -> None:
    _, _, url = served
    transport = LeasingTransport(1)
    async with client_for(url, transport) as client:
        async with client.stream("POST", "/v1/chat/completions", json=chat(drip_s=0.05)) as holding:
            with pytest.raises(httpx.PoolTimeout):
                await client.post("/v1/chat/completions", json=chat(), timeout=httpx.Timeout(5, pool=0.1))
            await holding.aread()
        assert await streamed_text(client) == ANSWER


async def test_closing_the_client_with_a_stream_open_releases_everything(served) -> None:
    _, _, url = served
    transport = LeasingTransport(2)
    client = client_for(url, transport)
    assert await streamed_text(client) == ANSWER
    answer = await client.send(
        client.build_request("POST", "/v1/chat/completions", json=chat(drip_s=0.05, repeat=20)), stream=True
    )
    await client.aclose()
    await answer.aclose()
    assert transport.connections == (0, 0)
    with pytest.raises(RuntimeError):
        await client.post("/v1/chat/completions", json=chat())
