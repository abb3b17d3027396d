"""Stages in front of an upstream that returns real tool calls: they step aside or key on them.

The upstream is the scripted server of tests/tool_upstream.py (real socket); the stages are the
real ``CacheStage`` (exact keys), ``CascadeStage`` (two tiers on the pipeline's own backend) and
``SkeletonStage``; the client is the official ``openai`` client through the proxy app. A cascade
bypass and a streamed escalation are checked with ``FakeBackend`` tiers (pure stage logic).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest

from tests.tool_upstream import MODEL, ToolUpstreamServer
from tokenlean.backends.fake import FakeBackend
from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.cache.stage import CacheStage
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.types import Message, Request, Response
from tokenlean.reasoning.cascade import Cascade, CascadeStage, Tier
from tokenlean.reasoning.sot.stage import SkeletonStage

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"days": {"type": "integer"}}, "required": ["days"]},
    },
}
ASK = [{"role": "user", "content": "List the weather for the next 3 days in Paris, point by point."}]
CASCADE = {
    "default": "c",
    "cascades": {
        "c": {
            "scorer": {"type": "agreement", "samples": 2},
            "tiers": [{"name": "small", "model": MODEL, "threshold": 0.5}, {"name": "large", "model": MODEL}],
        }
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ToolUpstreamServer]:
    with ToolUpstreamServer() as server:
        yield server


@asynccontextmanager
async def proxy(upstream: ToolUpstreamServer) -> AsyncIterator[openai.AsyncOpenAI]:
    from tokenlean.proxy.app import create_app

    backend = OpenAIBackend([upstream.url], model=MODEL, max_retries=0)
    stages = [
        CacheStage(semantic=False),
        CascadeStage.from_spec(CASCADE, backend=backend),
        SkeletonStage(mode="on"),
    ]
    app = create_app(Pipeline(backend, stages, default_policy="raise"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        yield openai.AsyncOpenAI(
            api_key="unused", base_url="http://proxy/v1", http_client=http, max_retries=0
        )
    await backend.aclose()


def _events(body: Any, stage: str) -> list[dict[str, Any]]:
    events = (
        body.model_dump()["tokenlean"]["events"]
        if not isinstance(body, dict)
        else body["tokenlean"]["events"]
    )
    return [e for e in events if e["stage"] == stage and e["action"] != "timing"]


async def test_tool_requests_pass_the_stages_and_the_cache_keys_on_the_tools(
    upstream: ToolUpstreamServer,
) -> None:
    calls = upstream.upstream.calls
    async with proxy(upstream) as client:
        before = len(calls)
        first = await client.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER], temperature=0
        )  # type: ignore[list-item]
        assert len(calls) == before + 1, "one upstream call: no cascade samples, no skeleton"
        assert calls[-1]["tools"] == [WEATHER] and calls[-1].get("n", 1) == 1
        for stage in ("cascade", "sot"):
            assert _events(first, stage)[0]["action"] == "skipped"
            assert _events(first, stage)[0]["reason"] == "uses tools"
        again = await client.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER], temperature=0
        )  # type: ignore[list-item]
        assert len(calls) == before + 1 and _events(again, "cache")[0]["action"] == "hit"
        assert again.choices[0].message.tool_calls == first.choices[0].message.tool_calls
        assert again.choices[0].finish_reason == "tool_calls"
        other_tool = {**WEATHER, "function": {**WEATHER["function"], "description": "another definition"}}
        changed = await client.chat.completions.create(
            model=MODEL, messages=ASK, tools=[other_tool], temperature=0
        )  # type: ignore[list-item]
        assert _events(changed, "cache")[0]["action"] == "miss" and len(calls) == before + 2
        json_mode = await client.chat.completions.create(
            model=MODEL, messages=ASK, response_format={"type": "json_object"}, temperature=0
        )
        assert _events(json_mode, "cascade")[0]["reason"] == "uses response_format"
        assert json.loads(json_mode.choices[0].message.content or "")


async def test_a_streamed_tool_call_is_cached_and_replayed_whole(upstream: ToolUpstreamServer) -> None:
    question = [{"role": "user", "content": "Weather for 5 days, please."}]

    async def streamed(client: openai.AsyncOpenAI) -> tuple[str, str, list[dict[str, Any]]]:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=question,
            tools=[WEATHER],
            temperature=0,
            stream=True,  # type: ignore[list-item]
        )
        chunks = [c async for c in stream]
        deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
        name = next(d.function.name for d in deltas if d.function and d.function.name)
        arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
        return name, arguments, chunks[-1].model_dump()["tokenlean"]["events"]

    async with proxy(upstream) as client:
        first = await streamed(client)
        second = await streamed(client)
    assert first[:2] == second[:2] == ("get_weather", '{"days": 5}')
    assert [e["action"] for e in first[2] if e["stage"] == "cache"][-1] == "stored"
    assert next(e["action"] for e in second[2] if e["stage"] == "cache") == "hit"


async def test_a_bypassed_cascade_never_sends_its_own_model_name_upstream() -> None:
    class Broken(FakeBackend):  # a tier's own backend: its failure is the stage's own failure
        async def complete(self, request: Request) -> Response:
            raise RuntimeError("tier down")

    tiers = (Tier("small", Broken(), "small-model", 0, 0, 0.5), Tier("large", None, None, 0, 0, None))
    cascade = Cascade("c", tiers, _Fixed(), escalate_on_error=False)
    backend = FakeBackend(model="pipeline-model")
    pipeline = Pipeline(backend, [CascadeStage({"c": cascade})])
    response = await pipeline(Request(messages=(Message("user", "hi"),), model="cascade:c"))
    assert next(e.action for e in response.events if e.stage == "cascade") == "bypassed"
    assert [r.model for r in backend.requests] == [""], "the backend picks its own model, not cascade:c"


async def test_a_streamed_escalation_reports_up_front_for_the_headers() -> None:
    cheap = FakeBackend(lambda r: "cheap", model="cheap")
    tiers = (Tier("small", cheap, "cheap", 0, 0, 0.9), Tier("large", None, None, 0, 0, None))
    stage = CascadeStage({"c": Cascade("c", tiers, _Fixed(0.1))}, default="c")
    from tokenlean.proxy.app import create_app

    app = create_app(Pipeline(FakeBackend(lambda r: "strong answer", model="strong"), [stage]))
    body = {"model": "strong", "messages": ASK, "stream": True}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        answer = await http.post("/v1/chat/completions", json=body)
    assert answer.headers["x-tokenlean-cascade"] == "escalated"
    closing = json.loads([line for line in answer.text.splitlines() if line.startswith("data: {")][-1][6:])
    events = [
        e for e in closing["tokenlean"]["events"] if e["stage"] == "cascade" and e["action"] != "timing"
    ]
    assert [e["action"] for e in events] == ["escalated", "escalated"], "the head event, then the real cost"
    assert events[0]["streamed"] and events[1]["tiers_tried"] == ["small", "large"]


class _Fixed:
    """A scorer with a fixed score (the stage's logic is under test, not scoring)."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = value

    def prepare(self, request: Request) -> Request:
        return request

    async def score(self, request: Request, response: Response) -> float:
        return self.value

    def choose(self, response: Response) -> Any:
        return response.choices[0]
