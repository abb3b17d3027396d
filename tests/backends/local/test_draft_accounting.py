"""The draft event counts only drafted tokens that reached the answer (issue 15).

Real SmolLM2 copying a passage with the lookup drafter: the drafts are long and right, but a stop
sequence ends the answer a few tokens in. Tokens verified past the end were counted as accepted
(an event said ``accepted 8`` for a one-token answer); they must not be.
"""

from __future__ import annotations

import pytest

from tokenlean.middleware.types import Message, Request

pytestmark = pytest.mark.slow


async def test_accepted_never_exceeds_the_tokens_of_the_answer(drafting_backend, passage: str) -> None:  # type: ignore[no-untyped-def]
    words = passage.split()
    request = Request(
        messages=(Message("user", f"Repeat this passage word for word:\n\n{passage}"),),
        max_tokens=24,
        temperature=0,
        stop=(f" {words[3]}",),  # the answer ends after about three words; the drafts run on
        options={"draft": "lookup"},
    )
    response = await drafting_backend.complete(request)
    event = next(e for e in response.events if e.stage == "draft")
    assert event.data["drafted"] > 0, "the lookup drafter proposed the copy"
    assert event.data["accepted"] <= response.usage.completion_tokens
