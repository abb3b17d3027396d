"""RedisStore on a real redis-server: shared between processes, evicting, and never failing a request."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from typing import Any

from tokenlean.backends.fake import FakeBackend
from tokenlean.cache import CacheStage
from tokenlean.cache.entry import CacheEntry
from tokenlean.cache.keys import request_keys
from tokenlean.cache.semantic import ResponseCache
from tokenlean.cache.stores.redis import RedisStore
from tokenlean.middleware import Message, Pipeline, Request, Response

# Generous timeouts (timeout_s=5) where Redis is up: this machine is shared and loaded, and the
# default 1 s connect timeout is for production. The stopped-server test uses the defaults.

# The second replica: its own process, its own faiss index, the same Redis. It looks up a paraphrase
# of what the parent stored, then stores an answer of its own; it prints what it found as JSON.
REPLICA = """
import asyncio, json, sys
from tokenlean.cache.keys import request_keys
from tokenlean.cache.semantic import ResponseCache
from tokenlean.cache.stores.redis import RedisStore
from tokenlean.embeddings import shared_embedder
from tokenlean.middleware import Message, Request

def keys(q):
    r = Request(messages=(Message("system", "Be brief."), Message("user", q)), model="m", temperature=0)
    return request_keys(r, tenant="t", namespace="default")

async def main():
    cache = ResponseCache(RedisStore(sys.argv[1], prefix=sys.argv[2], timeout_s=5), embedder=shared_embedder())
    found = await cache.lookup(keys("How can I learn Python?"))
    await cache.put(keys("How do I bake bread at home?"), "replica answer", ttl=None, vector=None)
    print(json.dumps({"kind": found.hit.kind if found.hit else None,
                      "answer": found.hit.entry.answer if found.hit else None}))
    await cache.aclose()

asyncio.run(main())
"""


def chat(question: str) -> Request:
    return Request(
        messages=(Message("system", "Be brief."), Message("user", question)), model="m", temperature=0
    )


def cache_event(response: Response) -> Any:
    return next(e for e in response.events if e.stage == "cache" and e.action != "timing")


def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}"


async def test_two_processes_share_one_redis(redis_url: str, embedder: Any) -> None:
    space = prefix()
    cache = ResponseCache(RedisStore(redis_url, prefix=space, timeout_s=5), embedder=embedder)
    keys = request_keys(chat("How do I learn Python?"), tenant="t", namespace="default")
    await cache.put(keys, "parent answer", ttl=None, vector=None)

    replica = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", REPLICA, redis_url, space],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert replica.returncode == 0, replica.stderr[-2000:]
    seen = json.loads(replica.stdout.strip().splitlines()[-1])
    assert seen == {"kind": "semantic", "answer": "parent answer"}  # the parent's miss is the replica's hit

    bread = request_keys(chat("How do I bake bread at home?"), tenant="t", namespace="default")
    exact = await cache.lookup(bread)
    paraphrase = await cache.lookup(
        request_keys(chat("How can I bake bread at home?"), tenant="t", namespace="default")
    )
    assert exact.hit is not None and exact.hit.kind == "exact" and exact.hit.entry.answer == "replica answer"
    assert paraphrase.hit is not None and paraphrase.hit.kind == "semantic"  # learnt from the Redis stream
    await cache.aclose()


async def test_reader_rebuilds_after_a_gap_in_the_stream(redis_url: str) -> None:
    space = prefix()
    reader, writer = (
        RedisStore(redis_url, prefix=space, timeout_s=5),
        RedisStore(redis_url, prefix=space, timeout_s=5),
    )
    vector = bytes(8)
    await writer.put(CacheEntry(key="a", answer="1", query="qa", context="c", vector=vector, created=1.0))
    cursor, records, reset = await reader.changes(None)
    assert reset and [r.key for r in records] == ["a"]
    await writer.put(CacheEntry(key="b", answer="2", query="qb", context="c", vector=vector, created=1.0))
    await writer._client.xtrim(f"{space}:log", maxlen=0)  # the log was trimmed past the reader
    await writer.put(CacheEntry(key="c", answer="3", query="qc", context="c", vector=vector, created=1.0))
    cursor, records, reset = await reader.changes(cursor)
    assert reset and sorted(r.key for r in records) == ["a", "b", "c"]
    await reader.aclose()
    await writer.aclose()


async def test_eviction_and_ttl_keep_the_accounting_right(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=prefix(), max_entries=3, max_bytes=10_000, timeout_s=5)
    for i in range(5):
        evicted = await store.put(CacheEntry(key=f"k{i}", answer="a" * 100, created=time.time()))
        await asyncio.sleep(0.002)
    assert evicted == ["k1"] and await store.count() == 3 and await store.get("k0") is None
    await store.put(CacheEntry(key="short", answer="b", created=time.time(), expires=time.time() + 0.05))
    await asyncio.sleep(0.15)
    assert await store.get("short") is None  # expired in Redis; its bookkeeping is dropped on read
    assert await store.count() == 2 and await store.total_bytes() == 200
    await store.aclose()


async def test_stopped_redis_never_fails_a_request(own_redis: Any, embedder: Any) -> None:
    backend = FakeBackend(lambda r: f"answer to: {r.last_user_text}")
    stage = CacheStage(
        store="redis",
        url=own_redis.url,
        prefix=prefix(),
        embedder=embedder,
        retry_after_s=30,
        store_timeout_s=5,
    )
    pipeline = Pipeline(backend, [stage])
    await pipeline(chat("What is the boiling point of water?"))
    assert cache_event(await pipeline(chat("What is the boiling point of water?"))).action == "hit"

    own_redis.stop()
    down = await pipeline(chat("What is the boiling point of water?"))
    assert down.text == "answer to: What is the boiling point of water?"
    event = cache_event(down)
    assert event.action == "bypassed" and "Redis" in event.data["error"]
    touched: list[str] = []  # no retry storm: while down, the store is left alone for retry_after_s
    real_lookup = stage.cache.lookup

    def counted_lookup(*args: Any, **kwargs: Any) -> Any:
        touched.append("lookup")
        return real_lookup(*args, **kwargs)

    stage.cache.lookup = counted_lookup  # type: ignore[method-assign]
    again = await pipeline(chat("Another question while Redis is down?"))
    assert cache_event(again).action == "bypassed" and touched == []
    streamed = await (await pipeline(chat("And a streamed one?").replace(stream=True))).aread()
    assert streamed.text == "answer to: And a streamed one?" and touched == []
    assert len(backend.requests) == 4
    await stage.aclose()
