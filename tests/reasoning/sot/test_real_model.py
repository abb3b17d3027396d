"""SoT end to end on the embedded SmolLM2 and MiniLM: through the proxy, streamed and not.

Budgets are small (the machine is shared and the model decodes on a CPU); the assertions are on
outcomes: a list question comes back as several numbered points, within max_tokens, with the
events that say so; a maths question is answered by normal generation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.types import Message, Request
from tokenlean.proxy.app import create_app
from tokenlean.reasoning.sot import SkeletonStage
from tokenlean.tokens import shared_token_counter

pytestmark = pytest.mark.slow

# the router is tuned for precision, so the list question is one it routes with a margin (p 0.96
# against 0.75); the train-speed question below scores 0.01
LIST_QUESTION = [{"role": "user", "content": "What are the most effective ways to deal with stress?"}]
MAX_TOKENS = 96


def small_stage() -> SkeletonStage:
    """Small budgets keep the real model quick; ``min_answer_tokens`` lowered so the router runs."""
    return SkeletonStage(
        mode="auto", skeleton_max_tokens=40, point_max_tokens=24, max_points=4, min_answer_tokens=32
    )


@pytest.fixture
async def sot_client(shared_backend) -> AsyncIterator[openai.AsyncOpenAI]:  # type: ignore[no-untyped-def]
    app = create_app(Pipeline(shared_backend, [small_stage()], policies={"sot": "raise"}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy", timeout=300) as http:
        yield openai.AsyncOpenAI(api_key="unused", base_url="http://proxy/v1", http_client=http)


def numbered_points(text: str) -> list[str]:
    return re.findall(r"^\d+\. (.+)$", text, flags=re.MULTILINE)


def sot_event(events: list[dict]) -> dict:  # type: ignore[type-arg]
    [event] = [e for e in events if e["stage"] == "sot" and e["action"] != "timing"]
    return event


async def test_a_list_question_becomes_a_multi_point_answer(sot_client, model_name) -> None:  # type: ignore[no-untyped-def]
    reply = await sot_client.chat.completions.create(
        model=model_name, messages=LIST_QUESTION, max_tokens=MAX_TOKENS, temperature=0
    )
    text = reply.choices[0].message.content
    event = sot_event(reply.model_extra["tokenlean"]["events"])
    assert event["action"] == "expanded" and event["routed"] is True
    assert event["probability"] >= event["threshold"] and event["route"].startswith("classifier at or above")
    assert event["points"] >= 2 and event["failed"] == []
    assert len(numbered_points(text)) == event["points"]
    assert text.startswith("1. ") != event["lead"]  # an opening line, when written, comes first
    assert all(title in text for title in event["titles"])
    assert shared_token_counter().count(text) <= MAX_TOKENS + 4  # the whole answer, within a few tokens
    assert reply.usage.completion_tokens == event["skeleton_tokens"] + event["expansion_tokens"]


async def test_a_list_question_streams_point_by_point(sot_client, model_name) -> None:  # type: ignore[no-untyped-def]
    stream = await sot_client.chat.completions.create(
        model=model_name,
        messages=LIST_QUESTION,
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    text = "".join(pieces)
    events = chunks[-1].model_extra["tokenlean"]["events"]
    actions = [e["action"] for e in events if e["stage"] == "sot"]
    assert actions[:1] == ["skeleton"] and "expanded" in actions
    expanded = next(e for e in events if e["stage"] == "sot" and e["action"] == "expanded")
    # the opening line (when the model wrote a usable one) comes whole, then the points in order
    first_point = 1 if expanded["lead"] else 0
    if first_point:
        assert pieces[0].endswith("\n") and not numbered_points(pieces[0]) and len(pieces[0].split()) >= 4
    assert pieces[first_point].startswith("1. ") and len(numbered_points(text)) >= 2
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_a_maths_question_is_routed_to_normal_generation(shared_backend) -> None:  # type: ignore[no-untyped-def]
    pipeline = Pipeline(shared_backend, [small_stage()], policies={"sot": "raise"})
    question = "A train travels 60 miles in 1.5 hours. What is its average speed?"
    response = await pipeline(Request(messages=(Message("user", question),), max_tokens=40, temperature=0))
    [event] = [e for e in response.events if e.stage == "sot" and e.action != "timing"]
    assert event.action == "not_routed" and event.data["routed"] is False
    assert event.data["probability"] < event.data["threshold"]
    assert response.text and not numbered_points(response.text)
    assert response.usage.completion_tokens <= 40
