"""Response cache: exact and semantic lookup, a meaning guard, and real stores.

``CacheStage`` is the pipeline stage (``type: cache`` in a spec) and, through its ``lookup`` and
``store`` methods, the cache as a library (no pipeline needed). The parts are usable alone:
``request_keys`` (what a request is keyed on), ``MeaningGuard`` (the vetoes a semantic candidate
must pass), ``DuplicateHead`` (the learnt hit decision), ``ResponseCache`` (lookup and store over
a ``CacheStore``), and the stores ``MemoryStore``, ``SQLiteStore`` and ``RedisStore``. For
LangChain: ``tokenlean.integrations.langchain_cache.TokenleanLLMCache``. Nothing here imports
faiss, torch or redis at import time.
"""

from tokenlean.cache.guard import MeaningGuard, Verdict
from tokenlean.cache.head import DEFAULT_THRESHOLD, DuplicateHead
from tokenlean.cache.keys import RequestKeys, request_keys
from tokenlean.cache.options import CacheOptions, parse_options
from tokenlean.cache.semantic import Hit, ResponseCache
from tokenlean.cache.stage import CacheStage, build_store
from tokenlean.cache.stores import CacheStore, CacheStoreError, MemoryStore

__all__ = [
    "DEFAULT_THRESHOLD",
    "CacheOptions",
    "CacheStage",
    "CacheStore",
    "CacheStoreError",
    "DuplicateHead",
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
