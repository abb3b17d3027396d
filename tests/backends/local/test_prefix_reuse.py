"""KV prefix reuse in LocalBackend on the real SmolLM2: same greedy output, counted hits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tokenlean.middleware.types import Message, Request

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def backend() -> AsyncIterator[object]:
    """Drafting off, so these tests see prefix reuse alone."""
    from tokenlean.backends.local import LocalBackend

    backend = LocalBackend(draft="off")
    yield backend
    await backend.aclose()


def _ask(system: str, question: str) -> Request:
    messages = (Message("system", system), Message("user", question))
    return Request(messages=messages, max_tokens=12, temperature=0)


async def test_second_request_reuses_the_shared_system_prompt_with_identical_output(
    backend, passage: str
) -> None:  # type: ignore[no-untyped-def]
    system = f"You answer questions about this passage only.\n\n{passage}"
    cache = backend.prefix_cache
    cache.clear()
    hits, misses = cache.hits, cache.misses
    first = await backend.complete(_ask(system, "Who received the first Nobel Prize in Physics?"))
    assert (cache.hits, cache.misses) == (hits, misses + 1) and len(cache) == 1  # populated

    question = _ask(system, "In which year was the prize first awarded?")
    reused = await backend.complete(question)
    assert cache.hits == hits + 1  # the second request hit
    event = next(e for e in reused.events if e.stage == "prefix")
    prompt_tokens = len(backend.encode(question))
    assert (
        event.action == "hit" and event.data["reused_tokens"] > len(backend.tokenizer.encode(passage)) * 0.9
    )
    assert event.data["reused_tokens"] + event.data["prefill_tokens"] == prompt_tokens

    cache.clear()  # the same request again, prefilled from scratch
    fresh = await backend.complete(question)
    assert next(e for e in fresh.events if e.stage == "prefix").action == "miss"
    assert reused.text == fresh.text and reused.text != first.text


async def test_a_conversation_reuses_its_earlier_turns(backend, passage: str) -> None:  # type: ignore[no-untyped-def]
    system = f"You answer questions about this passage only.\n\n{passage}"
    backend.prefix_cache.clear()
    first = await backend.complete(_ask(system, "Who won the prize twice?"))
    follow_up = Request(
        messages=(
            Message("system", system),
            Message("user", "Who won the prize twice?"),
            Message("assistant", first.text),
            Message("user", "In which years?"),
        ),
        max_tokens=8,
        temperature=0,
    )
    answer = await backend.complete(follow_up)
    event = next(e for e in answer.events if e.stage == "prefix")
    # everything up to the end of the first answer was cached: only the new turn is prefilled
    assert event.action == "hit" and event.data["prefill_tokens"] < 30
