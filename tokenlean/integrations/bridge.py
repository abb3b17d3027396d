"""``iterate_sync``: an async iterator consumed from sync code, one ``run_sync`` per item.

This is the streaming half of the one sync bridge (``tokenlean.middleware.sync.run_sync``): the
async generator lives on the bridge loop, and each ``next()`` from the sync side runs one step of
it there, so a sync ``stream()`` yields tokens as they arrive instead of after the whole answer,
and no second (sync) copy of the streaming logic exists. It belongs next to ``run_sync`` in
``tokenlean/middleware/sync.py``; it lives here until the framework takes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from tokenlean.middleware.sync import run_sync

__all__ = ["iterate_sync"]

T = TypeVar("T")
_DONE: Any = object()


async def _step(iterator: AsyncIterator[T]) -> T:
    """One item, or ``_DONE``; ``StopAsyncIteration`` is not let out of a coroutine."""
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _DONE  # type: ignore[no-any-return]


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
