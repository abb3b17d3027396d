"""The official openai client (sync, async, streaming) against the in-process proxy and the real model."""

from __future__ import annotations

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from tokenlean.middleware.pipeline import Pipeline
from tokenlean.proxy.app import create_app

pytestmark = pytest.mark.slow
HI = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def async_openai(asgi_client: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="unused", base_url="http://proxy/v1", http_client=asgi_client)


async def test_async_chat_completion(async_openai, model_name: str) -> None:  # type: ignore[no-untyped-def]
    reply = await async_openai.chat.completions.create(
        model=model_name, messages=HI, max_tokens=8, temperature=0
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 10
    assert reply.choices[0].finish_reason in {"stop", "length"}


async def test_async_streaming_with_usage(async_openai, model_name: str) -> None:  # type: ignore[no-untyped-def]
    stream = await async_openai.chat.completions.create(
        model=model_name,
        messages=HI,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].choices == []


async def test_n_greater_than_one_and_text_completions(async_openai, model_name: str) -> None:  # type: ignore[no-untyped-def]
    reply = await async_openai.chat.completions.create(
        model=model_name, messages=HI, max_tokens=4, temperature=0.9, seed=1, n=2
    )
    assert [c.index for c in reply.choices] == [0, 1]
    text = await async_openai.completions.create(
        model=model_name, prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=1
    )
    assert "Paris" in text.choices[0].text and len(text.choices[0].logprobs.tokens) > 0


def test_sync_client_and_models(shared_backend, model_name: str) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app(Pipeline(shared_backend)), base_url="http://proxy") as http:
        client = openai.OpenAI(api_key="unused", base_url="http://proxy/v1", http_client=http)
        assert [m.id for m in client.models.list()] == [model_name]
        reply = client.chat.completions.create(model=model_name, messages=HI, max_tokens=6, temperature=0)
        assert "Paris" in reply.choices[0].message.content
        streamed = client.chat.completions.create(
            model=model_name, messages=HI, max_tokens=6, temperature=0, stream=True
        )
        assert "Paris" in "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        metrics = http.get("/metrics").text
        assert 'tokenlean_requests_total{endpoint="chat",status="200"} 2.0' in metrics
        assert "tokenlean_completion_tokens_total" in metrics
        assert http.get("/health").json()["status"] == "ok"
