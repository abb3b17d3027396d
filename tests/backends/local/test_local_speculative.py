"""Speculative drafting in LocalBackend on the real SmolLM2 (and Gemma-3-270M as a target).

Short generations (max_tokens <= 24, 40 for the switch): this CPU decodes ~5-20 tokens/s.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tokenlean.backends.local.drafting.session import DraftPolicy
from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Event, Message, Request

pytestmark = pytest.mark.slow


def _ask(text: str, draft: str, max_tokens: int = 24, **options: Any) -> Request:
    return Request(
        messages=(Message("user", text),),
        max_tokens=max_tokens,
        temperature=0,
        options={"draft": draft, **options},
    )


def _draft_event(events: tuple[Event, ...]) -> Event:
    found = [e for e in events if e.stage == "draft"]
    assert len(found) == 1, events
    return found[0]


async def test_each_drafter_gives_the_same_greedy_output(drafting_backend, passage: str) -> None:  # type: ignore[no-untyped-def]
    hints = {"draft_hints": [passage]}
    cases = [  # a copy task for every drafter; a summary, where drafts are also rejected, for lookup
        (
            f"Repeat this passage word for word:\n\n{passage}",
            [("lookup", {}), ("retrieval", hints), ("model", {}), ("auto", {})],
        ),
        (f"Passage: {passage}\n\nSummarise this passage in two sentences.", [("lookup", {}), ("auto", {})]),
    ]
    rejected = 0
    for prompt, modes in cases:
        plain = await drafting_backend.complete(_ask(prompt, "off"))
        assert not [e for e in plain.events if e.stage == "draft"]
        for mode, extra in modes:
            drafted = await drafting_backend.complete(_ask(prompt, mode, **extra))
            assert drafted.text == plain.text, (mode, prompt[:40])
            assert drafted.usage == plain.usage
            event = _draft_event(drafted.events)
            assert event.data["drafted"] > 0 and event.data["accepted"] > 0, (mode, event)
            rejected += event.data["drafted"] - event.data["accepted"]
    assert rejected > 0  # the rejection path ran too, not only fully accepted drafts


async def test_a_seeded_sample_with_drafts_is_reproducible(drafting_backend, passage: str) -> None:  # type: ignore[no-untyped-def]
    request = _ask(f"Repeat this passage word for word:\n\n{passage}", "lookup").replace(
        temperature=0.7, seed=11
    )
    first, second = await drafting_backend.complete(request), await drafting_backend.complete(request)
    assert first.text == second.text and first.text
    assert _draft_event(first.events).data["accepted"] > 0


async def test_adaptive_switch_turns_drafting_off_when_nothing_right_can_be_copied(
    drafting_backend, passage: str
) -> None:  # type: ignore[no-untyped-def]
    """An open question whose only text to copy from is a decoy: every phrase of the real answer
    followed by words the model never says. Every draft fails, so the switch turns retrieval off
    after a handful of steps (verification is cheap, so it tries a few drafts of several tokens
    first); on a copy task the same switch keeps drafting long runs."""
    tokenizer = drafting_backend.tokenizer
    question = "Write a short poem about autumn leaves."
    plain = await drafting_backend.complete(_ask(question, "off", 40))
    ids = tokenizer.encode(plain.text, add_special_tokens=False)
    wrong = tokenizer.encode(" zebra quartz zebra", add_special_tokens=False)
    decoy = tokenizer.decode([token for a, b in itertools.pairwise(ids) for token in (a, b, *wrong)])
    drafted = await drafting_backend.complete(_ask(question, "retrieval", 40, draft_hints=[decoy]))
    copied = await drafting_backend.complete(
        _ask(f"Repeat this passage word for word:\n\n{passage}", "lookup", 40)
    )
    off, on = _draft_event(drafted.events).data, _draft_event(copied.events).data
    assert drafted.text == plain.text
    assert off["accepted"] == 0 and off["switched_off"] == 1 and 3 <= off["steps"] <= 10
    assert (
        on["switched_off"] == 0 and on["accepted"] >= 0.8 * on["drafted"] and on["accepted"] / on["steps"] > 4
    )


async def test_bad_draft_option_is_a_400_naming_the_option(drafting_backend) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadRequestError) as info:
        await drafting_backend.complete(_ask("hi", "fastest"))
    assert info.value.param == "tokenlean.draft"


async def test_draft_model_with_another_tokenizer(gemma_dir) -> None:  # type: ignore[no-untyped-def]
    """Gemma-3-270M as the target, SmolLM2 (another vocabulary) drafting through text."""
    from tokenlean.backends.local import LocalBackend
    from tokenlean.models import default_model_dir

    backend = LocalBackend(
        gemma_dir,
        draft_model=default_model_dir(),
        draft_policy=DraftPolicy(adaptive=False, draft_model_cost=0.5),
    )
    try:
        assert backend.draft_model is not None and not backend.draft_model.same_vocab
        text = "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France."
        prompt = f"Text: {text}\nThe same text again: {text}\nThe same text again:"
        answers = []
        for mode in ("off", "model"):
            request = Request(prompt=prompt, max_tokens=12, temperature=0, options={"draft": mode})
            answers.append(await backend.complete(request))
        assert answers[1].text == answers[0].text
        event = _draft_event(answers[1].events)
        assert event.data["drafted_model"] > 0 and event.data["accepted_model"] > 0
    finally:
        await backend.aclose()


async def test_draft_figures_reach_the_proxy_metrics(asgi_client) -> None:  # type: ignore[no-untyped-def]
    body = {
        "model": "any",
        "messages": [{"role": "user", "content": "Repeat exactly: one two three four five six seven eight."}],
        "max_tokens": 16,
        "temperature": 0,
        "tokenlean": {"draft": "lookup"},
    }
    models = (await asgi_client.get("/v1/models")).json()
    body["model"] = models["data"][0]["id"]
    answer = await asgi_client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200
    events = [e for e in answer.json()["tokenlean"]["events"] if e["stage"] == "draft"]
    assert events and events[0]["drafted"] > 0
    metrics = (await asgi_client.get("/metrics")).text
    assert 'tokenlean_stage_value_total{field="drafted",stage="draft"}' in metrics
    bad = await asgi_client.post("/v1/chat/completions", json={**body, "tokenlean": {"draft": "warp"}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokenlean.draft"
