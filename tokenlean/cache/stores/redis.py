"""``RedisStore``: one cache shared by several proxy processes.

Redis 7 as Debian ships it has no vector search, so Redis is the source of truth for entries and
every process keeps its own faiss index in step with it: each write that has an embedding also
appends ``(seq, key, context, vector)`` to a Redis stream, and a process replays the stream from
its cursor before a semantic lookup. ``seq`` comes from one counter incremented in the same Lua
script as the write, so a reader that finds a gap (the stream was trimmed past it, or the data
was flushed) knows it and rebuilds its index from a full snapshot instead.

Every write, its accounting (a least-recently-used sorted set, sizes, total bytes) and eviction
run in one Lua script, atomically, so two processes writing at once cannot drift the totals.
Entries with a time to live also get a Redis expiry; their bookkeeping is dropped when a reader
finds them gone. Not for Redis Cluster: the scripts touch keys they compute.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from tokenlean.cache.entry import CacheEntry, IndexRecord
from tokenlean.cache.stores.base import CacheStoreError, Changes
from tokenlean.errors import MissingDependencyError

__all__ = ["RedisStore"]

T = TypeVar("T")

_PUT = """
local k = ARGV[1]
local old = redis.call('HGET', KEYS[3], k)
if old then redis.call('DECRBY', KEYS[4], old) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'answer', ARGV[2], 'query', ARGV[3], 'context', ARGV[4], 'vector', ARGV[5],
           'created', ARGV[6], 'expires', ARGV[7])
if tonumber(ARGV[8]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[8]) end
redis.call('ZADD', KEYS[2], ARGV[9], k)
redis.call('HSET', KEYS[3], k, ARGV[10])
redis.call('INCRBY', KEYS[4], ARGV[10])
if ARGV[4] ~= '' and ARGV[5] ~= '' then
  local seq = redis.call('INCR', KEYS[5])
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[13], '*', 'seq', seq, 'key', k, 'context', ARGV[4],
             'vector', ARGV[5], 'query', ARGV[3])
end
local evicted = {}
local max_n, max_b = tonumber(ARGV[11]), tonumber(ARGV[12])
while true do
  local n = redis.call('ZCARD', KEYS[2])
  local b = tonumber(redis.call('GET', KEYS[4]) or '0')
  if n <= 1 or (n <= max_n and b <= max_b) then break end
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  local size = redis.call('HGET', KEYS[3], oldest)
  if size then redis.call('DECRBY', KEYS[4], size) end
  redis.call('HDEL', KEYS[3], oldest)
  redis.call('ZREM', KEYS[2], oldest)
  redis.call('DEL', ARGV[14] .. oldest)
  table.insert(evicted, oldest)
end
return evicted
"""

_FORGET = """
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local size = redis.call('HGET', KEYS[3], ARGV[1])
if size then redis.call('DECRBY', KEYS[4], size) end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
"""

_FIELDS = (b"answer", b"query", b"context", b"vector", b"created", b"expires")


class RedisStore:
    """Entries as Redis hashes under ``prefix``; see the module docstring for the layout."""

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "tokenlean:cache",
        max_entries: int = 1_000_000,
        max_bytes: int = 4 * 2**30,
        log_size: int = 100_000,
        timeout_s: float = 1.0,
    ) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:
            raise MissingDependencyError("the Redis cache store needs: pip install redis") from exc
        self.url, self.prefix = url, prefix
        self.max_entries, self.max_bytes, self.log_size = max_entries, max_bytes, log_size
        # typed Any: redis-py's reply types are unions over its decode modes; bytes is what we get
        self._client: Any = aioredis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=2 * timeout_s, decode_responses=False
        )
        self._put_script = self._client.register_script(_PUT)
        self._forget_script = self._client.register_script(_FORGET)
        p = prefix
        self._lru, self._sizes, self._bytes = f"{p}:lru", f"{p}:size", f"{p}:bytes"
        self._seq, self._log, self._entry_prefix = f"{p}:seq", f"{p}:log", f"{p}:e:"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        import redis.exceptions

        try:
            return await fn()
        except (redis.exceptions.RedisError, OSError) as exc:
            raise CacheStoreError(f"Redis cache at {self.url}: {exc}") from exc

    def _entry_key(self, key: str) -> str:
        return self._entry_prefix + key

    async def get(self, key: str) -> CacheEntry | None:
        """The live entry under ``key``, marked as used in the same round trip."""

        async def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            pipe.hmget(self._entry_key(key), _FIELDS)
            pipe.zadd(self._lru, {key: time.time()}, xx=True)
            return list(await pipe.execute())

        values = (await self._call(run))[0]
        return await self._decode(key, values)

    async def get_many(self, keys: Sequence[str]) -> list[CacheEntry | None]:
        """Entries for ``keys`` in one pipelined round trip."""

        async def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._entry_key(key), _FIELDS)
            return list(await pipe.execute())

        rows = await self._call(run) if keys else []
        return [await self._decode(key, values) for key, values in zip(keys, rows, strict=True)]

    async def _decode(self, key: str, values: list[bytes | None]) -> CacheEntry | None:
        answer, query, context, vector, created, expires = values
        if answer is None:  # gone (expired by Redis, or evicted): drop its bookkeeping
            await self._forget(key, only_if_missing=True)
            return None
        entry = CacheEntry(
            key=key,
            answer=answer.decode(),
            query=(query or b"").decode(),
            context=context.decode() if context else None,
            vector=vector or None,
            created=float(created or 0),
            expires=float(expires) if expires else None,
        )
        return None if entry.expired() else entry

    async def touch(self, key: str) -> None:
        """Record the use in the least-recently-used set."""
        await self._call(lambda: self._client.zadd(self._lru, {key: time.time()}, xx=True))

    async def put(self, entry: CacheEntry) -> list[str]:
        """Write, account and evict in one atomic script; return the evicted keys."""
        ttl_ms = max(1, int((entry.expires - time.time()) * 1000)) if entry.expires is not None else 0
        keys = [self._entry_key(entry.key), self._lru, self._sizes, self._bytes, self._seq, self._log]
        args: list[Any] = [
            entry.key,
            entry.answer,
            entry.query,
            entry.context or "",
            entry.vector or b"",
            repr(entry.created),
            repr(entry.expires) if entry.expires is not None else "",
            ttl_ms,
            repr(time.time()),
            entry.size,
            self.max_entries,
            self.max_bytes,
            self.log_size,
            self._entry_prefix,
        ]
        evicted = await self._call(lambda: self._put_script(keys=keys, args=args))
        return [k.decode() for k in evicted]

    async def delete(self, key: str) -> None:
        """Remove ``key`` and its bookkeeping."""
        await self._forget(key, only_if_missing=False)

    async def _forget(self, key: str, *, only_if_missing: bool) -> None:
        keys = [self._entry_key(key), self._lru, self._sizes, self._bytes]
        await self._call(lambda: self._forget_script(keys=keys, args=[key, "1" if only_if_missing else "0"]))

    async def changes(self, cursor: Any) -> Changes:
        """Replay the stream from ``cursor = (stream id, seq)``; a snapshot on a gap or at start."""
        if cursor is None:
            return await self._snapshot()
        last_id, last_seq = cursor
        reply = await self._call(lambda: self._client.xread({self._log: last_id}, count=10_000))
        items = reply[0][1] if reply else []
        if not items:
            return cursor, [], False
        if int(items[0][1][b"seq"]) != last_seq + 1:
            return await self._snapshot()
        records = [
            IndexRecord(f[b"key"].decode(), f[b"context"].decode(), f[b"vector"], f[b"query"].decode())
            for _, f in items
        ]
        return (items[-1][0], int(items[-1][1][b"seq"])), records, False

    async def _snapshot(self) -> Changes:
        # read the stream head first: anything written during the scan is replayed afterwards
        head = await self._call(lambda: self._client.xrevrange(self._log, count=1))
        cursor = (head[0][0], int(head[0][1][b"seq"])) if head else (b"0-0", 0)
        members = await self._call(lambda: self._client.zrange(self._lru, 0, -1))
        records: list[IndexRecord] = []
        for start in range(0, len(members), 1000):
            batch = [m.decode() for m in members[start : start + 1000]]

            async def run(batch: list[str] = batch) -> list[Any]:
                pipe = self._client.pipeline(transaction=False)
                for key in batch:
                    pipe.hmget(self._entry_key(key), [b"context", b"vector", b"query"])
                return list(await pipe.execute())

            for key, (context, vector, query) in zip(batch, await self._call(run), strict=True):
                if context and vector:
                    records.append(IndexRecord(key, context.decode(), vector, (query or b"").decode()))
        return cursor, records, True

    async def count(self) -> int:
        """Entries in the least-recently-used set."""
        return int(await self._call(lambda: self._client.zcard(self._lru)))

    async def total_bytes(self) -> int:
        """Bytes accounted to live entries."""
        return int(await self._call(lambda: self._client.get(self._bytes)) or 0)

    async def clear(self) -> None:
        """Delete every key under ``prefix`` (tests and benchmarks start from empty)."""

        async def run() -> None:
            async for name in self._client.scan_iter(match=f"{self.prefix}:*", count=1000):
                await self._client.delete(name)

        await self._call(run)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
