"""SQLiteStore: survives a restart and a kill -9 mid-write, evicts, expires."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tokenlean.backends.fake import FakeBackend
from tokenlean.cache import CacheStage
from tokenlean.cache.entry import CacheEntry
from tokenlean.cache.stores.sqlite import SQLiteStore
from tokenlean.middleware import Message, Pipeline, Request, Response

# A child that commits entries with ~256 KB answers as fast as it can and prints each key once its
# transaction has committed; the parent kills it with SIGKILL while it is writing.
WRITER = """
import asyncio, sys
from tokenlean.cache.entry import CacheEntry
from tokenlean.cache.stores.sqlite import SQLiteStore

async def main():
    store = SQLiteStore(sys.argv[1])
    i = 0
    while True:
        key = f"key-{i:06d}"
        await store.put(CacheEntry(key=key, answer="x" * 262144 + key, query=key, created=float(i)))
        print(key, flush=True)
        i += 1

asyncio.run(main())
"""


def ask(user: str) -> Request:
    return Request(
        messages=(Message("system", "Be brief."), Message("user", user)), model="fake", temperature=0
    )


def cache_action(response: Response) -> str:
    return next(e.action for e in response.events if e.stage == "cache" and e.action != "timing")


async def test_entries_survive_a_restart(tmp_path: Path, embedder: Any) -> None:
    path = tmp_path / "cache.db"
    backend = FakeBackend(lambda r: f"answer to: {r.last_user_text}")
    stage = CacheStage(store="sqlite", path=path, embedder=embedder)
    await Pipeline(backend, [stage])(ask("How do I learn Python?"))
    await stage.aclose()

    reopened = CacheStage(store="sqlite", path=path, embedder=embedder)  # a new process would do the same
    pipeline = Pipeline(backend, [reopened])
    exact = await pipeline(ask("How do I learn Python?"))
    semantic = await pipeline(ask("How can I learn Python?"))  # index rebuilt from the file
    assert cache_action(exact) == "hit" and cache_action(semantic) == "hit"
    assert semantic.text == "answer to: How do I learn Python?" and len(backend.requests) == 1
    await reopened.aclose()


def write_until_killed(path: Path, commits: int) -> list[str]:
    """Run the writer child, read ``commits`` committed keys, then SIGKILL it mid-write."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    committed: list[str] = []
    deadline = time.monotonic() + 60
    while len(committed) < commits and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        committed.append(line.strip())
    os.kill(child.pid, signal.SIGKILL)  # while it is in the middle of its next write
    child.wait(timeout=10)
    child.stdout.close()
    return committed


async def test_kill_minus_9_mid_write_loses_no_committed_entry(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    committed = await asyncio.to_thread(write_until_killed, path, 60)
    assert len(committed) >= 60, "the writer did not get far enough"

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT key, size FROM entries").fetchall()
        count, size = db.execute("SELECT count, bytes FROM totals").fetchone()
    keys = {key for key, _ in rows}
    assert count == len(rows) and size == sum(s for _, s in rows)  # totals match the rows
    assert set(committed) <= keys  # every write the child saw committed is there
    assert keys == {f"key-{i:06d}" for i in range(len(keys))}  # and nothing half-written or skipped
    store = SQLiteStore(path)
    entry = await store.get(committed[-2])
    assert entry is not None and entry.answer.endswith(committed[-2])
    await store.aclose()


async def test_eviction_and_expiry(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "cache.db", max_entries=5, max_bytes=10_000)
    for i in range(8):
        await store.put(CacheEntry(key=f"k{i}", answer="a" * 100, created=time.time()))
        await asyncio.sleep(0.002)  # distinct access times
    assert await store.count() == 5 and await store.get("k0") is None and await store.get("k7") is not None
    await store.put(CacheEntry(key="big", answer="b" * 9_000, created=time.time()))
    assert await store.total_bytes() <= 10_000 and await store.get("big") is not None
    await store.put(CacheEntry(key="brief", answer="c", created=time.time(), expires=time.time() + 0.05))
    assert await store.get("brief") is not None
    await asyncio.sleep(0.1)
    assert await store.get("brief") is None
    await store.aclose()


async def test_changes_follow_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    reader, writer = SQLiteStore(path), SQLiteStore(path)
    vector = bytes(16)
    cursor, records, reset = await reader.changes(None)
    assert reset and records == []
    await writer.put(CacheEntry(key="a", answer="x", query="qa", context="ctx", vector=vector, created=1.0))
    await writer.put(CacheEntry(key="exact-only", answer="y", created=1.0))
    cursor, records, reset = await reader.changes(cursor)
    assert not reset and [(r.key, r.query) for r in records] == [("a", "qa")]
    assert (await reader.changes(cursor))[1] == []
    await reader.aclose()
    await writer.aclose()
