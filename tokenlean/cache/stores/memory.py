"""``MemoryStore``: the default store, a least-recently-used dict bounded by count and bytes.

It lives and dies with the process; use ``SQLiteStore`` to survive a restart and ``RedisStore``
to share one cache between replicas.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

from tokenlean.cache.entry import CacheEntry, IndexRecord
from tokenlean.cache.stores.base import Changes
from tokenlean.errors import ConfigError

__all__ = ["MemoryStore"]


class MemoryStore:
    """Entries in insertion/use order; the least recently used go first when a bound is hit."""

    name = "memory"

    def __init__(
        self, *, max_entries: int = 100_000, max_bytes: int = 512 * 2**20, log_size: int = 10_000
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ConfigError("max_entries and max_bytes must be positive", param="max_entries")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._bytes = 0
        self._seq = 0
        # recent additions, so an index can catch up without a full snapshot
        self._log: deque[tuple[int, IndexRecord]] = deque(maxlen=log_size)

    @property
    def bytes(self) -> int:
        """Bytes held, as ``CacheEntry.size`` counts them."""
        return self._bytes

    async def get(self, key: str) -> CacheEntry | None:
        """The live entry under ``key``; an expired one is dropped on the way."""
        entry = self._live(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    async def get_many(self, keys: Sequence[str]) -> list[CacheEntry | None]:
        """Entries for ``keys``; reading them does not count as use."""
        return [self._live(key) for key in keys]

    async def touch(self, key: str) -> None:
        """Move ``key`` to the most recently used end."""
        if key in self._entries:
            self._entries.move_to_end(key)

    async def put(self, entry: CacheEntry) -> list[str]:
        """Store ``entry`` and evict least recently used entries beyond the bounds."""
        self._remove(entry.key)
        self._entries[entry.key] = entry
        self._bytes += entry.size
        record = entry.record()
        if record is not None:
            self._seq += 1
            self._log.append((self._seq, record))
        evicted = []
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            oldest = next(iter(self._entries))
            self._remove(oldest)
            evicted.append(oldest)
        return evicted

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._remove(key)

    async def changes(self, cursor: Any) -> Changes:
        """Records added since ``cursor``; a snapshot when the log no longer reaches back that far."""
        first = self._log[0][0] if self._log else self._seq + 1
        if cursor is None or int(cursor) < first - 1:
            records = [r for e in self._entries.values() if (r := e.record()) is not None]
            return self._seq, records, True
        fresh = []
        for seq, record in reversed(self._log):  # newest first: stop at the cursor, O(new records)
            if seq <= int(cursor):
                break
            fresh.append(record)
        return self._seq, fresh[::-1], False

    async def count(self) -> int:
        """Entries held."""
        return len(self._entries)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _live(self, key: str) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expired(time.time()):
            self._remove(key)
            return None
        return entry

    def _remove(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
