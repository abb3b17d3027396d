"""Demonstrations step aside for tool, JSON and non-text requests, saying why (issue 15)."""

from __future__ import annotations

import pytest

from tests.demos.conftest import PARAPHRASES
from tokenlean.backends.fake import FakeBackend
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.stage import Capabilities
from tokenlean.middleware.types import Message, Request
from tokenlean.selectors import DemoPool, DemoStage

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


class _ToolBackend(FakeBackend):
    capabilities = Capabilities(tools=True, response_format=True, content_parts=None)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"tools": (TOOL,)}, "uses tools"),
        ({"response_format": {"type": "json_object"}}, "uses response_format"),
    ],
)
async def test_no_demonstrations_for_tool_or_json_requests(
    paraphrase_pool: DemoPool, fields: dict[str, object], reason: str
) -> None:
    backend = _ToolBackend()
    pipeline = Pipeline(backend, [DemoStage(pools={"faq": paraphrase_pool}, pool="faq", k=3)])
    question = PARAPHRASES[0][2]
    response = await pipeline(Request(messages=(Message("user", question),), model="fake", **fields))  # type: ignore[arg-type]
    event = next(e for e in response.events if e.stage == "demos" and e.action != "timing")
    assert event.action == "skipped" and event.data["reason"] == reason
    assert [m.content for m in backend.requests[-1].messages] == [question], (
        "the prompt reached the model as sent"
    )
