"""The two protocols everything plugs into: ``Stage`` and ``Backend``.

A stage is an async callable ``(request, call_next) -> response``, the shape of Starlette's
``dispatch(request, call_next)`` over typed objects. It may call ``call_next`` zero times (a cache
hit), once (compression, demonstrations) or several times concurrently (Skeleton-of-Thought
expansions, cascade tiers). A backend is the innermost handler: it turns a request into an answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from tokenlean.middleware.types import Request, Response

__all__ = ["Backend", "Capabilities", "Handler", "Stage"]

Handler = Callable[[Request], Awaitable[Response]]


@runtime_checkable
class Stage(Protocol):
    """One optimisation folded around the backend.

    A stage that does not apply to a request passes it through first thing
    (``return await call_next(request)``). Its own failures are handled by the pipeline's policy
    for it, so a stage does not wrap itself in try/except.
    """

    name: ClassVar[str]

    async def __call__(self, request: Request, call_next: Handler, /) -> Response: ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, so stages ask instead of guessing."""

    streaming: bool = True
    logprobs: bool = False
    n: bool = True
    batching: bool = False


@runtime_checkable
class Backend(Protocol):
    """The model behind the pipeline: an embedded model, a vLLM server, a user's function."""

    capabilities: Capabilities

    async def complete(self, request: Request) -> Response:
        """Answer ``request``; a request with ``stream=True`` gets a response with ``stream`` set."""
        ...

    def models(self) -> list[str]:
        """Model names this backend serves (the proxy's ``/v1/models``)."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and model memory."""
        ...
