"""A proposed fix, measured by ``bench/load.py``: one upstream connection per in-flight request.

The problem (found with this benchmark): ``OpenAIBackend`` sends every upstream request through
one ``httpx.AsyncClient`` per upstream, i.e. one httpcore 1.0 connection pool. Under many
concurrent streams that pool does two expensive things:

- when requests queue in the same pass, it hands the same idle keep-alive connection to all of
  them (the connection turns busy only when the first request's task runs); the others fail
  with ``ConnectionNotAvailable`` and go round again (encode/httpcore#822);
- each pass over the pool is quadratic in its connections (an idle check builds a list of every
  connection once per connection), and passes run on every request start, end and retry.

Measured with ``--transports counted`` (bench/results/load.diagnosis.json, 200 clients, 30 s):
9,552 of 10,747 connection attempts (89%) were refused that way for 1,187 completed requests, and
the assignment passes took 14.3 s of CPU, about two thirds of the proxy's CPU time in the run.

``LeasingTransport`` (public httpx API only) keeps up to ``max_connections`` one-connection
``httpx.AsyncHTTPTransport``s and lends each request one of them until its response is closed,
so no pool ever holds more than one connection and no connection is offered twice. With
``python -m bench.load_leasing serve ...`` (the ``tokenlean serve`` arguments) the proxy runs
with its upstream clients rebuilt on this transport; ``bench/load.py --transports stock,leasing``
compares the two side by side, and ``--transports counted`` runs the stock proxy with
``count_pool``'s counters (``python -m bench.load_leasing --count-pool serve ...``). If adopted,
the transport belongs in ``tokenlean/backends/`` and ``OpenAIBackend`` would pass
``transport=LeasingTransport(max_connections)`` to its clients.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

__all__ = ["LeasingTransport", "main"]


class _Returning(httpx.AsyncByteStream):
    """A response body that gives its transport back when closed (or read to the end and closed)."""

    def __init__(self, inner: httpx.AsyncByteStream, give_back: Callable[[], None]) -> None:
        self._inner = inner
        self._give_back: Callable[[], None] | None = give_back

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            yield part

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            give_back, self._give_back = self._give_back, None
            if give_back is not None:
                give_back()


class LeasingTransport(httpx.AsyncBaseTransport):
    """Up to ``max_connections`` single-connection transports, each lent to one request at a time.

    Idle ones are reused last-in first-out (the warmest connection first); each keeps httpx's
    keep-alive expiry. HTTP/1.1 only, which is what ``OpenAIBackend`` speaks.
    """

    def __init__(self, max_connections: int = 1024, **options: Any) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[httpx.AsyncHTTPTransport] = []
        self._all: list[httpx.AsyncHTTPTransport] = []
        options.setdefault("verify", ssl.create_default_context())  # one context, not one per transport
        self._options = {**options, "limits": httpx.Limits(max_connections=1, max_keepalive_connections=1)}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Lease a transport, send, and return the response whose closing gives the transport back."""
        await self._slots.acquire()
        if self._idle:
            transport = self._idle.pop()
        else:
            transport = httpx.AsyncHTTPTransport(**self._options)
            self._all.append(transport)
        try:
            response = await transport.handle_async_request(request)
        except BaseException:
            self._give_back(transport)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Returning(response.stream, lambda: self._give_back(transport))
        return response

    def _give_back(self, transport: httpx.AsyncHTTPTransport) -> None:
        self._idle.append(transport)
        self._slots.release()

    async def aclose(self) -> None:
        """Close every connection."""
        await asyncio.gather(*(t.aclose() for t in self._all))


def _rebuild_clients(backend: Any, max_connections: int) -> None:
    """Give an ``OpenAIBackend``'s upstream clients a ``LeasingTransport`` (same URL, timeout, headers)."""
    backend._clients = {
        url: httpx.AsyncClient(
            base_url=url,
            timeout=client.timeout,
            headers=client.headers,
            transport=LeasingTransport(max_connections),
        )
        for url, client in backend._clients.items()
    }


def count_pool() -> None:
    """Count what the stock pool does (``--count-pool``); one ``POOL {...}`` line at exit.

    ``attempts``: requests handed to an HTTP/1.1 connection; ``not_available``: those refused
    with ``ConnectionNotAvailable`` (the connection had been given to another request too);
    ``assign_cpu_s``: CPU time in the pool's assignment passes. The timing costs a little CPU,
    so these runs are for the diagnosis, not for the figures.
    """
    import atexit
    import json
    import time

    import httpcore
    from httpcore._async import connection_pool, http11

    counts = {"attempts": 0, "not_available": 0, "assign_passes": 0, "assign_cpu_s": 0.0}
    assign = connection_pool.AsyncConnectionPool._assign_requests_to_connections
    handle = http11.AsyncHTTP11Connection.handle_async_request

    def timed(self: Any) -> Any:
        started = time.process_time()
        try:
            return assign(self)
        finally:
            counts["assign_passes"] += 1
            counts["assign_cpu_s"] += time.process_time() - started

    async def counted(self: Any, request: Any) -> Any:
        counts["attempts"] += 1
        try:
            return await handle(self, request)
        except httpcore.ConnectionNotAvailable:
            counts["not_available"] += 1
            raise

    connection_pool.AsyncConnectionPool._assign_requests_to_connections = timed  # type: ignore[method-assign]
    http11.AsyncHTTP11Connection.handle_async_request = counted  # type: ignore[method-assign]
    atexit.register(lambda: print("POOL " + json.dumps(counts), file=sys.stderr, flush=True))


def main() -> int:
    """``tokenlean`` (e.g. ``serve --upstream URL``) with OpenAIBackend on the leasing transport;
    with ``--count-pool`` first, the stock transport with ``count_pool``'s counters instead."""
    from tokenlean.backends.openai import OpenAIBackend
    from tokenlean.cli import main as tokenlean_main

    args = sys.argv[1:]
    if args[:1] == ["--count-pool"]:
        count_pool()
        return tokenlean_main(args[1:])
    original = OpenAIBackend.__init__

    def patched(self: OpenAIBackend, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _rebuild_clients(self, kwargs.get("max_connections", 1024))

    OpenAIBackend.__init__ = patched  # type: ignore[method-assign]
    return tokenlean_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
