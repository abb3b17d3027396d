"""The upstream HTTP client: one aiohttp session per upstream URL and event loop.

aiohttp rather than httpx: profiled on the proxy's pass-through path
(bench/proxy_overhead_profile.py, py-spy), httpx/httpcore/h11/anyio were about half of the
proxy's CPU per 32-token stream; alone, streaming the same answers cost ~2.2 ms of client CPU per
request with httpx against ~0.7 ms with aiohttp at 64 streams (its HTTP parser is C), and request
set-up (``build_request``, the pool) a large share of the rest. A session is made on first use on
the running loop (a constructor needs no loop), one per loop. Its pool holds at
most ``max_connections`` connections per upstream; a response read to its end gives its connection
back, one released early closes it (so vLLM stops generating).

Sessions are closed by ``aclose``; those of an owner dropped without it (a LangChain chat model
has no close hook) are closed on their own loops when the owner is garbage-collected, instead of
leaking their connections with an "Unclosed client session" warning.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import weakref
from typing import Any

import aiohttp

__all__ = ["UpstreamSessions", "listed_models", "model_ids"]

_JSON_HEADERS = {"Content-Type": "application/json"}


class UpstreamSessions:
    """The sessions of one backend: ``timeout`` and ``headers`` (the API key) apply to every request."""

    def __init__(self, timeout: aiohttp.ClientTimeout, headers: dict[str, str], max_connections: int) -> None:
        self.timeout = timeout
        self.headers = headers
        self.max_connections = max_connections
        self._held: dict[tuple[str, asyncio.AbstractEventLoop], aiohttp.ClientSession] = {}
        weakref.finalize(self, _close_all_soon, self._held)

    def session(self, url: str) -> aiohttp.ClientSession:
        """The session for ``url`` on the running loop (one per loop: a sync bridge loop and a
        server loop may use one backend at once, and neither may close the other's requests)."""
        loop = asyncio.get_running_loop()
        session = self._held.get((url, loop))
        if session is not None and not session.closed:
            return session
        for key in [key for key in self._held if key[1].is_closed()]:
            del self._held[key]  # its loop is gone, and with it the connections
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, keepalive_timeout=5.0)
        session = aiohttp.ClientSession(
            base_url=url, connector=connector, timeout=self.timeout, headers=self.headers
        )
        self._held[(url, loop)] = session
        return session

    def post_json(self, url: str, path: str, body: dict[str, Any]) -> Any:
        """POST ``body`` to ``path`` under ``url``: awaits to the response, its headers read.

        Encoded as httpx's ``json=`` did before (UTF-8, compact, NaN refused).
        """
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        return self.session(url).post(path, data=data, headers=_JSON_HEADERS)

    async def aclose(self) -> None:
        """Close every session: those of the running loop now, those of other live loops on them."""
        held = list(self._held.items())
        self._held.clear()  # the same dict: the finalizer holds it
        running = asyncio.get_running_loop()
        for (_, loop), session in held:
            if loop is not running:
                _close_soon(loop, session)
        await asyncio.gather(*(session.close() for (_, loop), session in held if loop is running))


_closing: set[asyncio.Future[None]] = set()  # close tasks in flight, referenced until done


def _close_soon(loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
    """Close ``session`` on ``loop``, from any thread; nothing to do once that loop is closed."""
    if session.closed or loop.is_closed():
        return

    def start() -> None:
        task = asyncio.ensure_future(session.close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    try:
        loop.call_soon_threadsafe(start)
    except RuntimeError:  # the loop closed in between
        pass


def _close_all_soon(held: dict[tuple[str, asyncio.AbstractEventLoop], aiohttp.ClientSession]) -> None:
    """The finalizer of ``UpstreamSessions``: its open sessions closed on their own loops."""
    for (_, loop), session in list(held.items()):
        _close_soon(loop, session)


def model_ids(listing: Any) -> list[str]:
    """The ids in a ``/v1/models`` answer (raises on a malformed body)."""
    return [str(m["id"]) for m in listing.get("data", ())]


def listed_models(base_url: str, headers: dict[str, str], timeout: float) -> list[str]:
    """``GET /v1/models``, blocking (``OpenAIBackend.models()`` is synchronous): the standard
    library's client, once at start-up, so no second HTTP client library is needed for it."""
    ask = urllib.request.Request(base_url + "models", headers=headers)
    with urllib.request.urlopen(ask, timeout=max(timeout, 5.0)) as answer:  # normalize_url: http(s) only
        return model_ids(json.loads(answer.read()))
