"""The fast path: a stream no stage can act on is relayed as the upstream's own event bytes.

The upstream is the real OpenAI-compatible fake of tests/backends/conftest.py on a loopback
socket. What is checked: every event arrives exactly as the upstream sent it (so any field,
vendor extras included, survives), the usage chunk appears only for a client that asked for it
and is still counted against the token budget and in /metrics, and a pipeline with a stage
takes the ordinary path.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.backends.conftest import FakeUpstream, ServerThread
from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.types import Message, Request
from tokenlean.proxy.app import create_app
from tokenlean.proxy.limits import TenantLimits
from tokenlean.proxy.relay import relay_backend

CHAT = "/v1/chat/completions"
BODY: dict[str, Any] = {
    "model": "fake-model",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "logprobs": True,
}


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ServerThread(FakeUpstream().app).start()
    yield server.url
    server.stop()


@pytest.fixture
async def backend(upstream: str) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend([upstream], max_retries=0, health_interval=60)
    yield backend
    await backend.aclose()


def _events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


async def _proxied(app: Any, body: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        return await client.post(CHAT, json=body)


async def test_events_arrive_as_the_upstream_sent_them(upstream: str, backend: OpenAIBackend) -> None:
    body = {**BODY, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient() as client:
        direct = _events((await client.post(upstream + CHAT, json=body)).text)
    relayed = _events((await _proxied(create_app(Pipeline(backend)), body)).text)
    assert relayed[-1] == direct[-1] == "[DONE]"
    assert relayed[:-2] == direct[:-2]  # byte for byte, logprobs and all
    usage_direct, usage_relayed = json.loads(direct[-2]), json.loads(relayed[-2])
    assert usage_relayed.pop("tokenlean") == {"events": []}
    assert usage_relayed == usage_direct


async def test_usage_only_when_asked_but_always_counted(backend: OpenAIBackend) -> None:
    app = create_app(Pipeline(backend), limits=TenantLimits(tokens_per_minute=5))
    first = await _proxied(app, BODY)
    second = await _proxied(app, BODY)
    events = _events(first.text)
    assert first.status_code == 200 and events[-1] == "[DONE]"
    assert not any('"usage"' in e and '"choices":[]' in e for e in events)  # the client did not ask
    assert second.status_code == 429  # the first answer's tokens were charged all the same
    page = app.state.metrics.render().decode()
    assert 'tokenlean_requests_total{endpoint="chat",status="200"} 1.0' in page
    assert "tokenlean_completion_tokens_total 7.0" in page


async def test_an_upstream_error_mid_stream_ends_with_an_error_event(
    backend: OpenAIBackend, upstream: str
) -> None:
    scripted = OpenAIBackend([upstream], model="stream-error", max_retries=0, health_interval=60)
    try:
        response = await _proxied(create_app(Pipeline(scripted)), {**BODY, "model": "stream-error"})
    finally:
        await scripted.aclose()
    events = _events(response.text)
    assert response.status_code == 200 and events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["message"].endswith("engine died")


def test_only_stageless_streams_take_the_fast_path(backend: OpenAIBackend) -> None:
    from tokenlean.cache.stage import CacheStage

    hi = (Message("user", "hi"),)
    stream, whole = Request(messages=hi, stream=True), Request(messages=hi)
    assert relay_backend(Pipeline(backend), stream) is backend
    assert relay_backend(Pipeline(backend), whole) is None
    assert relay_backend(Pipeline(backend, [CacheStage(semantic=False)]), stream) is None
