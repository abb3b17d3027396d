"""Small stages for the front-end tests: they make options and stage order visible in events.

They are test doubles for *logic* (does an option reach the stage, does a stage's rewrite reach
the backend); the real stages are used by the parity test where they exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import pytest

from tokenlean.errors import BackendTimeoutError
from tokenlean.middleware.stage import Capabilities, Handler
from tokenlean.middleware.types import Chunk, Event, Request, Response


class OptionTagStage:
    """Reports the per-call options it was given, and the request fields it saw."""

    name: ClassVar[str] = "tag"

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        response = await call_next(request)
        value = request.option("tag", {})
        seen = {
            "options": dict(value) if isinstance(value, Mapping) else value,
            "max_tokens": request.max_tokens,
        }
        return response.with_event(Event(self.name, "seen", 0.0, seen))


class UpperStage:
    """Upper-cases the last user turn (or prompt): a visible rewrite the backend must receive."""

    name: ClassVar[str] = "upper"

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        if request.option("upper", {}).get("enabled") is False:
            return await call_next(request)
        if request.prompt is not None:
            return await call_next(request.replace(prompt=request.prompt.upper()))
        messages = list(request.messages)
        messages[-1] = type(messages[-1])(messages[-1].role, messages[-1].content.upper(), messages[-1].name)
        response = await call_next(request.replace(messages=messages))
        return response.with_event(Event(self.name, "rewrote"))


class FailingBackend:
    """A backend that always fails with ``error``; its stream, if asked for, fails mid-way."""

    capabilities = Capabilities()

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or BackendTimeoutError("upstream read timed out")

    def models(self) -> list[str]:
        return ["failing"]

    async def complete(self, request: Request) -> Response:
        if request.stream:
            return Response(model="failing", stream=self._stream())
        raise self.error

    async def _stream(self) -> AsyncIterator[Chunk]:
        yield Chunk(0, "partial")
        raise self.error

    async def aclose(self) -> None:
        return None


@pytest.fixture
def stage_types() -> dict[str, Any]:
    """The test stages and backends by name (conftest classes cannot be imported in importlib mode)."""
    return {"tag": OptionTagStage, "upper": UpperStage, "failing": FailingBackend}


def events_of(response_metadata: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    """Events of ``stage`` in a LangChain message's metadata (proxy JSON shape: data flattened)."""
    return [e for e in response_metadata["tokenlean"]["events"] if e["stage"] == stage]


@pytest.fixture
def events() -> Any:
    """``events_of`` as a fixture."""
    return events_of
