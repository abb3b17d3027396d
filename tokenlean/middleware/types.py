"""Immutable request and response types shared by every front-end, stage and backend.

A front-end converts its wire format into a ``Request`` and a ``Response`` back; nothing else
crosses a stage boundary. Both are frozen: a stage that changes a request builds a new one with
``request.replace(...)``, so a stage can never surprise the stages around it.

A streamed response carries ``stream`` (an async iterator of ``Chunk``) instead of ``choices``;
stages that do not need the text pass the stream through untouched, stages that do call
``await response.aread()``.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool", "developer"]

__all__ = ["Choice", "Chunk", "Event", "Message", "Request", "Response", "Usage"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn. ``content`` is plain text; multi-part content is flattened by the front-end."""

    role: Role
    content: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts in the backend model's own tokenizer."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens, as OpenAI reports them."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """What one stage did to one request and what it saved.

    ``action`` is a short verb ("hit", "miss", "compressed", "bypassed", ...); ``data`` holds
    the figures (tokens saved, similarity, tier, ...). ``ms`` is the stage's own time.
    """

    stage: str
    action: str
    ms: float = 0.0
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Request:
    """A chat completion request, independent of any wire format.

    ``prompt`` is set instead of ``messages`` for legacy text completions. ``extra`` holds
    OpenAI (or vLLM) fields tokenlean does not interpret; they are passed to the backend as they
    came. ``options`` holds the per-call tokenlean options (``extra_body={"tokenlean": ...}``),
    keyed by stage name. ``tenant`` scopes caches and pools; the proxy fills it from the API key.
    """

    messages: tuple[Message, ...] = ()
    model: str = ""
    prompt: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    stream: bool = False
    logprobs: bool = False
    top_logprobs: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    tenant: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def replace(self, **changes: Any) -> Request:
        """Return a copy with ``changes`` applied; the original is never modified."""
        if "messages" in changes:
            changes["messages"] = tuple(changes["messages"])
        return dataclasses.replace(self, **changes)

    def option(self, stage: str, default: Any = None) -> Any:
        """The per-call option for ``stage`` (``extra_body["tokenlean"][stage]``), or ``default``."""
        return self.options.get(stage, default)

    @property
    def is_deterministic(self) -> bool:
        """Greedy decoding or a fixed seed: the same request gives the same answer."""
        return self.temperature == 0 or self.seed is not None

    @property
    def last_user_text(self) -> str:
        """The final user turn (or the text prompt): the question stages must protect."""
        if self.prompt is not None:
            return self.prompt
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


@dataclass(frozen=True, slots=True)
class Choice:
    """One generated alternative (OpenAI's ``choices[i]``)."""

    index: int = 0
    text: str = ""
    finish_reason: str | None = "stop"
    logprobs: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streamed answer: new text for choice ``index``.

    The last chunk of a choice has ``finish_reason``; a chunk with ``usage`` (and no text) may
    close the stream. ``events`` lets a stage report after the stream finished (a cache store).
    """

    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: tuple[Mapping[str, Any], ...] | None = None
    usage: Usage | None = None
    events: tuple[Event, ...] = ()


def _new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


@dataclass(frozen=True, slots=True)
class Response:
    """A completed (``choices``) or streaming (``stream``) answer, plus what the stages did."""

    model: str = ""
    choices: tuple[Choice, ...] = ()
    usage: Usage = field(default_factory=Usage)
    events: tuple[Event, ...] = ()
    stream: AsyncIterator[Chunk] | None = None
    id: str = field(default_factory=_new_id)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def text(self) -> str:
        """The first choice's text; only defined once the response is read."""
        if self.stream is not None:
            raise RuntimeError("streaming response: call `await response.aread()` first")
        return self.choices[0].text if self.choices else ""

    @property
    def is_streaming(self) -> bool:
        """True while the answer is still an unread stream."""
        return self.stream is not None

    def replace(self, **changes: Any) -> Response:
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def with_event(self, event: Event) -> Response:
        """Return a copy with ``event`` appended to ``events``."""
        return dataclasses.replace(self, events=(*self.events, event))

    async def aread(self) -> Response:
        """Consume the stream (if any) and return the equivalent completed response.

        Chunk events are folded into ``events``; the final ``usage`` chunk wins.
        """
        if self.stream is None:
            return self
        texts: dict[int, list[str]] = {}
        finish: dict[int, str | None] = {}
        logprobs: dict[int, list[Mapping[str, Any]]] = {}
        usage, events = self.usage, list(self.events)
        async for chunk in self.stream:
            texts.setdefault(chunk.index, []).append(chunk.text)
            if chunk.finish_reason is not None:
                finish[chunk.index] = chunk.finish_reason
            if chunk.logprobs:
                logprobs.setdefault(chunk.index, []).extend(chunk.logprobs)
            if chunk.usage is not None:
                usage = chunk.usage
            events.extend(chunk.events)
        choices = tuple(
            Choice(i, "".join(texts[i]), finish.get(i, "stop"), tuple(logprobs[i]) if i in logprobs else None)
            for i in sorted(texts)
        )
        return dataclasses.replace(self, choices=choices, usage=usage, events=tuple(events), stream=None)
