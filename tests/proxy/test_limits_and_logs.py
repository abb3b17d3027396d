"""Per-tenant limits, message-count limit, request ids, and logs that never hold prompts or keys."""

from __future__ import annotations

import logging

import httpx
import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.proxy.app import create_app
from tokenlean.proxy.limits import TenantLimits

CHAT = "/v1/chat/completions"
SECRET_PROMPT = "my secret diagnosis is hypothetical-condition-42"


def _client(app) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy")


def _payload(text: str = "hi") -> dict:
    return {"model": "fake", "messages": [{"role": "user", "content": text}]}


async def test_request_rate_limit_is_per_key_with_retry_after() -> None:
    app = create_app(
        Pipeline(FakeBackend()), api_keys=["sk-a", "sk-b"], limits=TenantLimits(requests_per_minute=2)
    )
    async with _client(app) as client:
        a = {"authorization": "Bearer sk-a"}
        assert [(await client.post(CHAT, json=_payload(), headers=a)).status_code for _ in range(2)] == [
            200,
            200,
        ]
        limited = await client.post(CHAT, json=_payload(), headers=a)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "requests per minute" in limited.json()["error"]["message"]
        other = await client.post(CHAT, json=_payload(), headers={"authorization": "Bearer sk-b"})
        assert other.status_code == 200  # another tenant is not affected


async def test_token_budget_is_charged_after_the_answer() -> None:
    app = create_app(Pipeline(FakeBackend()), limits=TenantLimits(tokens_per_minute=10))
    async with _client(app) as client:
        long_text = " ".join(["word"] * 8)  # the fake counts words: 8 in + 8 out = 16 > 10
        assert (await client.post(CHAT, json=_payload(long_text))).status_code == 200
        spent = await client.post(CHAT, json=_payload())
        assert spent.status_code == 429 and "token budget" in spent.json()["error"]["message"]


async def test_message_count_limit_names_the_limit() -> None:
    app = create_app(Pipeline(FakeBackend()), max_messages=3)
    async with _client(app) as client:
        body = {"model": "fake", "messages": [{"role": "user", "content": "x"}] * 4}
        response = await client.post(CHAT, json=body)
        assert response.status_code == 413
        assert (
            response.json()["error"]["param"] == "messages"
            and "limit of 3" in response.json()["error"]["message"]
        )


async def test_request_id_is_echoed_or_generated() -> None:
    async with _client(create_app(Pipeline(FakeBackend()))) as client:
        given = await client.post(CHAT, json=_payload(), headers={"x-request-id": "trace-123"})
        assert given.headers["x-request-id"] == "trace-123"
        fresh = await client.post(CHAT, json=_payload())
        assert len(fresh.headers["x-request-id"]) == 32


async def test_info_logs_hold_neither_prompts_answers_nor_keys(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Pipeline(FakeBackend()), api_keys=["sk-very-secret"])
    caplog.set_level(logging.INFO)
    async with _client(app) as client:
        headers = {"authorization": "Bearer sk-very-secret", "x-request-id": "rid-7"}
        assert (await client.post(CHAT, json=_payload(SECRET_PROMPT), headers=headers)).status_code == 200
        stream = dict(_payload(SECRET_PROMPT), stream=True)
        assert SECRET_PROMPT.split()[0] in (await client.post(CHAT, json=stream, headers=headers)).text
        await client.post(CHAT, json=_payload(SECRET_PROMPT), headers={"authorization": "Bearer wrong"})
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "rid-7" in text  # the access log ran and is correlated by request id
    assert "hypothetical-condition-42" not in text and "secret diagnosis" not in text
    assert "sk-very-secret" not in text
