"""Drop-in means drop-in: every field in and out of the proxy passes unchanged (issue 15).

The official ``openai`` client talks to the proxy app; the proxy's ``OpenAIBackend`` talks to the
scripted upstream of tests/tool_upstream.py on a real socket, which answers with real tool calls,
JSON and vendor fields and records every body it received. ``relay=False`` makes streams go through
tokenlean's chunk conversion (the path stages see), not the byte relay.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest

from tests.tool_upstream import MODEL, ToolUpstreamServer
from tokenlean.backends.fake import FakeBackend
from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.stage import Stage

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
        "strict": True,
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris for 3 days? Use get_weather."}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ToolUpstreamServer]:
    with ToolUpstreamServer() as server:
        yield server


@asynccontextmanager
async def proxy(
    upstream: ToolUpstreamServer, stages: Sequence[Stage] = (), *, relay: bool = False
) -> AsyncIterator[openai.AsyncOpenAI]:
    from tokenlean.proxy.app import create_app

    backend = OpenAIBackend([upstream.url], model=MODEL, max_retries=0)
    app = create_app(Pipeline(backend, stages), relay=relay)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        yield openai.AsyncOpenAI(
            api_key="unused", base_url="http://proxy/v1", http_client=http, max_retries=0
        )
    await backend.aclose()


async def test_every_request_field_reaches_the_upstream_as_sent(upstream: ToolUpstreamServer) -> None:
    history = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [
            {"type": "text", "text": "Look at this "},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"file_id": "file-abc"}},
            {"type": "text", "text": "and the weather?"},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris","days":1}'}}
        ]},
        {"role": "tool", "tool_call_id": "call_9", "content": "sunny"},
    ]  # fmt: skip
    sent = {
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}},
        },
        "presence_penalty": 0.5,
        "frequency_penalty": -0.25,
        "logit_bias": {"42": -100},
        "user": "user-7",
        "metadata": {"trace": "abc"},
    }
    vendor = {
        "guided_json": {"type": "object"},
        "structured_outputs": {"json": {"type": "object"}},
        "top_k": 5,
    }
    async with proxy(upstream) as client:
        await client.chat.completions.create(model=MODEL, messages=history, extra_body=vendor, **sent)  # type: ignore[arg-type]
    received = upstream.upstream.calls[-1]
    assert received["messages"] == history
    assert {k: received[k] for k in sent} == sent
    assert {k: received[k] for k in vendor} == vendor


async def test_tool_calls_and_vendor_fields_come_back(upstream: ToolUpstreamServer) -> None:
    async with proxy(upstream) as client:
        reply = await client.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",  # type: ignore[list-item]
            extra_body={"prompt_logprobs": 1},
        )  # fmt: skip
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "scripted",
        "days": 3,
    }  # type: ignore[union-attr]
    assert call.id.startswith("call_") and call.type == "function"
    extra = reply.model_dump()
    assert extra["system_fingerprint"] == "fp_scripted" and extra["prompt_logprobs"][1]["7"]["rank"] == 1
    assert extra["choices"][0]["stop_reason"] == "scripted"


@pytest.mark.parametrize("relay", [False, True])
async def test_streamed_tool_call_deltas_reach_the_client(upstream: ToolUpstreamServer, relay: bool) -> None:
    async with proxy(upstream, relay=relay) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=[WEATHER],
            stream=True,  # type: ignore[list-item]
        )
        chunks = [c async for c in stream]
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert len(deltas) > 2, "arguments arrive in several fragments"
    assert deltas[0].id and deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
    arguments = "".join(d.function.arguments or "" for d in deltas)  # type: ignore[union-attr]
    assert json.loads(arguments) == {"city": "scripted", "days": 3}
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"]
    assert [c.model_dump()["choices"][0].get("stop_reason") for c in chunks if c.choices][-1] == "scripted"


async def test_stream_without_include_usage_still_carries_the_events(upstream: ToolUpstreamServer) -> None:
    async with proxy(upstream, [_Tagging()]) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=ASK, stream=True)
        chunks = [c.model_dump() async for c in stream]
    closing = chunks[-1]
    assert closing["choices"] == [] and closing.get("usage") is None  # usage was not asked for
    assert [e["stage"] for e in closing["tokenlean"]["events"] if e["action"] == "seen"] == ["tagging"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": {"type": "nonsense"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools.0.function.name"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"logit_bias": {"1": 101}}, "logit_bias.1"),
    ],
)
async def test_bad_tool_and_format_fields_are_400s_naming_them(
    upstream: ToolUpstreamServer, fields: dict[str, Any], param: str
) -> None:
    async with proxy(upstream) as client:
        with pytest.raises(openai.BadRequestError) as error:
            await client.chat.completions.create(model=MODEL, messages=ASK, extra_body=fields)
    assert error.value.body["param"] == param  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [WEATHER]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]},
         "messages.0.content"),
    ],
)  # fmt: skip
async def test_a_backend_that_cannot_do_it_says_so(fields: dict[str, Any], param: str) -> None:
    from tokenlean.proxy.app import create_app

    backend = FakeBackend()  # declares text only, like the embedded model before constrained decoding
    app = create_app(Pipeline(backend))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        answer = await http.post("/v1/chat/completions", json={"model": "fake", "messages": ASK, **fields})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    assert backend.requests == [], "refused before anything ran"


class _Tagging:
    """Reports that it saw the request (a stage whose event must reach a streaming client)."""

    name = "tagging"

    async def __call__(self, request: Any, call_next: Any, /) -> Any:
        from tokenlean.middleware.types import Event

        return (await call_next(request)).with_event(Event(self.name, "seen"))


async def test_one_chunk_with_a_call_head_and_arguments_reaches_the_client_as_one_delta() -> None:
    from tokenlean.middleware.types import Chunk, Request, Response
    from tokenlean.proxy.app import create_app

    class HeadAndArguments(FakeBackend):  # as the embedded backend may emit them
        capabilities = OpenAIBackend.capabilities  # declares tools

        async def complete(self, request: Request) -> Response:
            async def chunks() -> AsyncIterator[Chunk]:
                head = {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": ""},
                }
                yield Chunk(0, tool_calls=(head, {"index": 0, "function": {"arguments": '{"a"'}}))
                yield Chunk(0, tool_calls=({"index": 0, "function": {"arguments": ": 1}"}},))
                yield Chunk(0, finish_reason="tool_calls")

            return Response(model="fake", stream=chunks())

    app = create_app(Pipeline(HeadAndArguments()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        client = openai.AsyncOpenAI(
            api_key="unused", base_url="http://proxy/v1", http_client=http, max_retries=0
        )
        stream = await client.chat.completions.create(
            model="fake", messages=ASK, tools=[WEATHER], stream=True
        )  # type: ignore[list-item]
        deltas = [c.choices[0].delta.tool_calls for c in [c async for c in stream] if c.choices]
    first = next(d for d in deltas if d)
    assert len(first) == 1 and first[0].function.name == "f" and first[0].function.arguments == '{"a"'  # type: ignore[union-attr]
