"""The fast path: a streamed request no stage acts on is relayed upstream-to-client as SSE bytes.

Profiled (bench/proxy_overhead_profile.py), a pass-through stream spent most of the proxy's CPU
per token on turning each upstream event into ``Chunk`` objects and back: ``json.loads``,
``parse_chunk``, ``chat_chunk``, ``json.dumps``, and a timeout context per event. None of that is
needed when nothing between the client and the upstream looks at the tokens. Here each event's
``data`` payload goes back out exactly as the upstream wrote it (every field, vendor extras
included); only the usage chunk is parsed, because the token budget, the metrics and the ledger
need the counts (and a client that did not ask for usage must not get that chunk).

Retries and replica choice are the backend's own (``OpenAIBackend._attempts``): the first event
is read before the response starts, so a replica that fails before it is retried on another.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.backends.openai_wire import (
    LineEnds,
    event_data,
    request_body,
)
from tokenlean.backends.replicas import Replica
from tokenlean.backends.upstream_stream import (
    Progress,
    UpstreamStream,
    drain,
    first_read,
    stream_error,
    within,
)
from tokenlean.middleware.types import Request, Usage

__all__ = ["RawStream", "open_raw_stream", "relay_backend", "relay_events", "usage_of"]


def relay_backend(pipeline: Any, request: Request) -> OpenAIBackend | None:
    """The upstream backend when no stage could act on ``request`` (no stages, a stream), else None."""
    backend = getattr(pipeline, "backend", None)
    if request.stream and not pipeline.stages and isinstance(backend, OpenAIBackend):
        return backend
    return None


class RawStream(UpstreamStream[list[bytes]]):
    """An upstream stream's event payloads as bytes, a list per read, the first read already in.

    ``usage`` is filled in by ``relay_events`` from the usage chunk, for the accounting.
    """

    def __init__(
        self,
        backend: OpenAIBackend,
        replica: Replica,
        first: list[bytes] | None,
        rest: AsyncGenerator[list[bytes], None],
    ) -> None:
        super().__init__(backend, replica, first, rest)
        self.usage: Usage | None = None


async def open_raw_stream(backend: OpenAIBackend, request: Request) -> RawStream:
    """Send ``request`` upstream (retrying before the first event) and return its event stream."""
    backend._ensure_monitor()
    deadline = asyncio.get_running_loop().time() + backend.total_timeout
    body = request_body(request, await backend._model_for(request))

    async def attempt(
        replica: Replica, progress: Progress
    ) -> tuple[Replica, list[bytes] | None, AsyncGenerator[list[bytes], None]]:
        return await first_read(replica, _events(backend, replica, request, body, deadline, progress))

    replica, first, rest = await backend._attempts(request, deadline, attempt, hold=True)
    return RawStream(backend, replica, first, rest)


async def _events(
    backend: OpenAIBackend,
    replica: Replica,
    request: Request,
    body: dict[str, Any],
    deadline: float,
    progress: Progress,
) -> AsyncGenerator[list[bytes], None]:
    """The upstream's event payloads, one list per read: events that arrive together leave together.

    The total deadline is checked per read rather than by a timeout context around each one
    (which cost more than the read itself); a stalled read still ends at the read timeout.
    """
    loop = asyncio.get_running_loop()
    async with backend._streamed(replica, request, body, deadline) as (answer, timer):
        splitter = _Splitter()
        reads = answer.content.iter_any()
        async for read in reads:
            if loop.time() > deadline:
                raise TimeoutError
            payloads = splitter.feed(read)
            done = bool(payloads) and payloads[-1] == b"[DONE]"
            payloads, error = _until_error(payloads[:-1] if done else payloads)
            if payloads:
                if not progress.first_byte:
                    timer.first_chunk()
                    progress.first_byte = True
                yield payloads
            if error is not None:  # after the events before it: the client has those
                raise error
            if done:
                await within(deadline, drain(reads))  # read to the end: the connection is reused
                break
        timer.done()


class _Splitter:
    """Complete SSE events' ``data`` payloads from raw reads (any line ends; comments dropped)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._line_ends = LineEnds()

    def feed(self, read: bytes) -> list[bytes]:
        self._buffer += self._line_ends.normalise(read)
        if b"\n\n" not in self._buffer:
            return []
        *events, self._buffer = self._buffer.split(b"\n\n")
        return [p for p in map(event_data, events) if p is not None]


def _until_error(payloads: list[bytes]) -> tuple[list[bytes], Exception | None]:
    """The payloads before the upstream's error event, if one is among them, and its error."""
    for at, payload in enumerate(payloads):
        if b'"error"' in payload:
            data = json.loads(payload)
            if isinstance(data, dict) and "error" in data and not data.get("choices"):
                return payloads[:at], stream_error(data["error"])
    return payloads, None


def usage_of(payload: bytes) -> tuple[Usage | None, dict[str, Any] | None]:
    """The usage an event carries and its parsed body (both ``None`` for a token event: not parsed)."""
    if b'"usage"' not in payload or b'"usage":null' in payload:
        return None, None
    data = json.loads(payload)
    raw = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return None, None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0)), data


async def relay_events(stream: RawStream, include_usage: bool, on_first: Any) -> AsyncIterator[bytes]:
    """SSE bytes for the client, one block per upstream read: every event as sent, the usage-only
    chunk only when asked for."""
    first = True
    async for payloads in stream:
        if first:
            on_first()
            first = False
        out = []
        for payload in payloads:
            usage, data = usage_of(payload)
            if usage is not None and data is not None:
                stream.usage = usage
                if not data.get("choices"):
                    if not include_usage:
                        continue
                    data["tokenlean"] = {"events": []}  # as on every usage chunk the proxy sends
                    payload = json.dumps(data, separators=(",", ":")).encode()
            out.append(b"data: " + payload + b"\n\n")
        if out:
            yield b"".join(out)
