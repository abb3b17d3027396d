"""OpenAIBackend against a real HTTP server on loopback: wire format, streaming, errors, retries."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tokenlean.backends.openai_http import OpenAIBackend, normalize_url
from tokenlean.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    UpstreamStatusError,
)
from tokenlean.middleware.registry import resolve_backend
from tokenlean.middleware.stage import Backend
from tokenlean.middleware.types import Message, Request


def ask(model: str = "echo", **fields: Any) -> Request:
    return Request(
        messages=(Message("system", "Be brief."), Message("user", "Capital of France?")),
        model=model,
        **fields,
    )


@asynccontextmanager
async def backend(*urls: str, **options: Any) -> AsyncIterator[OpenAIBackend]:
    instance = OpenAIBackend(list(urls), **options)
    try:
        yield instance
    finally:
        await instance.aclose()


def test_registered_and_protocol() -> None:
    assert resolve_backend("openai") is OpenAIBackend
    assert isinstance(OpenAIBackend(["http://127.0.0.1:1"]), Backend)


@pytest.mark.parametrize("url", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"])
def test_url_forms_normalise(url: str) -> None:
    assert normalize_url(url) == "http://h:8000/v1/"


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        OpenAIBackend([])
    assert info.value.param == "upstreams"
    with pytest.raises(ConfigError):
        OpenAIBackend(["ftp://h"])
    with pytest.raises(ConfigError):
        OpenAIBackend(["http://h"], read_timeout=0)


async def test_body_carries_known_and_unknown_fields(upstream) -> None:
    _, url = upstream
    extra = {"top_k": 5, "prompt_logprobs": 2, "guided_choice": ["a", "b"], "repetition_penalty": 1.1}
    request = ask(max_tokens=9, temperature=0.0, top_p=0.5, seed=7, stop=("\n",), n=2, extra=extra)
    async with backend(url) as b:
        response = await b.complete(request)
    sent = json.loads(response.choices[0].text)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["seed"], sent["n"]) == (
        9,
        0.0,
        0.5,
        7,
        2,
    )
    assert sent["stop"] == ["\n"]
    for key, value in extra.items():
        assert sent[key] == value
    assert "stream" not in sent and "logprobs" not in sent
    assert response.usage.prompt_tokens == 3 and response.usage.completion_tokens == 7
    assert response.id == "cmpl-fake" and response.model == "fake-model"


async def test_model_option_overrides_and_discovery(upstream) -> None:
    fake, url = upstream
    async with backend(url, model="echo") as b:
        await b.complete(ask(model="something-else"))
        assert b.models() == ["echo"]
    async with backend(url) as b:
        response = await b.complete(ask(model=""))  # no name anywhere: the upstream's first model
    async with backend(url) as b:
        assert b.models() == ["fake-model"]  # before any request: one blocking look-up
    assert [c["model"] for c in fake.calls] == ["echo", "fake-model"]
    assert response.choices[0].text == "The capital of France is Paris."


async def test_text_prompt_goes_to_completions_with_logprobs_converted(upstream) -> None:
    fake, url = upstream
    async with backend(url, model="canned") as b:
        response = await b.complete(
            Request(prompt="Paris is", logprobs=True, top_logprobs=2, extra={"echo": True})
        )
    assert fake.calls[0]["_path"] == "/v1/completions"
    assert fake.calls[0]["logprobs"] == 2 and fake.calls[0]["echo"] is True
    first = response.choices[0].logprobs[0]
    assert first["token"] == "a" and first["logprob"] == -0.1
    assert {"token": "c", "logprob": -2.0} in first["top_logprobs"]


async def test_chat_logprobs_pass_through(upstream) -> None:
    fake, url = upstream
    async with backend(url) as b:
        response = await b.complete(ask("canned", logprobs=True, top_logprobs=3))
        streamed = await (await b.complete(ask("canned", logprobs=True, stream=True))).aread()
    assert fake.calls[0]["logprobs"] is True and fake.calls[0]["top_logprobs"] == 3
    assert response.choices[0].logprobs == ({"token": "The", "logprob": -0.25, "top_logprobs": []},)
    assert [lp["token"] for lp in streamed.choices[0].logprobs] == [
        "The",
        " capital",
        " of",
        " France",
        " is",
        " Paris",
        ".",
    ]


async def test_stream_arrives_chunk_by_chunk(upstream) -> None:
    """Each upstream chunk reaches the caller when it is sent, not when the answer ends."""
    fake, url = upstream
    async with backend(url) as b:
        started = time.monotonic()
        response = await b.complete(ask("drip", stream=True, extra={"drip_s": 0.15}))
        assert response.is_streaming
        arrivals, texts, usage = [], [], None
        async for chunk in response.stream:
            arrivals.append(time.monotonic() - started)
            texts.append(chunk.text)
            usage = chunk.usage or usage
    assert "".join(texts) == "The capital of France is Paris."
    assert fake.calls[0]["stream"] is True and fake.calls[0]["stream_options"] == {"include_usage": True}
    assert usage is not None and usage.completion_tokens == 7
    # relayed, not buffered: the first word reached the caller before the upstream sent the last
    assert started + arrivals[0] < fake.sent_at[-1]


@pytest.mark.parametrize(("status", "mapped"), [(400, 400), (404, 404), (422, 422), (500, 502), (503, 502)])
async def test_error_status_is_mapped(upstream, status: int, mapped: int) -> None:
    fake, url = upstream
    async with backend(url, max_retries=2) as b:
        for stream in (False, True):
            with pytest.raises(UpstreamStatusError) as info:
                await b.complete(ask(f"status-{status}", stream=stream))
            assert info.value.status == mapped and info.value.upstream_status == status
            assert f"scripted {status}" in info.value.message and info.value.param == "max_tokens"
    attempts = 3 if status == 503 else 1  # only 502/503/504 are retried
    assert len(fake.calls) == 2 * attempts


async def test_transient_503_is_retried(upstream) -> None:
    fake, url = upstream
    async with backend(url, max_retries=1) as b:
        response = await b.complete(ask("flaky-503"))
    assert response.choices[0].text.endswith("Paris.")
    assert len(fake.calls) == 2


async def test_connection_refused_is_503(free_port_url: str) -> None:
    async with backend(free_port_url, max_retries=1) as b:
        assert b.models() == []
        for stream in (False, True):
            with pytest.raises(BackendUnavailableError) as info:
                await b.complete(ask(stream=stream))
            assert info.value.status == 503
        health = await b.health()
    assert health["status"] == "unavailable" and health["upstreams"][0]["healthy"] is False


async def test_read_timeout_before_the_first_byte_is_retried_then_504(upstream) -> None:
    fake, url = upstream
    async with backend(url, read_timeout=0.3, max_retries=2) as b:
        for stream in (False, True):
            with pytest.raises(BackendTimeoutError) as info:
                await b.complete(ask("slow", stream=stream, extra={"sleep_s": 1.5}))
            assert info.value.status == 504
    assert len(fake.calls) == 2 * 3  # nothing arrived: every attempt of the policy was made


async def test_429_is_retried_after_the_wait_the_upstream_asked_for(upstream) -> None:
    fake, url = upstream
    async with backend(url, max_retries=2) as b:
        answer = await b.complete(ask("busy-429", extra={"retry_after_s": 0.4}))
    assert answer.text == "The capital of France is Paris."
    first, second = (call["_received_at"] for call in fake.calls)
    assert second - first >= 0.4  # Retry-After honoured: the retry came no earlier than asked


async def test_4xx_answers_are_never_retried(upstream) -> None:
    fake, url = upstream
    async with backend(url, max_retries=3) as b:
        for status in (400, 401, 404, 422):
            with pytest.raises(UpstreamStatusError):
                await b.complete(ask(f"status-{status}"))
    assert len(fake.calls) == 4


async def test_total_timeout_cuts_a_long_stream(upstream) -> None:
    _, url = upstream
    async with backend(url, total_timeout=0.6, read_timeout=5) as b:
        response = await b.complete(ask("drip", stream=True, extra={"drip_s": 0.1, "repeat": 5}))
        received = []
        with pytest.raises(BackendTimeoutError):
            async for chunk in response.stream:
                received.append(chunk.text)
    assert 0 < len(received) < 35  # cut by the deadline, after some text and before the end


async def test_drop_before_first_chunk_is_retried(upstream) -> None:
    fake, url = upstream
    async with backend(url, max_retries=1) as b:
        answer = await (await b.complete(ask("drop-before-first", stream=True))).aread()
    assert answer.text == "The capital of France is Paris."
    assert len(fake.calls) == 2


async def test_drop_after_first_chunk_is_not_retried(upstream) -> None:
    """Text already reached the caller: a retry would repeat it, so the stream fails instead."""
    fake, url = upstream
    async with backend(url, max_retries=3) as b:
        response = await b.complete(ask("drop-after-first", stream=True))
        received = []
        with pytest.raises(BackendError) as info:
            async for chunk in response.stream:
                received.append(chunk.text)
    assert received == ["The"]
    assert info.value.status == 502
    assert len(fake.calls) == 1


async def test_error_event_inside_stream(upstream) -> None:
    _, url = upstream
    async with backend(url) as b:
        response = await b.complete(ask("stream-error", stream=True))
        with pytest.raises(UpstreamStatusError) as info:
            await response.aread()
    assert "engine died" in info.value.message and info.value.status == 502


async def test_abandoned_stream_releases_its_slot(upstream) -> None:
    _, url = upstream
    async with backend(url) as b:
        response = await b.complete(ask("drip", stream=True, extra={"drip_s": 0.05, "repeat": 10}))
        await response.stream.__anext__()
        assert b.replicas.replicas[0].inflight == 1
        await response.stream.aclose()
        assert b.replicas.replicas[0].inflight == 0


async def test_api_key_is_sent(upstream) -> None:
    fake, url = upstream
    async with backend(url, api_key="sk-test") as b:
        await b.complete(ask())
        await (await b.complete(ask(stream=True))).aread()
    assert [call["_authorization"] for call in fake.calls] == ["Bearer sk-test"] * 2


async def test_sse_parser_handles_split_reads_crlf_comments_and_multiline() -> None:
    from tokenlean.backends.openai_wire import sse_data

    async def reads() -> AsyncIterator[bytes]:
        for part in (
            b": keep-alive\n\nda",
            b'ta: {"a": 1}\n',
            b"\ndata: x\r\ndata: y\r\n\r\n",
            b"event: ping\n\n",
            b"data:[DONE]",
        ):
            yield part

    assert [p async for p in sse_data(reads())] == [b'{"a": 1}', b"x\ny", b"[DONE]"]


async def test_connection_is_reused_across_streams(upstream) -> None:
    """A stream read to its end returns its connection to the pool (no new TCP connect each time)."""
    fake, url = upstream
    async with backend(url) as b:
        for _ in range(5):
            await (await b.complete(ask("canned", stream=True))).aread()
    assert len(fake.calls) == 5
    assert len({call["_peer_port"] for call in fake.calls}) == 1


async def test_models_appear_once_a_late_upstream_is_up(start_upstream, free_port_url: str) -> None:
    """The proxy checks ``model`` against ``models()``: an upstream that starts late must show up."""
    import asyncio

    async with backend(free_port_url, health_interval=0.2) as b:
        assert b.models() == []
        start_upstream(int(free_port_url.rsplit(":", 1)[1]))
        for _ in range(50):
            if b.models():
                break
            await asyncio.sleep(0.1)
        assert b.models() == ["fake-model"]
