"""The proxy in front of OpenAIBackend: the official client sees OpenAI error bodies and statuses.

The upstream is the loopback fake of conftest.py (its ``scenario`` field travels as an unknown
OpenAI field, so it also checks pass-through end to end). The real vLLM is in tests/integration.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest

from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.middleware.pipeline import Pipeline

HI = [{"role": "user", "content": "Capital of France?"}]


@asynccontextmanager
async def client_for(*urls: str, **options: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    from tokenlean.proxy.app import create_app

    backend = OpenAIBackend(list(urls), model="fake-model", max_retries=1, **options)
    app = create_app(Pipeline(backend))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
        yield openai.AsyncOpenAI(
            api_key="unused", base_url="http://proxy/v1", http_client=http, max_retries=0
        )
    await backend.aclose()


async def test_answers_and_passes_unknown_fields(upstream) -> None:
    fake, url = upstream
    async with client_for(url) as client:
        reply = await client.chat.completions.create(
            model="fake-model", messages=HI, max_tokens=5, extra_body={"scenario": "echo", "top_k": 3}
        )
        stream = await client.chat.completions.create(
            model="fake-model", messages=HI, stream=True, extra_body={"scenario": "drip"}
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    sent = json.loads(reply.choices[0].message.content)
    assert sent["top_k"] == 3 and sent["max_tokens"] == 5
    assert text == "The capital of France is Paris."
    assert fake.calls[1]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("scenario", "status", "error"),
    [
        ("status-400", 400, openai.BadRequestError),
        ("status-503", 502, openai.InternalServerError),
        ("status-500", 502, openai.InternalServerError),
    ],
)
async def test_upstream_status_reaches_the_client(upstream, scenario: str, status: int, error: type) -> None:
    _, url = upstream
    async with client_for(url) as client:
        with pytest.raises(error) as info:
            await client.chat.completions.create(
                model="fake-model", messages=HI, extra_body={"scenario": scenario}
            )
    assert info.value.status_code == status
    assert "scripted" in info.value.body["message"]


async def test_unreachable_upstream_is_503(free_port_url: str) -> None:
    async with client_for(free_port_url) as client:
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(model="fake-model", messages=HI)
    assert info.value.status_code == 503
    assert info.value.body["code"] == "backend_unavailable"


async def test_slow_upstream_is_504(upstream) -> None:
    _, url = upstream
    async with client_for(url, read_timeout=0.3) as client:
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(
                model="fake-model", messages=HI, extra_body={"scenario": "slow", "sleep_s": 1.0}
            )
    assert info.value.status_code == 504


async def test_health_reports_the_upstreams(upstream, free_port_url: str) -> None:
    _, url = upstream
    async with client_for(url, free_port_url) as client:
        health = (await client._client.get("http://proxy/health")).json()
    upstreams = {u["url"]: u["healthy"] for u in health["backend"]["upstreams"]}
    assert upstreams == {url + "/v1/": True, free_port_url + "/v1/": False}
    assert health["backend"]["status"] == "degraded"


async def test_ready_is_503_only_while_no_upstream_can_answer(upstream, free_port_url: str) -> None:
    _, url = upstream
    async with client_for(url, free_port_url) as client:
        degraded = await client._client.get("http://proxy/ready")
    async with client_for(free_port_url) as client:
        down = await client._client.get("http://proxy/ready")
        alive = await client._client.get("http://proxy/health")
    assert degraded.status_code == 200 and degraded.json()["status"] == "ready"
    assert down.status_code == 503 and down.json()["backend"]["status"] == "unavailable"
    assert alive.status_code == 200  # liveness: the proxy itself is fine


async def test_upstream_credentials_are_never_echoed(upstream, free_port_url: str, caplog) -> None:  # type: ignore[no-untyped-def]
    _, url = upstream
    secret_url = free_port_url.replace("http://", "http://admin:hunter2@")
    caplog.set_level("DEBUG")
    async with client_for(url, api_key="sk-upstream-secret") as client:
        with pytest.raises(openai.BadRequestError) as echoed:
            await client.chat.completions.create(
                model="fake-model", messages=HI, extra_body={"scenario": "echo-auth"}
            )
    async with client_for(secret_url) as client:
        with pytest.raises(openai.InternalServerError) as down:
            await client.chat.completions.create(model="fake-model", messages=HI)
        health = (await client._client.get("http://proxy/health")).text
        metrics = (await client._client.get("http://proxy/metrics")).text
    assert "rejected credentials Bearer ***" in echoed.value.body["message"]  # the upstream's words, masked
    assert "admin:hunter2" not in down.value.body["message"] and "***@" in down.value.body["message"]
    seen = " ".join([str(echoed.value.body), str(down.value.body), health, metrics, caplog.text])
    assert "sk-upstream-secret" not in seen and "hunter2" not in seen
