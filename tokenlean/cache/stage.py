"""``CacheStage``: the response cache as a pipeline stage (name ``cache``).

Exact and semantic response caching after GPTCache (Zilliz, 2023), with keys that cover the whole
context (keys.py) and a guard against meaning flips (guard.py); the known failure mode of the
technique, a similar question with a different answer, is what those two exist for.

Policy: only deterministic requests (temperature 0 or a seed) are cached unless
``deterministic_only=False``; every entry lives in its tenant's scope (``request.tenant``, the
proxy's API key) and a namespace; entries expire after ``ttl`` seconds; the store evicts the
least recently used entries beyond ``max_entries`` / ``max_bytes``.

A store that is down never costs the answer: the request is answered uncached with a
``bypassed`` event, and the store is left alone for ``retry_after_s`` so a dead Redis does not add
a connection timeout to every request. After ``call_next`` has answered, no failure of the cache
may propagate (the pipeline would bypass by calling the backend a second time), so storing
reports its failure in the event instead of raising.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tokenlean.cache.entry import decode_answer, encode_answer
from tokenlean.cache.guard import MeaningGuard
from tokenlean.cache.keys import RequestKeys, request_keys
from tokenlean.cache.options import CacheOptions, CacheSpecOptions, parse_options
from tokenlean.cache.semantic import Decision, Hit, Lookup, ResponseCache
from tokenlean.cache.stores.base import CacheStore, CacheStoreError
from tokenlean.cache.stores.memory import MemoryStore
from tokenlean.cache.streaming import replay, tee
from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Event, Request, Response

if TYPE_CHECKING:
    from tokenlean.embeddings import Embedder

__all__ = ["CacheStage", "build_store"]


def build_store(
    store: str | CacheStore,
    *,
    path: str | Path | None = None,
    url: str | None = None,
    prefix: str = "tokenlean:cache",
    max_entries: int = 100_000,
    max_bytes: int = 512 * 2**20,
    timeout_s: float = 1.0,
) -> CacheStore:
    """A store from its name (``memory``, ``sqlite`` with ``path``, ``redis`` with ``url``)."""
    if not isinstance(store, str):
        return store
    if store == "memory":
        return MemoryStore(max_entries=max_entries, max_bytes=max_bytes)
    if store == "sqlite":
        from tokenlean.cache.stores.sqlite import SQLiteStore

        if path is None:
            raise ConfigError("the sqlite cache store needs a path", param="path")
        return SQLiteStore(path, max_entries=max_entries, max_bytes=max_bytes)
    if store == "redis":
        from tokenlean.cache.stores.redis import RedisStore

        url = url or "redis://127.0.0.1:6379/0"
        return RedisStore(
            url, prefix=prefix, max_entries=max_entries, max_bytes=max_bytes, timeout_s=timeout_s
        )
    raise ConfigError(f"unknown cache store {store!r}; known: memory, sqlite, redis", param="store")


class CacheStage:
    """Answer repeated (and reworded) deterministic requests from the cache."""

    name: ClassVar[str] = "cache"
    options_model: ClassVar[type[CacheOptions]] = CacheOptions
    spec_model: ClassVar[type[CacheSpecOptions]] = CacheSpecOptions

    def __init__(
        self,
        *,
        store: str | CacheStore = "memory",
        path: str | Path | None = None,
        url: str | None = None,
        prefix: str = "tokenlean:cache",
        namespace: str = "default",
        semantic: bool = True,
        threshold: float | None = None,
        decision: Decision = "learned",
        novelty_penalty: float = 0.1,
        ttl: float | None = 86_400.0,
        max_entries: int = 100_000,
        max_bytes: int = 512 * 2**20,
        max_query_chars: int = 1000,
        deterministic_only: bool = True,
        retry_after_s: float = 2.0,
        store_timeout_s: float = 1.0,
        embedder: Embedder | None = None,
    ) -> None:
        if threshold is not None and not 0 < threshold <= 1:
            raise ConfigError("threshold must be in (0, 1]", param="threshold")
        if decision not in ("learned", "guard"):
            raise ConfigError("decision must be 'learned' or 'guard'", param="decision")
        if ttl is not None and ttl <= 0:
            raise ConfigError("ttl must be positive (or null for no expiry)", param="ttl")
        backing = build_store(
            store,
            path=path,
            url=url,
            prefix=prefix,
            max_entries=max_entries,
            max_bytes=max_bytes,
            timeout_s=store_timeout_s,
        )
        self.cache = ResponseCache(
            backing,
            embedder=embedder,
            threshold=threshold,
            semantic=semantic,
            decision=decision,
            guard=MeaningGuard(novelty_penalty=novelty_penalty),
            max_query_chars=max_query_chars,
        )
        self.namespace = namespace
        self.ttl = ttl
        self.deterministic_only = deterministic_only
        self.retry_after_s = retry_after_s
        self._down_until = 0.0
        self._down_reason = ""

    @property
    def storage(self) -> CacheStore:
        """The backing store (``store`` is the library call that stores an answer)."""
        return self.cache.store

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        """Look up, answer from the cache or ask ``call_next`` and store the answer."""
        options = parse_options(request.option(self.name))
        if not options.enabled:
            return await call_next(request)
        if self.deterministic_only and not request.is_deterministic:
            response = await call_next(request)
            return response.with_event(self._event("skip", 0.0, reason="non-deterministic"))
        if time.monotonic() < self._down_until:
            return await self._uncached(request, call_next, self._down_reason)
        keys = self._keys(request, options)
        started = time.perf_counter()
        lookup = Lookup()
        if not options.no_cache:
            try:
                lookup = await self.cache.lookup(keys, semantic=options.semantic, threshold=options.threshold)
            except CacheStoreError as exc:
                self._trip(exc)
                return await self._uncached(request, call_next, exc.message)
        ms = (time.perf_counter() - started) * 1000
        if lookup.hit is not None:
            return self._answer(request, lookup.hit, ms)
        response = await call_next(request)
        return await self._after_miss(request, response, keys, options, lookup, ms)

    async def lookup(self, request: Request, *, threshold: float | None = None) -> Response | None:
        """The cached answer to ``request`` (with a ``cache`` hit event), or None: the library API.

        The same policy as the stage (deterministic requests only unless ``deterministic_only`` is
        off, the request's tenant and namespace), with no ``call_next``: a caller that talks to its
        model itself asks here first and calls ``store`` after a miss. A store failure raises
        ``CacheStoreError``.
        """
        if self.deterministic_only and not request.is_deterministic:
            return None
        options = parse_options(request.option(self.name))
        started = time.perf_counter()
        found = await self.cache.lookup(
            self._keys(request, options),
            semantic=options.semantic,
            threshold=threshold if threshold is not None else options.threshold,
        )
        if found.hit is None:
            return None
        return self._answer(request, found.hit, (time.perf_counter() - started) * 1000)

    async def store(self, request: Request, response: Response, *, ttl: float | None = None) -> bool:
        """Store ``response`` as the answer to ``request``; True when stored (the library API).

        Not stored: a non-deterministic request under ``deterministic_only``, a streamed response
        (collect it first), or one with an unfinished choice. ``ttl`` defaults to the stage's.
        """
        if response.stream is not None:
            raise BadRequestError("store a complete response, not a stream", param="response")
        if self.deterministic_only and not request.is_deterministic:
            return False
        options = parse_options(request.option(self.name))
        ttl = ttl if ttl is not None else options.ttl if options.ttl is not None else self.ttl
        stored = await self._store(self._keys(request, options), response, ttl, Lookup())
        if "error" in stored:
            raise CacheStoreError(str(stored["error"]))
        return bool(stored["stored"])

    def _keys(self, request: Request, options: CacheOptions) -> RequestKeys:
        return request_keys(request, tenant=request.tenant, namespace=options.namespace or self.namespace)

    def _answer(self, request: Request, hit: Hit, ms: float) -> Response:
        cached = decode_answer(hit.entry.answer)
        event = self._event(
            "hit",
            ms,
            kind=hit.kind,
            similarity=round(hit.similarity, 4),
            score=round(hit.score, 4),
            age_s=round(time.time() - hit.entry.created, 3),
            saved_prompt_tokens=cached.usage.prompt_tokens,
            saved_completion_tokens=cached.usage.completion_tokens,
            tokens_saved=cached.usage.total_tokens,
        )
        if request.stream:
            return Response(model=cached.model, usage=cached.usage, stream=replay(cached), events=(event,))
        return cached.with_event(event)

    async def _after_miss(
        self,
        request: Request,
        response: Response,
        keys: RequestKeys,
        options: CacheOptions,
        lookup: Lookup,
        ms: float,
    ) -> Response:
        details: dict[str, Any] = {"read": not options.no_cache}
        if lookup.rejected is not None:
            details["rejected"] = lookup.rejected
        if options.no_store:
            return response.with_event(self._event("miss", ms, stored=False, reason="no_store", **details))
        ttl = options.ttl if options.ttl is not None else self.ttl
        if response.stream is None:
            stored = await self._store(keys, response, ttl, lookup)
            return response.with_event(self._event("miss", ms, **stored, **details))

        async def on_complete(whole: Response) -> Event:
            return self._event("stored", 0.0, **await self._store(keys, whole, ttl, lookup))

        stream = tee(response.stream, choices=request.n, model=response.model, on_complete=on_complete)
        return response.replace(stream=stream).with_event(
            self._event("miss", ms, stored="pending", **details)
        )

    async def _store(
        self, keys: RequestKeys, response: Response, ttl: float | None, lookup: Lookup
    ) -> dict[str, Any]:
        """Store ``response``; never raises (see the module docstring), reports instead."""
        finished = ("stop", "length", "tool_calls")  # a tool call is a whole answer (stored with its calls)
        if any(c.finish_reason not in finished for c in response.choices) or not response.choices:
            return {"stored": False, "reason": "unfinished"}
        try:
            await self.cache.put(keys, encode_answer(response), ttl=ttl, vector=lookup.vector)
        except CacheStoreError as exc:
            self._trip(exc)
            return {"stored": False, "error": exc.message}
        except Exception as exc:  # noqa: BLE001 - the answer is already produced; see the docstring
            return {"stored": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"stored": True}

    async def _uncached(self, request: Request, call_next: Handler, reason: str) -> Response:
        response = await call_next(request)
        return response.with_event(self._event("bypassed", 0.0, error=reason))

    def _trip(self, exc: CacheStoreError) -> None:
        self._down_until = time.monotonic() + self.retry_after_s
        self._down_reason = exc.message

    def _event(self, action: str, ms: float, **data: Any) -> Event:
        return Event(self.name, action, round(ms, 3), {"store": self.storage.name, **data})

    async def warm_up(self) -> None:
        """Load the semantic lookup's embedder and head before the first request needs them."""
        await self.cache.warm_up()

    async def aclose(self) -> None:
        """Close the store's connections and files."""
        await self.cache.aclose()
