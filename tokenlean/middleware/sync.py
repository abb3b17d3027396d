"""The single sync bridge: run a coroutine from synchronous code.

The core is async only (no sync/async twins). Sync callers — LangChain's ``invoke``, a decorated
sync function — go through ``run_sync``, which uses one long-lived event loop on a daemon thread.
One loop (rather than ``asyncio.run`` per call) matters because backends keep pooled connections
and batching queues bound to the loop they were created on. ``iterate_sync`` is the streaming
half: the async generator lives on the bridge loop and each ``next()`` runs one step of it there,
so a sync ``stream()`` yields tokens as they arrive and no second (sync) copy of the streaming
logic exists.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["bridge_loop", "iterate_sync", "run_sync"]

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_DONE: Any = object()


def bridge_loop() -> asyncio.AbstractEventLoop:
    """The bridge's event loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="tokenlean-sync-bridge", daemon=True).start()
        return _loop


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the bridge loop and wait for its result (exceptions re-raised)."""
    return asyncio.run_coroutine_threadsafe(coroutine, bridge_loop()).result()


async def _step(iterator: AsyncIterator[T]) -> T:
    """One item, or ``_DONE``; ``StopAsyncIteration`` is not let out of a coroutine."""
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _DONE  # type: ignore[no-any-return]  # the sentinel stands in for "no item"


async def _close(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


def iterate_sync(iterator: AsyncIterator[T]) -> Iterator[T]:
    """Yield ``iterator``'s items to sync code; an early stop closes it on the bridge loop."""
    try:
        while (item := run_sync(_step(iterator))) is not _DONE:
            yield item
    finally:
        run_sync(_close(iterator))
