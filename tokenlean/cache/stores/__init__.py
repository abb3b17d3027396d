"""Cache stores: in-memory (default), SQLite in WAL mode, Redis shared by several processes."""

from tokenlean.cache.stores.base import CacheStore, CacheStoreError, Changes
from tokenlean.cache.stores.memory import MemoryStore

__all__ = ["CacheStore", "CacheStoreError", "Changes", "MemoryStore", "RedisStore", "SQLiteStore"]


def __getattr__(name: str) -> object:
    # SQLite and Redis stores are imported on first use: redis is an optional dependency.
    if name == "SQLiteStore":
        from tokenlean.cache.stores.sqlite import SQLiteStore

        return SQLiteStore
    if name == "RedisStore":
        from tokenlean.cache.stores.redis import RedisStore

        return RedisStore
    raise AttributeError(name)
