"""The compress stage in a pipeline and behind the proxy (FakeBackend records what it received)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import openai
import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.compressors.stage import CompressionStage
from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.types import Message, Request
from tokenlean.tokens import shared_token_counter

from .conftest import hotpot_documents

QUESTION = "Which magazine was started first, Arthur's Magazine or First for Women?"


@pytest.fixture(scope="module")
def stage() -> CompressionStage:
    return CompressionStage(rate=0.4, min_prompt_tokens=200)


def _rag_request(documents: list[str], question: str, **options: object) -> Request:
    return Request(
        messages=(
            Message("system", "You answer questions from the documents the user gives."),
            Message("user", "Documents:\n\n" + "\n\n".join(documents) + "\n\nQuestion: " + question),
        ),
        model="fake",
        options={"compress": options} if options else {},
    )


async def test_short_prompts_pass_untouched(stage: CompressionStage) -> None:
    backend = FakeBackend()
    request = _rag_request(["A short note about cats."], "What is it about?")
    response = await Pipeline(backend, [stage])(request)
    assert backend.requests[0].messages == request.messages
    event = next(e for e in response.events if e.stage == "compress" and e.action != "timing")
    assert event.action == "skipped" and event.data["reason"] == "short"


async def test_long_prompt_is_compressed_and_the_question_kept(
    stage: CompressionStage, hotpot_sample
) -> None:  # type: ignore[no-untyped-def]
    backend = FakeBackend()
    documents, question = hotpot_documents(hotpot_sample), hotpot_sample["question"]
    request = _rag_request(documents, question, protect=["Documents:"])
    response = await Pipeline(backend, [stage], policies={"compress": "raise"})(request)
    sent = backend.requests[0].messages
    count = shared_token_counter().count
    assert sent[0] == request.messages[0]  # the short system prompt is an instruction: kept
    assert sent[1].content.endswith("Question: " + question)  # the question, verbatim, last
    event = next(e for e in response.events if e.stage == "compress" and e.action == "compressed")
    before, after = event.data["tokens_before"], event.data["tokens_after"]
    assert after < before and event.ms > 0
    assert 0.85 * 0.4 <= after / before <= 1.15 * 0.4
    assert count(sent[1].content) < 0.6 * count(request.messages[1].content)


async def test_streaming_passes_through_with_the_event(stage: CompressionStage, hotpot_sample) -> None:  # type: ignore[no-untyped-def]
    backend = FakeBackend(lambda r: "one two three")
    request = _rag_request(hotpot_documents(hotpot_sample), hotpot_sample["question"], rate=0.25).replace(
        stream=True
    )
    response = await Pipeline(backend, [stage])(request)
    assert response.is_streaming
    done = await response.aread()
    assert done.text == "one two three"
    assert any(e.action == "compressed" and e.data["ratio"] > 3 for e in done.events)


async def test_off_and_bad_options(stage: CompressionStage, hotpot_sample) -> None:  # type: ignore[no-untyped-def]
    backend = FakeBackend()
    request = _rag_request(hotpot_documents(hotpot_sample), hotpot_sample["question"], off=True)
    await Pipeline(backend, [stage])(request)
    assert backend.requests[0].messages == request.messages
    for options, param in (({"rate": 0}, "rate"), ({"rate": 1.2}, "rate"), ({"mode": "zip"}, "mode")):
        with pytest.raises(BadRequestError) as info:
            await Pipeline(backend, [stage])(request.replace(options={"compress": options}))
        assert info.value.param == f"tokenlean.compress.{param}"


def test_bad_spec_options_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        CompressionStage(rate=2.0)
    assert info.value.param == "tokenlean.compress.rate"


async def test_proxy_answers_400_naming_the_option_and_streams_compressed(
    stage: CompressionStage, hotpot_sample
) -> None:  # type: ignore[no-untyped-def]
    from tokenlean.proxy.app import create_app

    backend = FakeBackend(lambda r: "streamed answer")
    app = create_app(Pipeline(backend, [stage]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
        client = openai.AsyncOpenAI(api_key="unused", base_url="http://proxy/v1", http_client=http)
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(
                model="fake",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"tokenlean": {"compress": {"rate": 0}}},
            )
        assert info.value.status_code == 400
        assert json.loads(info.value.response.text)["error"]["param"] == "tokenlean.compress.rate"
        reply = await client.chat.completions.create(
            model="fake",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"tokenlean": {"compress": {"mode": "plain"}}},
        )
        assert reply.choices[0].message.content == "streamed answer"
        request = _rag_request(hotpot_documents(hotpot_sample), hotpot_sample["question"])
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        stream = await client.chat.completions.create(
            model="fake",
            messages=messages,
            stream=True,
            extra_body={"tokenlean": {"compress": {"rate": 0.3}}},
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "streamed answer"
        sent = backend.requests[-1].messages[-1].content
        assert sent.endswith(hotpot_sample["question"]) and len(sent) < 0.5 * len(messages[-1]["content"])


class _GatedCompressor:
    """The stage's real compressor, held at the start of ``compress`` until the test opens the gate."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.gate = threading.Event()

    def compress(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.inner.compress(*args, **kwargs)


async def test_a_request_that_would_wait_for_the_scorer_goes_on_uncompressed(
    stage: CompressionStage, hotpot_sample
) -> None:  # type: ignore[no-untyped-def]
    gated = _GatedCompressor(stage.compressor)
    busy_stage = CompressionStage(rate=0.4, min_prompt_tokens=200, compressor=gated, max_wait_s=0.0)
    request = _rag_request(hotpot_documents(hotpot_sample), hotpot_sample["question"])
    backend = FakeBackend()
    first = asyncio.create_task(Pipeline(backend, [busy_stage])(request))
    assert await asyncio.to_thread(gated.entered.wait, 60)  # the first compression holds the scorer
    second = await Pipeline(backend, [busy_stage])(request)
    skipped = next(e for e in second.events if e.stage == "compress" and e.action != "timing")
    assert skipped.action == "skipped" and skipped.data["reason"] == "busy"
    assert skipped.data["wait_s"] is None  # no compression has finished yet: no measured speed
    assert backend.requests[0].messages == request.messages  # sent on as the client wrote it
    gated.gate.set()
    done = await first
    assert any(e.action == "compressed" for e in done.events)
    assert busy_stage.backlog.wait_s() == 0.0 and busy_stage.backlog.rate() is not None
    third = await Pipeline(backend, [busy_stage])(request)  # the scorer is free again
    assert any(e.action == "compressed" for e in third.events)


def test_max_wait_s_must_not_be_negative() -> None:
    with pytest.raises(ConfigError) as info:
        CompressionStage(max_wait_s=-1.0)
    assert info.value.param == "max_wait_s"
