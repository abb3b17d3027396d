"""The comparison variant of ``bench/load.py``: tokenlean with httpx's own connection pool upstream.

Historical: tokenlean now sends upstream requests with aiohttp (``backends/upstream_http.py``), so
this variant exits with a message; it measured httpx's pool against the former ``LeasingTransport``
(one connection per in-flight request, removed with the move to aiohttp). Until this benchmark
found otherwise, ``OpenAIBackend`` used httpx's stock pool, ``httpx.Limits(max_connections=N,
max_keepalive_connections=N)`` on one ``httpx.AsyncClient`` per upstream. Under many concurrent
streams that httpcore 1.0 pool thrashes:

- when requests queue in the same pass, it hands the same idle keep-alive connection to all of
  them (the connection turns busy only when the first request's task runs); the others fail
  with ``ConnectionNotAvailable`` and go round again (encode/httpcore#822);
- each pass over the pool is quadratic in its connections (an idle check builds a list of every
  connection once per connection), and passes run on every request start, end and retry.

``python -m bench.load_httpx_pool serve ...`` (the ``tokenlean serve`` arguments) runs the proxy
with its upstream clients rebuilt on that stock pool, so ``bench/load.py`` can measure the fix
side by side (``--transports stock,httpx-pool``). With ``--count-pool`` first it also counts
what the pool does (``--transports counted``; bench/results/load.diagnosis.json: at 200 clients
89% of connection attempts were refused and the assignment passes took two thirds of the
proxy's CPU).
"""

from __future__ import annotations

import sys
from typing import Any

import httpx

__all__ = ["count_pool", "main"]


def _rebuild_clients(backend: Any, max_connections: int) -> None:
    """Give an ``OpenAIBackend``'s upstream clients httpx's own pool (same URL, timeout, headers)."""
    if not hasattr(backend, "_clients"):
        raise SystemExit(
            "OpenAIBackend no longer sends upstream requests through httpx (aiohttp since the fast-path "
            "work of issue 18): this variant measured httpx's pool against LeasingTransport and has "
            "nothing to rebuild now; bench/results/load*.json keep its figures"
        )
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    backend._clients = {
        url: httpx.AsyncClient(base_url=url, timeout=client.timeout, headers=client.headers, limits=limits)
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
    """``tokenlean`` (e.g. ``serve --upstream URL``) with OpenAIBackend on httpx's own pool;
    with ``--count-pool`` first, that pool's counters too."""
    from tokenlean.backends.openai_http import OpenAIBackend
    from tokenlean.cli import main as tokenlean_main

    args = sys.argv[1:]
    if args[:1] == ["--count-pool"]:
        count_pool()
        args = args[1:]
    original = OpenAIBackend.__init__

    def patched(self: OpenAIBackend, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _rebuild_clients(self, kwargs.get("max_connections", 1024))

    OpenAIBackend.__init__ = patched  # type: ignore[method-assign]
    return tokenlean_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
