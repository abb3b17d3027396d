"""Where ledger rows live: SQLite by default, Redis when several proxy processes share one ledger.

Both are bounded (``max_rows``; the oldest rows go first) and hold the rows as the ``LedgerRecord``
fields, never text. Rows are small (about 300 bytes), so the default bound of 1,000,000 rows is
about 300 MB. Writes are synchronous and short (one SQLite insert in WAL mode, or one Redis
pipeline on a connection with a one-second timeout); a failing store is the ledger's problem,
never the request's (``Ledger.add`` logs and counts the failure).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from tokenlean.ledger.record import LedgerRecord

__all__ = ["LedgerStore", "RedisLedgerStore", "SQLiteLedgerStore"]

_COLUMNS = (
    "ts",
    "request_id",
    "tenant",
    "model",
    "endpoint",
    "stages",
    "prompt_tokens",
    "completion_tokens",
    "baseline_prompt_tokens",
    "baseline_completion_tokens",
    "estimated",
    "latency_ms",
    "cost",
    "baseline_cost",
    "cache_hit",
    "saved",
    "compute",
)


class LedgerStore(Protocol):
    """Append rows, read them back since a time."""

    name: str

    def append(self, record: LedgerRecord) -> None: ...

    def since(self, ts: float) -> list[LedgerRecord]: ...

    def close(self) -> None: ...


def _row(record: LedgerRecord) -> tuple[Any, ...]:
    data = record.as_dict()
    data["stages"] = ",".join(record.stages)
    data["saved"] = json.dumps(data["saved"], separators=(",", ":"))
    data["compute"] = json.dumps(data["compute"], separators=(",", ":"))
    return tuple(data[c] for c in _COLUMNS)


def _record(row: tuple[Any, ...]) -> LedgerRecord:
    data = dict(zip(_COLUMNS, row, strict=True))
    data["stages"] = tuple(s for s in str(data["stages"]).split(",") if s)
    data["saved"] = json.loads(data["saved"] or "{}")
    data["compute"] = json.loads(data["compute"] or "{}")
    data["estimated"], data["cache_hit"] = bool(data["estimated"]), bool(data["cache_hit"])
    return LedgerRecord.from_dict(data)


class SQLiteLedgerStore:
    """One table in a SQLite file (``:memory:`` for tests); pruned to ``max_rows`` every 1,000 inserts."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, max_rows: int = 1_000_000) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_rows = str(path), max_rows
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        kinds = {"ts": "REAL", "latency_ms": "REAL", "cost": "REAL", "baseline_cost": "REAL"}
        columns = ", ".join(
            f"{c} {kinds.get(c, 'INTEGER' if c.endswith(('tokens', 'estimated', 'hit')) else 'TEXT')}"
            for c in _COLUMNS
        )
        self._db.execute(f"CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY, {columns})")
        self._db.execute("CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts)")
        self._inserts = 0

    def append(self, record: LedgerRecord) -> None:
        """Insert one row; every 1,000 inserts drop rows beyond ``max_rows``."""
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._lock:
            self._db.execute(f"INSERT INTO ledger ({', '.join(_COLUMNS)}) VALUES ({marks})", _row(record))
            self._inserts += 1
            if self._inserts % 1000 == 0 or self.max_rows < 1000:
                self._db.execute(
                    "DELETE FROM ledger WHERE id <= (SELECT MAX(id) FROM ledger) - ?", (self.max_rows,)
                )

    def since(self, ts: float) -> list[LedgerRecord]:
        """Rows at or after ``ts``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM ledger WHERE ts >= ? ORDER BY id", (ts,)
            ).fetchall()
        return [_record(tuple(r)) for r in rows]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()


class RedisLedgerStore:
    """A Redis list of JSON rows (newest first), trimmed to ``max_rows`` on every append."""

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key: str = "tokenlean:ledger",
        max_rows: int = 1_000_000,
        timeout_s: float = 1.0,
    ) -> None:
        import redis

        self.key, self.max_rows = key, max_rows
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def append(self, record: LedgerRecord) -> None:
        """LPUSH the row and LTRIM the list in one round trip."""
        pipe = self._client.pipeline()
        pipe.lpush(self.key, json.dumps(record.as_dict(), separators=(",", ":")))
        pipe.ltrim(self.key, 0, self.max_rows - 1)
        pipe.execute()

    def since(self, ts: float) -> list[LedgerRecord]:
        """Rows at or after ``ts``, oldest first (the list is read newest first until older rows)."""
        out: list[LedgerRecord] = []
        start, page = 0, 1000
        while True:
            raw = self._client.lrange(self.key, start, start + page - 1)
            if not raw:
                break
            for item in raw:
                record = LedgerRecord.from_dict(json.loads(item))
                if record.ts < ts:
                    return out[::-1]
                out.append(record)
            start += page
        return out[::-1]

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
