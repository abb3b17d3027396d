"""``LeasingTransport``: one upstream connection per in-flight request, never offered twice.

Why not httpx's own pool: ``OpenAIBackend`` used to send every upstream request through one
``httpx.AsyncClient`` (one httpcore 1.0 pool) per upstream. Under many concurrent streams that
pool hands the same idle keep-alive connection to every request queued in the same pass; all but
one fail with ``ConnectionNotAvailable`` and go round again (encode/httpcore#822), and each pass
is quadratic in the pool's connections. Measured by ``bench/load.py`` (200 streaming clients on
loopback, bench/results/load.diagnosis.json): 89% of connection attempts were refused, the
assignment passes took two thirds of the proxy's CPU, and throughput fell from 72 req/s at 64
clients to 33 req/s at 200. This transport, with the same proxy, carried 190 req/s (5.7x).

How: up to ``max_connections`` one-connection ``httpx.AsyncHTTPTransport``s (public API only),
each lent to one request until its response is closed. A lent transport's single connection is
busy by construction, so no pass ever races for it. Idle transports are reused last-in
first-out (the warmest connection first); those idle longer than ``keepalive_expiry`` are closed
at the next lease or return, so a past burst does not keep its sockets open. HTTP/1.1 only.

Contract, as with httpx's pool: a streamed response must be closed (or read to its end); its
slot comes back then, or when the send fails or is cancelled. Env proxies (``HTTP_PROXY``) do
not apply: httpx ignores them for a client given its own transport.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import httpx

__all__ = ["LeasingTransport", "leased_client"]


class _Returning(httpx.AsyncByteStream):
    """A response body that gives its transport back once, after the connection is released."""

    def __init__(self, inner: httpx.AsyncByteStream, give_back: Callable[[], Awaitable[None]]) -> None:
        self._inner = inner
        self._give_back: Callable[[], Awaitable[None]] | None = give_back

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._inner:
                yield part
        except BaseException:  # a dropped connection: give the slot back even if nobody closes us
            await self.aclose()
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()  # first: the connection is idle (or closed) before reuse
        finally:
            give_back, self._give_back = self._give_back, None
            if give_back is not None:
                await give_back()


class LeasingTransport(httpx.AsyncBaseTransport):
    """Up to ``max_connections`` single-connection transports, each lent to one request at a time.

    ``options`` go to every ``httpx.AsyncHTTPTransport`` (``verify``, ``retries``, ...). Waiting
    for a free slot honours the request's ``pool`` timeout (``httpx.PoolTimeout``), unbounded when
    it is ``None``, as in httpx's pool.
    """

    def __init__(self, max_connections: int = 1024, *, keepalive_expiry: float = 5.0, **options: Any) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: deque[tuple[httpx.AsyncHTTPTransport, float]] = deque()  # oldest-idle first
        self._all: set[httpx.AsyncHTTPTransport] = set()  # idle and lent: at most max_connections
        self._expiry = keepalive_expiry
        self._closed = False
        options.setdefault("verify", httpx.create_ssl_context())  # one context, not one per transport
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=keepalive_expiry)
        self._options = {**options, "limits": one}

    @property
    def connections(self) -> tuple[int, int]:
        """(lent, idle) transports now, each holding at most one connection."""
        return len(self._all) - len(self._idle), len(self._idle)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Lease a transport, send, and return the response whose closing gives the transport back."""
        await self._acquire((request.extensions.get("timeout") or {}).get("pool"))
        transport = self._idle.pop()[0] if self._idle else self._new()
        try:
            await self._close_expired()
            response = await transport.handle_async_request(request)
        except BaseException:  # failed, timed out or cancelled: httpcore closed the connection
            self._return(transport)
            raise
        stream = cast(httpx.AsyncByteStream, response.stream)
        response.stream = _Returning(stream, lambda: self._give_back(transport))
        return response

    async def _acquire(self, timeout: float | None) -> None:
        if timeout is None:  # no wait_for: on 3.11 it can swallow a cancellation that races it
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except asyncio.TimeoutError:
            raise httpx.PoolTimeout(f"no upstream connection free within {timeout} s") from None

    def _new(self) -> httpx.AsyncHTTPTransport:
        transport = httpx.AsyncHTTPTransport(**self._options)
        self._all.add(transport)
        return transport

    def _return(self, transport: httpx.AsyncHTTPTransport) -> None:
        """Slot and transport back, synchronously (safe while a cancellation unwinds)."""
        if transport in self._all and not self._closed:
            self._idle.append((transport, time.monotonic()))
        self._slots.release()

    async def _give_back(self, transport: httpx.AsyncHTTPTransport) -> None:
        self._return(transport)
        await self._close_expired()

    async def _close_expired(self) -> None:
        """Close the transports idle longer than the keep-alive expiry (their sockets with them)."""
        cutoff = time.monotonic() - self._expiry
        expired = []
        while self._idle and self._idle[0][1] < cutoff:
            transport = self._idle.popleft()[0]
            self._all.discard(transport)
            expired.append(transport)
        if expired:
            await asyncio.gather(*(t.aclose() for t in expired), return_exceptions=True)

    async def aclose(self) -> None:
        """Close every connection, lent ones included (their responses then fail)."""
        self._closed = True
        transports, self._all = list(self._all), set()
        self._idle.clear()
        await asyncio.gather(*(t.aclose() for t in transports), return_exceptions=True)


def leased_client(
    base_url: str, timeout: httpx.Timeout, headers: dict[str, str], max_connections: int
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for one upstream whose requests each lease their own connection."""
    return httpx.AsyncClient(
        base_url=base_url, timeout=timeout, headers=headers, transport=LeasingTransport(max_connections)
    )
