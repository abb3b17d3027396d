"""TokenleanLLMCache behind LangChain's global LLM cache, with the real MiniLM and head (the chat
model is LangChain's fake list model: what is tested is the cache, which is real)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.globals import set_llm_cache
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from tokenlean.integrations.langchain_cache import TokenleanLLMCache


@pytest.fixture
def cache(embedder: Any) -> Iterator[TokenleanLLMCache]:
    llm_cache = TokenleanLLMCache(embedder=embedder)
    set_llm_cache(llm_cache)
    yield llm_cache
    set_llm_cache(None)


def test_reworded_question_is_answered_from_the_cache(cache: TokenleanLLMCache) -> None:
    model = FakeListChatModel(responses=["first answer", "second answer", "third answer"])
    first = model.invoke("How do I learn Python?")
    again = model.invoke("How do I learn Python?")
    reworded = model.invoke("How can I learn Python?")
    other = model.invoke("How do I cook rice in a microwave?")
    assert first.content == again.content == reworded.content == "first answer"
    assert other.content == "second answer"


def test_system_prompt_and_model_parameters_are_part_of_the_key(cache: TokenleanLLMCache) -> None:
    model = FakeListChatModel(responses=["french", "german", "other model"])
    question = "Translate 'good morning'."
    assert model.invoke([SystemMessage("Translate into French."), HumanMessage(question)]).content == "french"
    assert model.invoke([SystemMessage("Translate into German."), HumanMessage(question)]).content == "german"
    other = FakeListChatModel(responses=["other model"], sleep=0.001)  # another llm_string
    assert (
        other.invoke([SystemMessage("Translate into French."), HumanMessage(question)]).content
        == "other model"
    )


def test_near_miss_numbers_and_negation_are_not_served(cache: TokenleanLLMCache) -> None:
    model = FakeListChatModel(responses=["a", "b", "c"])
    assert model.invoke("Is it safe to eat raw eggs?").content == "a"
    assert model.invoke("Is it not safe to eat raw eggs?").content == "b"
    assert model.invoke("What is the best phone under 300 dollars?").content == "c"
    assert model.invoke("What is the best phone under 500 dollars?").content == "a"  # the list cycles


async def test_async_path_and_clear(cache: TokenleanLLMCache) -> None:
    model = FakeListChatModel(responses=["one", "two", "three"])
    assert (await model.ainvoke("How do I bake bread at home?")).content == "one"
    assert (await model.ainvoke("How can I bake bread at home?")).content == "one"
    await cache.aclear()
    assert (await model.ainvoke("How do I bake bread at home?")).content == "two"
    cache.clear()
    assert model.invoke("How can I bake bread at home?").content == "three"
