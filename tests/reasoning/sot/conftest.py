"""Fixtures for the SoT tests: a scripted backend that tells skeleton and point requests apart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import BackendError
from tokenlean.middleware.types import Request, Response

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "sot_questions"

LEAD = "Managing time starts with a plan."
SKELETON = "Sure, here is the outline:\n1. Plan the week\n2. Set priorities\n3. Avoid distractions\n"


def phase(request: Request) -> str:
    """``skeleton``, ``point<N>`` or ``normal``, from the id the stage gives each sub-request."""
    _, _, suffix = request.request_id.rpartition("-sot-")
    return suffix if "-sot-" in request.request_id else "normal"


def scripted(skeleton: str = SKELETON) -> Callable[[Request], str]:
    """Replies: the skeleton text, ``body of point N`` for point N, an opening sentence for the
    lead, ``normal answer`` otherwise."""

    def reply(request: Request) -> str:
        kind = phase(request)
        if kind == "skeleton":
            return skeleton
        if kind == "lead":
            return LEAD
        if kind.startswith("point"):
            return f"{kind[len('point') :]}. body of point {kind[len('point') :]}"
        return "normal answer"

    return reply


class SlowFake(FakeBackend):
    """A fake whose calls take ``delay`` seconds, recording how many were in flight at once."""

    def __init__(
        self, reply: Callable[[Request], str], *, delay: float = 0.05, fail: dict[str, int] | None = None
    ):
        super().__init__(reply)
        self.delay = delay
        self.fail = dict(fail or {})  # phase -> how many of its calls fail
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, request: Request) -> Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            kind = phase(request)
            if self.fail.get(kind, 0) > 0:
                self.fail[kind] -= 1
                self.requests.append(request)
                raise BackendError(f"{kind} failed")
            return await super().complete(request)
        finally:
            self.in_flight -= 1


@pytest.fixture
def vicuna_questions() -> Path:
    path = DATA / "fastchat" / "vicuna80_question_legacy.jsonl"
    if not path.exists():
        unavailable(f"shared data not found at {path}")
    return path
