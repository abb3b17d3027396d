"""``EventStreamResponse``: an SSE body sent straight to the ASGI server, stopped when the client leaves.

Starlette's ``StreamingResponse`` watches for the client going away with an anyio task group
per response (a task, cancel scopes, a second coroutine): on the proxy's pass-through path that
was a measurable share of the CPU per request (bench/proxy_overhead_profile.py). Here one plain
asyncio task waits for ``http.disconnect`` and cancels the streaming task when it comes, which is
what the task group did: the body generator is closed at once (its ``finally`` closes the
upstream response, so vLLM stops generating) and the response ends quietly. Servers on ASGI
spec 2.4 also report a vanished client by failing ``send`` with ``OSError``; that ends it too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["EventStreamResponse"]


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` ``StreamingResponse`` without the per-response task group."""

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        if scope["type"] != "http" or streaming is None:  # pragma: no cover - not an HTTP request
            await super().__call__(scope, receive, send)
            return
        watcher = asyncio.get_running_loop().create_task(_client_gone(receive))
        gone = False

        def stop(watched: asyncio.Task[None]) -> None:
            nonlocal gone
            if not watched.cancelled() and watched.exception() is None:
                gone = True
                streaming.cancel()

        watcher.add_done_callback(stop)
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not gone:
                raise
            _uncancel(streaming)  # the client left: this cancellation was ours, not the server's
        except OSError as exc:
            raise ClientDisconnect() from exc
        finally:
            watcher.remove_done_callback(stop)
            watcher.cancel()
        if self.background is not None and not gone:
            await self.background()


async def _client_gone(receive: Receive) -> None:
    """Return once the client has disconnected (the request body was read before the answer)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _uncancel(task: Any) -> None:
    uncancel = getattr(task, "uncancel", None)  # Python 3.11+; 3.10 keeps no cancel count
    if uncancel is not None:
        uncancel()
