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
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool", "developer"]

__all__ = [
    "Choice",
    "ChoiceAssembly",
    "Chunk",
    "Event",
    "Message",
    "Request",
    "Response",
    "Usage",
    "merge_chunk_extra",
    "merge_tool_call_deltas",
]

_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})
#: Pass-through fields that ask for tool calls (OpenAI's legacy functions) or constrained output (vLLM).
_LEGACY_TOOL_FIELDS = ("functions", "function_call")
_CONSTRAINED_OUTPUT_FIELDS = (
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "structured_outputs",
)


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn.

    ``content`` is the text a stage may read or rewrite (a list of parts has its text parts
    joined). ``parts`` keeps the original list when the client sent one (``image_url``,
    ``input_audio``, ``file``, ``text``, ...): it goes upstream unchanged, except that a stage which
    rewrote ``content`` has the text parts replaced by the new text (``wire_content``).
    ``tool_calls`` is an assistant turn's calls (OpenAI shape), ``tool_call_id`` a tool turn's
    answer target; ``extra`` holds the message's other fields (vendor ones included), as sent.
    """

    role: Role
    content: str
    name: str | None = None
    parts: tuple[Mapping[str, Any], ...] | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    tool_call_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _NO_EXTRA)

    def replace(self, **changes: Any) -> Message:
        """Return a copy with ``changes`` applied (parts, tool calls and extras kept)."""
        return dataclasses.replace(self, **changes)

    @property
    def has_non_text_parts(self) -> bool:
        """The message carries parts other than text (images, audio, files, ...)."""
        return any(part.get("type") != "text" for part in self.parts or ())

    def wire_content(self) -> str | list[dict[str, Any]] | None:
        """The ``content`` to send upstream: the parts as sent, with text parts following ``content``.

        When a stage rewrote ``content`` the text parts are replaced by one text part, at the
        place of the first, so non-text parts and their order survive. An assistant turn with
        tool calls and no text gets ``None``, as OpenAI sends it.
        """
        if self.parts is None:
            return None if not self.content and self.tool_calls else self.content
        texts = [p for p in self.parts if p.get("type") == "text"]
        if "".join(str(p.get("text") or "") for p in texts) == self.content:
            return [dict(p) for p in self.parts]
        out: list[dict[str, Any]] = []
        for part in self.parts:
            if part.get("type") != "text":
                out.append(dict(part))
            elif part is texts[0]:
                out.append({**part, "text": self.content})
        if not texts and self.content:
            out.insert(0, {"type": "text", "text": self.content})
        return out


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
    came. ``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format`` are OpenAI's
    fields as sent (tool definitions, ``"none"``/``"auto"``/``"required"``/a named function, the
    ``text``/``json_object``/``json_schema`` format); stages ask ``structured_features`` before
    touching such a request. ``options`` holds the per-call tokenlean options (``extra_body={"tokenlean": ...}``),
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
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: Mapping[str, Any] | None = None
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
    def structured_features(self) -> tuple[str, ...]:
        """The fields that make this more than a plain-text chat, as the names of those fields.

        ``"tools"`` (tool definitions, a tool choice, legacy ``functions``, or tool calls / tool
        turns in the history), ``"response_format"`` (JSON mode, a JSON schema, or vLLM's
        ``guided_*`` / ``structured_outputs``) and ``"content"`` (parts other than text). Empty for a plain-text request. Every stage asks this one question before it
        rewrites a prompt or changes how the answer is produced: a stage that does not handle
        these steps aside and says why (``step_aside_reason``), so the answer keeps its shape.
        """
        features: list[str] = []
        if (
            self.tools
            or self.tool_choice is not None
            or any(name in self.extra for name in _LEGACY_TOOL_FIELDS)
            or any(m.tool_calls or m.role == "tool" for m in self.messages)
        ):
            features.append("tools")
        if (self.response_format is not None and self.response_format.get("type", "text") != "text") or any(
            name in self.extra for name in _CONSTRAINED_OUTPUT_FIELDS
        ):
            features.append("response_format")
        if any(m.has_non_text_parts for m in self.messages):
            features.append("content")
        return tuple(features)

    @property
    def step_aside_reason(self) -> str | None:
        """Why a text-only stage leaves this request alone (``"uses tools"`` ...), or None."""
        features = self.structured_features
        return "uses " + ", ".join(features) if features else None

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
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: _NO_EXTRA)
    """Tool calls in OpenAI's shape (``{"id", "type": "function", "function": {"name", "arguments"}}``,
    ``finish_reason`` ``"tool_calls"``). ``extra`` holds the choice's vendor fields (vLLM's
    ``stop_reason``, ...) passed back unchanged; its key ``"message"`` holds extra message fields."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streamed answer: new text for choice ``index``.

    The last chunk of a choice has ``finish_reason``; a chunk with ``usage`` (and no text) may
    close the stream. ``events`` lets a stage report after the stream finished (a cache store).
    ``tool_calls`` are streamed deltas in OpenAI's shape (each with its ``index``; arguments
    arrive in fragments); ``extra`` holds the chunk choice's vendor fields, its key ``"delta"`` the
    delta's extra fields.
    """

    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: tuple[Mapping[str, Any], ...] | None = None
    usage: Usage | None = None
    events: tuple[Event, ...] = ()
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=lambda: _NO_EXTRA)


def join_same_index(deltas: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One chunk's tool-call deltas with one entry per ``index`` (OpenAI never sends two).

    A backend may produce a call's head and its first argument fragment at once; clients (the
    ``openai`` library, LangChain) merge same-index fragments only across chunks, so two entries
    with one index in one chunk would read as two calls.
    """
    joined: dict[Any, dict[str, Any]] = {}
    for delta in deltas:
        function = delta.get("function") or {}
        into = joined.get(delta.get("index"))
        if into is None:
            joined[delta.get("index")] = {**delta, "function": dict(function)}
            continue
        for key in ("id", "type"):
            if delta.get(key) and not into.get(key):
                into[key] = delta[key]
        if function.get("name") and not into["function"].get("name"):
            into["function"]["name"] = function["name"]
        arguments = (into["function"].get("arguments") or "") + (function.get("arguments") or "")
        into["function"]["arguments"] = arguments
    return list(joined.values())


def merge_tool_call_deltas(deltas: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Join streamed tool-call deltas into complete calls (arguments concatenated per ``index``)."""
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        call = calls.setdefault(
            int(delta.get("index", len(calls))), {"id": None, "type": "function", "function": {}}
        )
        if delta.get("id"):
            call["id"] = delta["id"]
        if delta.get("type"):
            call["type"] = delta["type"]
        function = delta.get("function") or {}
        if function.get("name"):
            call["function"]["name"] = function["name"]
        call["function"]["arguments"] = call["function"].get("arguments", "") + (
            function.get("arguments") or ""
        )
    return tuple(calls[i] for i in sorted(calls))


class ChoiceAssembly:
    """A stream's chunks folded into whole choices.

    Reading a stream (``Response.aread``) and keeping a copy of one on the side (the cache's tee)
    need the same fold; this is the one place that knows how text, logprobs, tool-call deltas
    and vendor fields join, so the two can never disagree about what an answer was.
    """

    def __init__(self, usage: Usage) -> None:
        self.usage = usage
        """The last ``usage`` a chunk carried (``usage`` until one does)."""
        self.events: list[Event] = []
        """Every chunk's events, in order."""
        self._texts: dict[int, list[str]] = {}
        self._finish: dict[int, str] = {}
        self._logprobs: dict[int, list[Mapping[str, Any]]] = {}
        self._calls: dict[int, list[Mapping[str, Any]]] = {}
        self._extras: dict[int, dict[str, Any]] = {}

    def add(self, chunk: Chunk) -> None:
        """Fold one chunk in."""
        self._texts.setdefault(chunk.index, []).append(chunk.text)
        if chunk.finish_reason is not None:
            self._finish[chunk.index] = chunk.finish_reason
        if chunk.logprobs:
            self._logprobs.setdefault(chunk.index, []).extend(chunk.logprobs)
        self._calls.setdefault(chunk.index, []).extend(chunk.tool_calls)
        merge_chunk_extra(self._extras.setdefault(chunk.index, {}), chunk.extra)
        if chunk.usage is not None:
            self.usage = chunk.usage
        self.events.extend(chunk.events)

    @property
    def finished(self) -> frozenset[int]:
        """The choices whose finish reason has arrived."""
        return frozenset(self._finish)

    def choices(self, indices: Iterable[int] | None = None) -> tuple[Choice, ...]:
        """The whole choices ``indices`` (default: every one a chunk named), in that order; a
        choice whose stream never finished reads as ``"stop"``."""
        wanted = sorted(self._texts) if indices is None else indices
        return tuple(
            Choice(
                i,
                "".join(self._texts.get(i, ())),
                self._finish.get(i, "stop"),
                tuple(self._logprobs[i]) if i in self._logprobs else None,
                merge_tool_call_deltas(self._calls.get(i, ())),
                self._extras.get(i) or _NO_EXTRA,
            )
            for i in wanted
        )


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
    extra: Mapping[str, Any] = field(default_factory=lambda: _NO_EXTRA)
    """The answer's top-level vendor fields (``system_fingerprint``, vLLM's ``prompt_logprobs``...)."""

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

        Chunk events are folded into ``events``; the final ``usage`` chunk wins; tool-call deltas
        are joined into whole calls; the choice's vendor fields keep their last value.
        """
        if self.stream is None:
            return self
        assembly = ChoiceAssembly(self.usage)
        async for chunk in self.stream:
            assembly.add(chunk)
        events = (*self.events, *assembly.events)
        return dataclasses.replace(
            self, choices=assembly.choices(), usage=assembly.usage, events=events, stream=None
        )


def merge_chunk_extra(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Fold a chunk's vendor fields into a choice's: the delta's fields become the message's."""
    for key, value in extra.items():
        if key == "delta":
            message = into.setdefault("message", {})
            for name, part in value.items():
                joined = isinstance(part, str) and isinstance(message.get(name), str)
                message[name] = message[name] + part if joined else part
        elif value is not None or key not in into:
            into[key] = value
