"""The single sync bridge: run a coroutine from synchronous code.

The core is async only (no sync/async twins). Sync callers — LangChain's ``invoke``, a decorated
sync function — go through ``run_sync``, which uses one long-lived event loop on a daemon thread.
One loop (rather than ``asyncio.run`` per call) matters because backends keep pooled connections
and batching queues bound to the loop they were created on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["bridge_loop", "run_sync"]

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


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
