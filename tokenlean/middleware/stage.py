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

from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Request, Response

__all__ = ["Backend", "Capabilities", "Handler", "Stage"]

Handler = Callable[[Request], Awaitable[Response]]


@runtime_checkable
class Stage(Protocol):
    """One optimisation folded around the backend.

    A stage that does not apply to a request passes it through first thing
    (``return await call_next(request)``). Its own failures are handled by the pipeline's policy
    for it, so a stage does not wrap itself in try/except.

    Its options are declared, not parsed by hand (``tokenlean.middleware.options``): an optional
    class attribute ``options_model`` (a ``StageOptions`` model: what one call may ask under the
    stage's name, from a body, ``x-tokenlean-<name>-*`` headers or the integrations' call options)
    and ``spec_model`` (a ``SpecOptions`` model of its constructor options in a pipeline spec).
    Optional, so a stage that takes no options needs neither.

    A stage that loads models or data on first use may also define ``async def warm_up(self)``,
    which ``Pipeline.warm_up`` (and so the proxy, at startup) calls to load them before traffic,
    and ``async def aclose(self)`` to release what it holds.
    """

    name: ClassVar[str]

    async def __call__(self, request: Request, call_next: Handler, /) -> Response: ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, so stages ask instead of guessing.

    ``tools`` (``tools``/``tool_choice``), ``response_format`` (JSON mode and JSON schemas) and
    ``content_parts`` (the content part types it reads; ``None``: any, passed on as sent) are
    checked by the pipeline before anything runs: a request using what the backend cannot do
    gets a 400 naming the field instead of an answer that silently ignored it.
    """

    streaming: bool = True
    logprobs: bool = False
    n: bool = True
    batching: bool = False
    tools: bool = False
    response_format: bool = False
    content_parts: frozenset[str] | None = frozenset({"text"})

    def refuse_unsupported(self, request: Request) -> None:
        """Raise ``BadRequestError`` naming the first field of ``request`` this backend cannot honour."""
        if not self.tools and (request.tools or request.tool_choice is not None):
            raise BadRequestError("tools: this backend does not support tool calling", param="tools")
        if not self.response_format and (request.response_format or {}).get("type", "text") != "text":
            raise BadRequestError(
                "response_format: this backend does not support structured output", param="response_format"
            )
        if self.content_parts is None:
            return
        for i, message in enumerate(request.messages):
            for part in message.parts or ():
                if part.get("type") not in self.content_parts:
                    raise BadRequestError(
                        f"messages.{i}.content: content parts of type {part.get('type')!r} are not "
                        f"supported by this backend (supported: {', '.join(sorted(self.content_parts))})",
                        param=f"messages.{i}.content",
                    )


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
