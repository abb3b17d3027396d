"""The ``CacheStore`` protocol: where cached answers live, and how an index learns about them.

A store is the source of truth. Each process keeps its own vector index (faiss) and keeps it in
step with the store through ``changes(cursor)``: the records added since ``cursor``, or a full
snapshot (``reset=True``) when the store can no longer say what changed. Entries that disappear
(expired, evicted, deleted by another process) are noticed lazily: a semantic candidate whose
entry is gone is dropped from the index when it is found missing.

Every store translates its own failures (a Redis connection refused, a locked SQLite file) into
``CacheStoreError`` at its boundary, so the cache stage can answer the request uncached instead
of failing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from tokenlean.cache.entry import CacheEntry, IndexRecord
from tokenlean.errors import TokenleanError

__all__ = ["CacheStore", "CacheStoreError", "Changes"]

Changes = tuple[Any, list[IndexRecord], bool]
"""``(new_cursor, records, reset)``: with ``reset`` the records are everything the store holds."""


class CacheStoreError(TokenleanError):
    """The store cannot be reached or used right now; the request is answered uncached."""

    status = 503
    code = "cache_store_unavailable"


@runtime_checkable
class CacheStore(Protocol):
    """A key-value home for ``CacheEntry`` objects with eviction by count and bytes."""

    name: str

    async def get(self, key: str) -> CacheEntry | None:
        """The live entry under ``key`` (None if absent or expired)."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[CacheEntry | None]:
        """Entries for ``keys`` in order; None where absent or expired."""
        ...

    async def touch(self, key: str) -> None:
        """Mark ``key`` as just used, for least-recently-used eviction."""
        ...

    async def put(self, entry: CacheEntry) -> list[str]:
        """Store ``entry`` (replacing any under its key); return the keys evicted to make room."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    async def changes(self, cursor: Any) -> Changes:
        """Index records added since ``cursor`` (None: from the start, as a reset)."""
        ...

    async def count(self) -> int:
        """How many entries the store holds (expired ones not yet purged may be included)."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...
