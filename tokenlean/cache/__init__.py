"""Response cache: exact and semantic lookup, a meaning guard, and real stores.

``CacheStage`` is the pipeline stage (``type: cache`` in a spec). The parts are usable alone:
``request_keys`` (what a request is keyed on), ``MeaningGuard`` (the check a semantic candidate
must pass), ``ResponseCache`` (lookup and store over a ``CacheStore``), and the stores
``MemoryStore``, ``SQLiteStore`` and ``RedisStore``. Nothing here imports faiss, torch or redis at
import time.
"""

from tokenlean.cache.guard import MeaningGuard, Verdict
from tokenlean.cache.keys import RequestKeys, request_keys
from tokenlean.cache.options import CacheOptions, parse_options
from tokenlean.cache.semantic import Hit, ResponseCache
from tokenlean.cache.stage import CacheStage, build_store
from tokenlean.cache.stores import CacheStore, CacheStoreError, MemoryStore

__all__ = [
    "CacheOptions",
    "CacheStage",
    "CacheStore",
    "CacheStoreError",
    "Hit",
    "MeaningGuard",
    "MemoryStore",
    "RequestKeys",
    "ResponseCache",
    "Verdict",
    "build_store",
    "parse_options",
    "request_keys",
]
