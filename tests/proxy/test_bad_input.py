"""Bad input: a 4xx with OpenAI's error body naming the field, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.proxy.app import create_app

CHAT = "/v1/chat/completions"
OK_MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def fake_client():  # type: ignore[no-untyped-def]
    app = create_app(Pipeline(FakeBackend()), api_keys=["sk-right"], max_body_bytes=10_000)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://proxy",
        headers={"authorization": "Bearer sk-right"},
    ) as client:
        yield client


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "fake", "messages": []}, "messages"),
        ({"model": "fake"}, "messages"),
        ({"model": "fake", "messages": "hi"}, "messages"),
        ({"model": "fake", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"model": "fake", "messages": OK_MESSAGES, "temperature": "hot"}, "temperature"),
        ({"model": "fake", "messages": OK_MESSAGES, "temperature": 7}, "temperature"),
        ({"model": "fake", "messages": OK_MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": "fake", "messages": OK_MESSAGES, "n": 1000}, "n"),
        ({"model": "fake", "messages": OK_MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "fake", "messages": OK_MESSAGES, "tokenlean": "yes"}, "tokenlean"),
        ({"model": 3, "messages": OK_MESSAGES}, "model"),
        ({"messages": OK_MESSAGES}, "model"),
    ],
)
async def test_wrong_fields_are_400_naming_the_field(fake_client, payload: dict, param: str) -> None:  # type: ignore[no-untyped-def]
    body = _error(await fake_client.post(CHAT, json=payload), 400)
    assert body["param"] == param and param.split(".")[0] in body["message"]


async def test_malformed_json_and_invalid_utf8(fake_client) -> None:  # type: ignore[no-untyped-def]
    for raw in (b'{"model": "fake", "messages": [', b"\xff\xfe not json", b"[]", b"null"):
        response = await fake_client.post(CHAT, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400, (raw, response.text)


async def test_unknown_model_is_404_listing_the_served_ones(fake_client) -> None:  # type: ignore[no-untyped-def]
    body = _error(await fake_client.post(CHAT, json={"model": "gpt-9", "messages": OK_MESSAGES}), 404)
    assert body["code"] == "model_not_found" and "fake" in body["message"]


async def test_api_key_required_and_checked(fake_client) -> None:  # type: ignore[no-untyped-def]
    payload = {"model": "fake", "messages": OK_MESSAGES}
    _error(await fake_client.post(CHAT, json=payload, headers={"authorization": "Bearer sk-wrong"}), 401)
    _error(await fake_client.post(CHAT, json=payload, headers={"authorization": ""}), 401)
    assert (await fake_client.post(CHAT, json=payload)).status_code == 200


async def test_body_over_the_limit_is_413(fake_client) -> None:  # type: ignore[no-untyped-def]
    huge = {"model": "fake", "messages": [{"role": "user", "content": "x" * 20_000}]}
    body = _error(await fake_client.post(CHAT, json=huge), 413)
    assert "10000 bytes" in body["message"]


async def test_unknown_fields_pass_through_and_options_reach_stages(fake_client) -> None:  # type: ignore[no-untyped-def]
    app = fake_client._transport.app  # type: ignore[attr-defined]
    backend = app.state.proxy.pipeline.backend
    payload = {"model": "fake", "messages": OK_MESSAGES, "top_k": 5, "tokenlean": {"cache": {"ttl": 3}}}
    response = await fake_client.post(CHAT, json=payload, headers={"x-tokenlean-cache-no-store": "true"})
    assert response.status_code == 200 and response.headers["x-request-id"]
    seen = backend.requests[-1]
    assert seen.extra["top_k"] == 5
    assert seen.options["cache"] == {"ttl": 3, "no_store": True}
    assert seen.tenant and "sk-right" not in seen.tenant


async def test_context_overflow_on_the_real_model_is_400(asgi_client, model_name: str) -> None:  # type: ignore[no-untyped-def]
    payload = {"model": model_name, "messages": OK_MESSAGES, "max_tokens": 10**6}
    body = _error(await asgi_client.post(CHAT, json=payload), 400)
    assert body["param"] == "max_tokens" and body["code"] == "context_length_exceeded"
