"""The OpenAI HTTP wire format, both ways, for ``OpenAIBackend``.

Pure functions, no I/O: a ``Request`` becomes the JSON body of ``/v1/chat/completions`` (or
``/v1/completions`` for a text prompt); a JSON answer or one SSE chunk becomes ``Response`` /
``Chunk``; an error body becomes an ``UpstreamStatusError``. Fields tokenlean does not model
(``request.extra``: vLLM's ``top_k``, ``prompt_logprobs``, ``echo``, guided decoding, ...) are
copied into the body as they came, after the known ones, so the caller's value wins.

Logprobs are carried in the chat shape (``{"token", "logprob", "bytes", "top_logprobs": [...]}``
per token) for both endpoints; the legacy completions shape (parallel lists) is converted, so
stages see one form.
"""

from __future__ import annotations

import datetime
import email.utils
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from tokenlean.errors import BackendError, UpstreamStatusError
from tokenlean.middleware.types import Choice, Chunk, Message, Request, Response, Usage

__all__ = [
    "LineEnds",
    "endpoint",
    "error_from_body",
    "event_data",
    "parse_chunk",
    "parse_completion",
    "redact_error",
    "request_body",
    "retry_after",
    "sse_data",
]


def endpoint(request: Request) -> str:
    """The path, relative to the upstream's ``/v1/`` base, that answers ``request``."""
    return "completions" if request.prompt is not None else "chat/completions"


def _message(message: Message) -> dict[str, Any]:
    """A message as the client sent it: content parts, tool calls, tool call id and extra fields."""
    out: dict[str, Any] = {**message.extra, "role": message.role, "content": message.wire_content()}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [dict(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _tool_fields(request: Request) -> dict[str, Any]:
    """Tools, tool choice and response format, as the client sent them (absent when not sent)."""
    fields: dict[str, Any] = {
        "tool_choice": request.tool_choice,
        "parallel_tool_calls": request.parallel_tool_calls,
        "response_format": request.response_format,
    }
    out = {k: v for k, v in fields.items() if v is not None}
    if request.tools:
        out["tools"] = [dict(tool) for tool in request.tools]
    return out


def request_body(request: Request, model: str) -> dict[str, Any]:
    """The JSON body for ``request`` addressed to ``model``; ``request.extra`` is merged last."""
    chat = request.prompt is None
    body: dict[str, Any] = {"model": model}
    if chat:
        body["messages"] = [_message(m) for m in request.messages]
        body.update(_tool_fields(request))
    else:
        body["prompt"] = request.prompt
    for name in ("max_tokens", "temperature", "top_p", "seed"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if request.n != 1:
        body["n"] = request.n
    if request.logprobs:
        if chat:
            body["logprobs"] = True
            if request.top_logprobs is not None:
                body["top_logprobs"] = request.top_logprobs
        else:
            body["logprobs"] = request.top_logprobs or 0
    body.update(request.extra)
    if request.stream:
        body["stream"] = True
        # Usage arrives in a last chunk only when asked for; stages and the proxy's accounting
        # need it, so it is always asked for (the proxy drops it for a client that did not ask).
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream_options", None)
    return body


def _usage(data: Mapping[str, Any] | None) -> Usage | None:
    if not data:
        return None
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _logprobs(data: Any) -> tuple[Mapping[str, Any], ...] | None:
    """Chat-shaped per-token logprobs from either endpoint's ``logprobs`` field."""
    if not data:
        return None
    if "content" in data:  # chat: already one dict per token
        return tuple(data["content"] or ())
    tokens = data.get("tokens") or []
    values = data.get("token_logprobs") or []
    tops = data.get("top_logprobs") or [None] * len(tokens)
    return tuple(
        {
            "token": token,
            "logprob": value,
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in (top or {}).items()],
        }
        for token, value, top in zip(tokens, values, tops)
    )


_CHOICE_KEYS = {"index", "message", "delta", "text", "finish_reason", "logprobs"}
_MESSAGE_KEYS = {"role", "content", "tool_calls"}
_RESPONSE_KEYS = {"id", "object", "created", "model", "choices", "usage", "tokenlean"}


def _choice_extra(raw: Mapping[str, Any], nested: str) -> dict[str, Any]:
    """A choice's vendor fields (vLLM's ``stop_reason``, ...) and, under ``nested``, its message's."""
    extra = {k: v for k, v in raw.items() if k not in _CHOICE_KEYS and v is not None}
    inner = raw.get(nested) or {}
    inner_extra = {k: v for k, v in inner.items() if k not in _MESSAGE_KEYS and v is not None}
    if inner_extra:
        extra[nested] = inner_extra
    return extra


def parse_completion(data: Mapping[str, Any]) -> Response:
    """A non-streamed JSON answer (chat or text completion) as a ``Response``, extras kept."""
    choices = []
    for position, raw in enumerate(data.get("choices") or ()):
        message = raw.get("message")
        text = (message.get("content") if message is not None else raw.get("text")) or ""
        choices.append(
            Choice(
                index=int(raw.get("index", position)),
                text=text,
                finish_reason=raw.get("finish_reason"),
                logprobs=_logprobs(raw.get("logprobs")),
                tool_calls=tuple((message or {}).get("tool_calls") or ()),
                extra=_choice_extra(raw, "message"),
            )
        )
    extra: dict[str, Any] = {}
    if data.get("id"):
        extra["id"] = data["id"]
    if data.get("created"):
        extra["created"] = int(data["created"])
    return Response(
        model=str(data.get("model") or ""),
        choices=tuple(choices),
        usage=_usage(data.get("usage")) or Usage(),
        extra={k: v for k, v in data.items() if k not in _RESPONSE_KEYS},
        **extra,
    )


def parse_chunk(data: Mapping[str, Any]) -> list[Chunk]:
    """One SSE chunk as tokenlean chunks: one per choice that carries something, then usage.

    The role-only opening delta carries no text and is dropped; every other delta is kept as it
    came (tool-call deltas and vendor fields included), so the stream stays one upstream chunk to
    one client chunk.
    """
    out = []
    for raw in data.get("choices") or ():
        delta = raw.get("delta")
        text = (delta.get("content") if delta is not None else raw.get("text")) or ""
        finish = raw.get("finish_reason")
        logprobs = _logprobs(raw.get("logprobs"))
        calls = tuple((delta or {}).get("tool_calls") or ())
        extra = _choice_extra(raw, "delta")
        if text or finish is not None or logprobs or calls or extra:
            out.append(
                Chunk(
                    index=int(raw.get("index", 0)),
                    text=text,
                    finish_reason=finish,
                    logprobs=logprobs,
                    tool_calls=calls,
                    extra=extra,
                )
            )
    usage = _usage(data.get("usage"))
    if usage is not None:
        out.append(Chunk(usage=usage))
    return out


def redact_error(error: BackendError, secrets: Sequence[str]) -> BackendError:
    """``error`` with the upstream's credentials masked: its message reaches clients and logs."""
    message = error.message
    for secret in secrets:
        message = message.replace(secret, "***")
    if message != error.message:
        error.message, error.args = message, (message,)
    return error


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), ``None`` if absent."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.datetime.now(datetime.timezone.utc)).total_seconds(), 0.0)


def error_from_body(status: int, body: bytes, retry_after: float | None = None) -> UpstreamStatusError:
    """An ``UpstreamStatusError`` carrying the upstream's own message and ``param``.

    vLLM answers ``{"error": {"message", "type", "param", "code"}}`` (older releases put the
    same keys at the top level); anything else is quoted raw, truncated.
    """
    message, param = "", None
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        inner = error if isinstance(error, dict) else data
        message = str(inner.get("message") or "")
        param = inner.get("param") if isinstance(inner.get("param"), str) else None
    if not message:
        message = body.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    return UpstreamStatusError(
        f"upstream answered {status}: {message}", upstream_status=status, param=param, retry_after=retry_after
    )


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The ``data`` payload of each server-sent event, as soon as its closing blank line arrives.

    Works on the raw body bytes (no text decoding, no line objects: this loop runs once per
    token). Comment lines (keep-alives) and other fields are skipped; multi-line data is joined
    with newlines. Line ends may be LF, CRLF or a bare CR, as the SSE specification allows, and a
    CRLF may be split across two reads (``LineEnds``).
    """
    buffer = b""
    line_ends = LineEnds()
    async for chunk in chunks:
        buffer += line_ends.normalise(chunk)
        while (end := buffer.find(b"\n\n")) >= 0:
            event, buffer = buffer[:end], buffer[end + 2 :]
            payload = event_data(event)
            if payload is not None:
                yield payload
    if buffer.strip():
        payload = event_data(buffer)
        if payload is not None:
            yield payload


class LineEnds:
    """Turns CRLF and bare CR into LF across reads: a CR ending one read may pair with the next LF."""

    __slots__ = ("_after_cr",)

    def __init__(self) -> None:
        self._after_cr = False

    def normalise(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous read
        if b"\r" not in chunk:
            self._after_cr = False
            return chunk
        self._after_cr = chunk.endswith(b"\r")
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def event_data(event: bytes) -> bytes | None:
    lines = [line[5:] for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[1:] if line.startswith(b" ") else line for line in lines)
