"""Fixtures for the cascade tests: a scorer with a fixed score and scripted backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from tests.conftest import unavailable
from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import BackendUnavailableError
from tokenlean.middleware.types import Choice, Request, Response

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
GSM8K_RESPONSES = DATA / "routellm" / "gsm8k" / "gsm8k_responses.csv"
SPEC = Path(__file__).with_name("cascade_spec.yaml")


class FixedScorer:
    """Gives every answer the same score, so tests control escalation exactly."""

    name: ClassVar[str] = "fixed"

    def __init__(self, value: float | None) -> None:
        self.value = value
        self.seen: list[str] = []

    def prepare(self, request: Request) -> Request:
        return request

    async def score(self, request: Request, response: Response) -> float | None:
        self.seen.append(response.text)
        return self.value

    def choose(self, response: Response) -> Choice:
        return response.choices[0]


class FailingBackend(FakeBackend):
    """A backend that is down."""

    async def complete(self, request: Request) -> Response:
        self.requests.append(request)
        raise BackendUnavailableError("connection refused")


def replying(text: str, model: str) -> FakeBackend:
    """A fake backend that always answers ``text``."""
    reply: Callable[[Request], str] = lambda request: text
    return FakeBackend(reply, model=model)


@pytest.fixture
def gsm8k_csv() -> Path:
    if not GSM8K_RESPONSES.exists():
        unavailable(f"shared data not found at {GSM8K_RESPONSES}")
    return GSM8K_RESPONSES


@pytest.fixture
def kit():  # type: ignore[no-untyped-def]
    """The helpers above, for test modules (conftest is not importable under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        FixedScorer=FixedScorer, FailingBackend=FailingBackend, replying=replying, spec=SPEC
    )
