"""One proxied request, from body to answer: the part of the proxy every route shares.

Read the body within its limits, validate it into a ``Request`` (options from the body and the
``x-tokenlean-*`` headers), admit it against the tenant's limits, run the pipeline (or relay the
upstream's bytes when no stage can act), answer JSON or SSE, and observe it: metrics, the
tenant's token charge, the savings ledger and one access-log line without prompt text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse
from fastapi.responses import Response as HTTPResponse
from pydantic import ValidationError

from tokenlean.errors import PayloadTooLargeError, TokenleanError
from tokenlean.ledger import Ledger
from tokenlean.middleware.options import header_options, option_models, validate_call_options
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.types import Chunk, Request, Response, Usage
from tokenlean.proxy.auth import ApiKeys
from tokenlean.proxy.errors import error_body, error_response, from_validation_error
from tokenlean.proxy.event_stream import EventStreamResponse
from tokenlean.proxy.limits import Limits
from tokenlean.proxy.metrics import ProxyMetrics
from tokenlean.proxy.relay import RawStream, open_raw_stream, relay_backend, relay_events
from tokenlean.wire import (
    chat_chunk,
    chat_response,
    check_json_values,
    check_model,
    completion_chunk,
    completion_response,
    events_json,
    to_request,
)

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_MAX_MESSAGES", "DEFAULT_MAX_OPTION_BYTES", "ProxyHandler"]

log = logging.getLogger("tokenlean.proxy")
access_log = logging.getLogger("tokenlean.access")
DEFAULT_MAX_BODY = 8 * 1024 * 1024
DEFAULT_MAX_MESSAGES = 1024
DEFAULT_MAX_OPTION_BYTES = 256 * 1024


class ProxyHandler:
    """Request handling shared by the chat and text completion routes."""

    ledger: Ledger | None = None
    relay: bool = True

    def __init__(
        self,
        pipeline: Pipeline,
        keys: ApiKeys,
        max_body_bytes: int,
        max_messages: int,
        limits: Limits,
        *,
        max_option_bytes: int = DEFAULT_MAX_OPTION_BYTES,
    ) -> None:
        self.pipeline = pipeline
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.max_messages = max_messages
        self.max_option_bytes = max_option_bytes
        self.limits = limits
        self.metrics = ProxyMetrics()

    async def backend_health(self) -> dict[str, Any]:
        """The backend's own report (upstreams and their state), or ``{}`` when it has none."""
        report: Callable[[], Awaitable[dict[str, Any]]] | None
        report = getattr(self.pipeline.backend, "health", None)
        return await report() if report is not None else {}

    def model_names(self) -> list[str]:
        """Backend models plus names stages answer to (a cascade's ``cascade:<name>``)."""
        return self.pipeline.models()

    async def handle(self, http: HTTPRequest, wire: type, kind: str) -> HTTPResponse:
        request_id = _request_id(http)
        started = time.perf_counter()
        try:
            request = await self._parse(http, wire, request_id)
            await self.limits.aadmit(request.tenant)
            upstream = relay_backend(self.pipeline, request) if self.relay else None
            if upstream is not None:  # the fast path: no stage could act on this request
                upstream.capabilities.refuse_unsupported(request)
                return self._relayed(request, await open_raw_stream(upstream, request), kind, started)
            response = await self.pipeline(request)
        except ValidationError as exc:
            return self._failed(
                kind, from_validation_error(exc, request_id=request_id), "invalid_value", started
            )
        except TokenleanError as exc:
            return self._failed(kind, error_response(exc, request_id=request_id), exc.code, started)
        except Exception as exc:  # noqa: BLE001 - anything else is a 500 body, never a stack trace
            return self._failed(kind, error_response(exc, request_id=request_id), "internal_error", started)
        headers = _event_headers(response, request_id)
        if response.is_streaming:
            include_usage = bool((request.extra.get("stream_options") or {}).get("include_usage"))
            body = self._sse(request, response, kind, include_usage, started)
            return EventStreamResponse(body, headers=headers)
        await self._observe(kind, 200, request, response, started)
        payload = chat_response(response) if kind == "chat" else completion_response(response)
        return JSONResponse(payload, headers=headers)

    def _relayed(self, request: Request, raw: RawStream, kind: str, started: float) -> EventStreamResponse:
        include_usage = bool((request.extra.get("stream_options") or {}).get("include_usage"))
        body = self._relay_sse(request, raw, kind, include_usage, started)
        return EventStreamResponse(body, headers={"x-request-id": request.request_id or ""})

    async def _relay_sse(
        self, request: Request, raw: RawStream, kind: str, include_usage: bool, started: float
    ) -> AsyncIterator[bytes]:
        """The upstream's events as bytes (``tokenlean.proxy.relay``); errors end it as ``_sse`` does."""

        def first_token() -> None:
            self.metrics.first_token.observe(time.perf_counter() - started)

        try:
            async for data in relay_events(raw, include_usage, first_token):
                yield data
            answered = Response(model=request.model, usage=raw.usage or Usage())
            await self._observe(kind, 200, request, answered, started)
        except Exception as exc:  # noqa: BLE001 - headers are sent: an error event, then a clean end
            yield ("data: " + json.dumps(_stream_error(exc)) + "\n\n").encode()
            self.metrics.errors.labels(getattr(exc, "code", "internal_error")).inc()
        finally:
            await raw.aclose()
        yield b"data: [DONE]\n\n"

    async def _parse(self, http: HTTPRequest, wire: type, request_id: str) -> Request:
        tenant = self.keys.tenant(http.headers.get("authorization"))
        raw = await self._read_body(http)
        body = wire.model_validate_json(raw)  # type: ignore[attr-defined]
        request = to_request(body, tenant=tenant, request_id=request_id)
        if len(request.messages) > self.max_messages:
            raise PayloadTooLargeError(
                f"{len(request.messages)} messages exceed the limit of {self.max_messages}", param="messages"
            )
        if body.stream_options is not None:
            request = request.replace(
                extra={**request.extra, "stream_options": body.stream_options.model_dump()}
            )
        request = request.replace(options=self._options(http, request.options))
        check_model(request.model, self.model_names())  # the check every front-end makes
        return request

    def _options(self, http: HTTPRequest, body_options: Any) -> dict[str, Any]:
        """Per-call stage options (body and headers), bounded in size and free of NaN.

        ``x-tokenlean-<stage>-<option>`` header values are converted by the type the stage's
        options model declares for that option (``tokenlean.middleware.options``); the body's
        options win field by field; both are validated here, so a bad one is a 400 naming it.
        """
        models = option_models(self.pipeline.stages, self.pipeline.backend)
        options = validate_call_options(models, body_options, header_options(http.headers.items()))
        check_json_values(options, "tokenlean")
        size = len(json.dumps(options, separators=(",", ":")))
        if size > self.max_option_bytes:
            raise PayloadTooLargeError(
                f"tokenlean options are {size} bytes as JSON, over the limit of {self.max_option_bytes}",
                param="tokenlean",
            )
        return options

    async def _read_body(self, http: HTTPRequest) -> bytes:
        declared = http.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadTooLargeError(f"request body exceeds the limit of {self.max_body_bytes} bytes")
        parts, size = [], 0
        async for part in http.stream():
            size += len(part)
            if size > self.max_body_bytes:
                raise PayloadTooLargeError(f"request body exceeds the limit of {self.max_body_bytes} bytes")
            parts.append(part)
        return b"".join(parts)

    def _failed(self, kind: str, response: JSONResponse, code: str, started: float) -> JSONResponse:
        self.metrics.requests.labels(kind, str(response.status_code)).inc()
        self.metrics.errors.labels(code).inc()
        access_log.info(
            json.dumps(
                {
                    "request_id": response.headers.get("x-request-id"),
                    "endpoint": kind,
                    "status": response.status_code,
                    "error": code,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                }
            )
        )
        return response

    async def _observe(
        self, kind: str, status: int, request: Request, response: Response, started: float
    ) -> None:
        """Metrics, the tenant's token charge and one access-log line (never prompt or answer text)."""
        elapsed = time.perf_counter() - started
        self.metrics.requests.labels(kind, str(status)).inc()
        self.metrics.latency.labels(kind).observe(elapsed)
        self.metrics.observe_usage(response.usage)
        self.metrics.observe_events(response.events)
        await self.limits.acharge_tokens(request.tenant, response.usage.total_tokens)
        if self.ledger is not None:  # a store write (SQLite or Redis) off the event loop
            await asyncio.to_thread(self.ledger.observe, request, response, elapsed, endpoint=kind)
        if not access_log.isEnabledFor(logging.INFO):  # no line to write: skip building it
            return
        access_log.info(
            json.dumps(
                {
                    "request_id": request.request_id,
                    "endpoint": kind,
                    "status": status,
                    "tenant": request.tenant,
                    "model": request.model,
                    "stream": request.stream,
                    "prompt_tokens": response.usage.prompt_tokens,
                    "completion_tokens": response.usage.completion_tokens,
                    "ms": round(elapsed * 1000, 1),
                    "events": [f"{e.stage}:{e.action}" for e in response.events if e.action != "timing"],
                }
            )
        )

    async def _sse(
        self, request: Request, response: Response, kind: str, include_usage: bool, started: float
    ) -> AsyncIterator[str]:
        """Stream chunks as SSE; an error mid-stream becomes an error event and a clean end."""
        assert response.stream is not None
        seen: set[int] = set()
        final = response
        try:
            async for chunk in response.stream:
                if not seen:
                    self.metrics.first_token.observe(time.perf_counter() - started)
                if chunk.events:
                    final = final.replace(events=(*final.events, *chunk.events))
                if chunk.usage is not None:
                    final = final.replace(usage=chunk.usage)
                if _only_usage_or_events(chunk):
                    continue  # they go out in the closing chunk, after every stage has reported
                payload = (
                    chat_chunk(response, chunk, first=chunk.index not in seen)
                    if kind == "chat"
                    else (completion_chunk(response, chunk))
                )
                seen.add(chunk.index)
                yield "data: " + json.dumps(payload, separators=(",", ":")) + "\n\n"
            closing = _closing_chunk(response, final, kind, include_usage)
            yield "data: " + json.dumps(closing, separators=(",", ":")) + "\n\n"
            await self._observe(kind, 200, request, final.replace(stream=None), started)
        except Exception as exc:  # noqa: BLE001 - headers are sent: an error event, then a clean end
            yield "data: " + json.dumps(_stream_error(exc)) + "\n\n"
            self.metrics.errors.labels(getattr(exc, "code", "internal_error")).inc()
        yield "data: [DONE]\n\n"


def _only_usage_or_events(chunk: Chunk) -> bool:
    """A chunk with nothing for the client's choices: a usage count or stage events."""
    return not (chunk.text or chunk.finish_reason or chunk.tool_calls or chunk.logprobs or chunk.extra)


def _closing_chunk(response: Response, final: Response, kind: str, include_usage: bool) -> dict[str, Any]:
    """The last chunk (``choices: []``): every stage's events, and the usage when it was asked for.

    Sent whether or not the client asked for usage: events that arrive once the stream ended (a
    cache store, a cascade's cost) must reach the client either way.
    """
    body: dict[str, Any] = {
        "id": response.id,
        "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
        "created": response.created,
        "model": response.model,
        "choices": [],
    }
    if include_usage:
        usage = final.usage
        body["usage"] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    body["tokenlean"] = events_json(final)
    return body


def _stream_error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, TokenleanError):
        return error_body(exc.message, type=exc.type, code=exc.code, param=exc.param)
    log.error("error while streaming", exc_info=exc)
    return error_body("internal error while streaming", type="server_error", code="internal_error")


_HEADER_PREFIX = "x-tokenlean-"


def _request_id(http: HTTPRequest) -> str:
    """The caller's ``x-request-id`` when it is sane (printable, ≤128 chars), else a new one."""
    given = http.headers.get("x-request-id", "")
    if 0 < len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex


def _event_headers(response: Response, request_id: str) -> dict[str, str]:
    """One ``x-tokenlean-<stage>`` header per stage (its actions), plus the request id."""
    headers = {"x-request-id": request_id}
    for event in response.events:
        if event.action == "timing":
            continue
        key = _HEADER_PREFIX + "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in event.stage)
        headers[key] = headers[key] + "," + event.action if key in headers else event.action
    saved = sum(int(e.data.get("tokens_saved", 0) or 0) for e in response.events if isinstance(e.data, dict))
    if saved:
        headers[_HEADER_PREFIX + "tokens-saved"] = str(saved)
    return headers
