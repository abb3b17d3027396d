"""The lean profile in the Python front-ends: LangChain with no spec, the decorator with ``profile: lean``."""

from __future__ import annotations

from typing import Any

import pytest

from tokenlean.integrations import optimize
from tokenlean.integrations.langchain import TokenleanChatModel

pytestmark = pytest.mark.slow


def test_langchain_model_without_spec_runs_the_lean_pipeline(shared_backend: Any) -> None:
    model = TokenleanChatModel.from_spec(backend=shared_backend, max_tokens=6, temperature=0)
    assert [s.name for s in model.pipeline.stages] == ["cache", "compress", "sot"]
    first = model.invoke("Name a colour.")
    second = model.invoke("Name a colour.")
    actions = [(e["stage"], e["action"]) for e in second.response_metadata["tokenlean"]["events"]]
    assert ("cache", "hit") in actions and second.content == first.content


def test_decorator_with_the_lean_profile_calls_the_function_once_for_a_repeat() -> None:
    calls: list[Any] = []

    @optimize(spec={"profile": "lean"})
    def ask(messages: list[dict[str, str]], temperature: float = 0) -> str:
        calls.append(messages)
        return "an answer"

    question = [{"role": "user", "content": "What is the capital of Peru?"}]
    assert ask(question) == ask(question) == "an answer"
    assert len(calls) == 1
    assert [s.name for s in ask.pipeline.stages] == ["cache", "compress", "sot"]  # type: ignore[attr-defined]
