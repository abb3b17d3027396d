"""``SQLiteStore``: an on-disk cache that survives a restart and a ``kill -9``.

SQLite in write-ahead-log mode commits a transaction by appending to the WAL; a process killed at
any instant leaves either the whole transaction or none of it, and the next open replays the log.
``synchronous=NORMAL`` (the default here) keeps every committed transaction across a process
crash; only a power cut can lose the last few, which ``synchronous="FULL"`` also prevents at the
price of an fsync per write. Count and bytes are kept by triggers in the same transaction as the
change, so the totals can never drift from the rows, even when several processes share the file.

Each entry row has an ``AUTOINCREMENT`` sequence number that is never reused: an index catches up
with ``seq > cursor``, which also sees entries written by other processes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from tokenlean.cache.entry import CacheEntry, IndexRecord
from tokenlean.cache.stores.base import CacheStoreError, Changes
from tokenlean.errors import ConfigError

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    context TEXT, query TEXT NOT NULL, vector BLOB, answer TEXT NOT NULL,
    created REAL NOT NULL, expires REAL, accessed REAL NOT NULL, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS entries_accessed ON entries(accessed);
CREATE INDEX IF NOT EXISTS entries_expires ON entries(expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS totals(id INTEGER PRIMARY KEY CHECK (id = 0), count INTEGER NOT NULL,
    bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS entries_ins AFTER INSERT ON entries BEGIN
    UPDATE totals SET count = count + 1, bytes = bytes + NEW.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_del AFTER DELETE ON entries BEGIN
    UPDATE totals SET count = count - 1, bytes = bytes - OLD.size WHERE id = 0; END;
"""
_COLUMNS = "key, answer, query, context, vector, created, expires"
_PURGE_EVERY = 256  # puts between sweeps of expired rows


class SQLiteStore:
    """One SQLite file; all calls run in a worker thread so the event loop never waits on disk."""

    name = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        max_entries: int = 1_000_000,
        max_bytes: int = 4 * 2**30,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout_ms: int = 5000,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError("synchronous must be NORMAL or FULL", param="synchronous")
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._puts = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the SQLite cache {self.path}: {exc}", param="path") from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                return fn(self._db)

        try:
            return await asyncio.to_thread(call)
        except sqlite3.Error as exc:
            raise CacheStoreError(f"SQLite cache {self.path}: {exc}") from exc

    async def get(self, key: str) -> CacheEntry | None:
        """The live entry under ``key``, marked as used."""
        entry = (await self.get_many([key]))[0]
        if entry is not None:
            await self.touch(key)
        return entry

    async def get_many(self, keys: Sequence[str]) -> list[CacheEntry | None]:
        """Entries for ``keys`` in order; expired ones read as None."""

        def read(db: sqlite3.Connection) -> list[CacheEntry | None]:
            marks = ",".join("?" * len(keys))
            rows = db.execute(f"SELECT {_COLUMNS} FROM entries WHERE key IN ({marks})", list(keys)).fetchall()
            found = {row[0]: CacheEntry(*row) for row in rows}
            now = time.time()
            return [e if e is not None and not e.expired(now) else None for e in map(found.get, keys)]

        return await self._run(read) if keys else []

    async def touch(self, key: str) -> None:
        """Record the use for least-recently-used eviction."""
        await self._run(
            lambda db: db.execute("UPDATE entries SET accessed=? WHERE key=?", (time.time(), key))
        )

    async def put(self, entry: CacheEntry) -> list[str]:
        """Replace-or-insert ``entry``, then evict and purge, all in one transaction."""
        self._puts += 1
        purge = self._puts % _PURGE_EVERY == 0

        def write(db: sqlite3.Connection) -> list[str]:
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM entries WHERE key=?", (entry.key,))
                db.execute(
                    "INSERT INTO entries(key, context, query, vector, answer, created, expires, accessed, size)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        entry.key,
                        entry.context,
                        entry.query,
                        entry.vector,
                        entry.answer,
                        entry.created,
                        entry.expires,
                        now,
                        entry.size,
                    ),
                )
                gone = self._purge(db, now) if purge else []
                gone += self._evict(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return gone

        return await self._run(write)

    def _purge(self, db: sqlite3.Connection, now: float) -> list[str]:
        rows = db.execute(
            "DELETE FROM entries WHERE expires IS NOT NULL AND expires <= ? RETURNING key", (now,)
        )
        return [row[0] for row in rows.fetchall()]

    def _evict(self, db: sqlite3.Connection) -> list[str]:
        gone: list[str] = []
        while True:
            count, size = db.execute("SELECT count, bytes FROM totals WHERE id=0").fetchone()
            excess = max(count - self.max_entries, 1 if size > self.max_bytes else 0)
            if excess <= 0 or count <= 1:
                return gone
            rows = db.execute(
                "DELETE FROM entries WHERE seq IN (SELECT seq FROM entries ORDER BY accessed LIMIT ?) RETURNING key",
                (min(excess, count - 1),),
            ).fetchall()
            gone += [row[0] for row in rows]

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        await self._run(lambda db: db.execute("DELETE FROM entries WHERE key=?", (key,)))

    async def changes(self, cursor: Any) -> Changes:
        """Records with a sequence number above ``cursor`` (None: all, as a reset)."""

        def read(db: sqlite3.Connection) -> Changes:
            since = -1 if cursor is None else int(cursor)
            db.execute("BEGIN")  # one snapshot for both reads: no row can slip between them
            try:
                rows = db.execute(
                    "SELECT seq, key, context, vector, query FROM entries WHERE seq > ? AND context IS NOT NULL"
                    " AND vector IS NOT NULL ORDER BY seq",
                    (since,),
                ).fetchall()
                top = db.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()[0]
            finally:
                db.execute("COMMIT")
            new_cursor = max(since, int(top))
            return new_cursor, [IndexRecord(k, c, v, q) for _, k, c, v, q in rows], cursor is None

        return await self._run(read)

    async def count(self) -> int:
        """Entries held, from the trigger-maintained totals."""
        return int((await self._run(lambda db: db.execute("SELECT count FROM totals").fetchone()))[0])

    async def total_bytes(self) -> int:
        """Bytes held, from the trigger-maintained totals."""
        return int((await self._run(lambda db: db.execute("SELECT bytes FROM totals").fetchone()))[0])

    async def aclose(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite on the last close)."""
        with self._lock:
            self._db.close()
