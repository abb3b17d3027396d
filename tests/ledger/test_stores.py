"""The ledger's stores: SQLite (default) and Redis (shared by processes), both bounded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cache.conftest import RedisServer
from tokenlean.ledger import Ledger, LedgerRecord, RedisLedgerStore, SQLiteLedgerStore, open_ledger


def _row(i: int, ts: float | None = None) -> LedgerRecord:
    return LedgerRecord(
        ts=ts if ts is not None else time.time(), request_id=f"r{i}", tenant="t", model="m", endpoint="chat",
        stages=("cache",) if i % 2 else (), prompt_tokens=i, completion_tokens=1, baseline_prompt_tokens=2 * i,
        baseline_completion_tokens=1, estimated=bool(i % 2), latency_ms=float(i), cost=0.5, baseline_cost=1.0,
        cache_hit=bool(i % 2), saved={"cache": i} if i % 2 else {}, compute={"draft_accepted": 3},
    )  # fmt: skip


def test_sqlite_round_trip_and_reopen_keeps_totals(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = open_ledger(str(path))
    for i in range(5):
        ledger.add(_row(i))
    assert [r.request_id for r in ledger.records()] == [f"r{i}" for i in range(5)]
    assert ledger.records()[1] == _row(1, ts=ledger.records()[1].ts)
    ledger.close()
    again = open_ledger(str(path))
    assert again.totals["requests"] == 5 and again.totals["prompt_tokens"] == 10
    assert again.totals["cache_hits"] == 2
    again.close()


def test_sqlite_is_bounded(tmp_path: Path) -> None:
    store = SQLiteLedgerStore(tmp_path / "small.sqlite", max_rows=10)
    for i in range(25):
        store.append(_row(i))
    rows = store.since(0.0)
    assert len(rows) == 10 and rows[0].request_id == "r15"
    store.close()


def test_since_filters_by_time(tmp_path: Path) -> None:
    store = SQLiteLedgerStore(":memory:")
    store.append(_row(1, ts=100.0))
    store.append(_row(2, ts=200.0))
    assert [r.request_id for r in store.since(150.0)] == ["r2"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


def test_redis_is_shared_between_ledgers_and_bounded(redis_server: RedisServer) -> None:
    first = Ledger(RedisLedgerStore(redis_server.url, max_rows=6))
    second = Ledger(RedisLedgerStore(redis_server.url, max_rows=6))
    for i in range(4):
        first.add(_row(i))
        second.add(_row(10 + i))
    rows = second.records()
    # trimmed to the newest six of the eight, read back oldest first
    assert [r.request_id for r in rows] == ["r1", "r11", "r2", "r12", "r3", "r13"]
    third = Ledger(RedisLedgerStore(redis_server.url, max_rows=6))
    assert third.totals["requests"] == 6  # a new process sees what the others wrote
    first.close(), second.close(), third.close()


def test_open_ledger_picks_redis_for_a_redis_url(redis_server: RedisServer) -> None:
    ledger = open_ledger(redis_server.url)
    assert ledger.store.name == "redis"
    ledger.close()


def test_serve_puts_the_ledger_in_the_caches_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    import argparse

    from tokenlean.backends.fake import FakeBackend
    from tokenlean.cache.stage import CacheStage
    from tokenlean.middleware.pipeline import Pipeline
    from tokenlean.proxy.assembly import build_ledger

    pipeline = Pipeline(FakeBackend(), [CacheStage(store="redis", url=redis_server.url, semantic=False)])
    shared = build_ledger(argparse.Namespace(ledger=None, prices=None), pipeline)
    assert shared.store.name == "redis"
    shared.close()
    own = build_ledger(argparse.Namespace(ledger=str(tmp_path / "l.sqlite"), prices=None), pipeline)
    assert own.store.name == "sqlite"  # --ledger wins
    own.close()
    assert build_ledger(argparse.Namespace(ledger="off", prices=None), pipeline) is None
