"""``TokenleanLLMCache``: tokenlean's semantic response cache as a LangChain LLM cache.

``set_llm_cache(TokenleanLLMCache())`` makes every LangChain chat model (and LLM) answer repeated
and reworded prompts from tokenlean's cache: exact matching on the whole prompt, semantic matching
of the last user turn decided by the learnt duplicate head, with the meaning guard's vetoes. The
rest of the prompt (system prompt, earlier turns) and LangChain's ``llm_string`` (the model and
its parameters) are part of the key, so a different model, temperature or system prompt never
shares an answer. LangChain decides *when* to cache (a model with ``cache=False`` skips it); here
every prompt it hands over is cached.

A chat model's ``prompt`` is LangChain's JSON of its message list; it is read back into messages
(a plain-text LLM prompt is one user turn). The generations are stored with LangChain's own
``dumps`` and restored with ``loads``. ``clear()`` moves this object to a fresh namespace: entries
of the old one are never matched again by it and leave by TTL or eviction (the stores have no
bulk delete); other processes sharing a store keep their own namespace.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumps, loads
from langchain_core.messages import BaseMessage

from tokenlean.cache.keys import RequestKeys, request_keys
from tokenlean.cache.semantic import ResponseCache
from tokenlean.cache.stage import build_store
from tokenlean.cache.stores.base import CacheStore
from tokenlean.integrations.convert import flatten_content
from tokenlean.middleware.sync import run_sync
from tokenlean.middleware.types import Message, Request

__all__ = ["TokenleanLLMCache"]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "developer": "developer"}


class TokenleanLLMCache(BaseCache):
    """A LangChain ``BaseCache`` over tokenlean's ``ResponseCache`` (any store, semantic lookup)."""

    def __init__(
        self,
        cache: ResponseCache | None = None,
        *,
        store: str | CacheStore = "memory",
        path: str | Path | None = None,
        url: str | None = None,
        namespace: str = "langchain",
        ttl: float | None = 86_400.0,
        **options: Any,
    ) -> None:
        """``cache`` to share one, else a new one on ``store`` (``memory``, ``sqlite`` with ``path``,
        ``redis`` with ``url``, or a ``CacheStore``); ``options`` go to ``ResponseCache``
        (``threshold``, ``embedder``, ``decision``...)."""
        self.cache = cache or ResponseCache(build_store(store, path=path, url=url), **options)
        self.namespace = namespace
        self.ttl = ttl

    def _keys(self, prompt: str, llm_string: str) -> RequestKeys:
        model = "langchain:" + hashlib.sha256(llm_string.encode("utf-8")).hexdigest()[:32]
        request = Request(messages=_messages(prompt), model=model, temperature=0)
        return request_keys(request, tenant=None, namespace=self.namespace)

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The stored generations for ``prompt`` (or a reworded one) under ``llm_string``, or None."""
        hit = (await self.cache.lookup(self._keys(prompt, llm_string))).hit
        if hit is None:
            return None
        return [loads(item, allowed_objects="core") for item in json.loads(hit.entry.answer)]

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store ``return_val`` (LangChain generations) as the answer to ``prompt``."""
        answer = json.dumps([dumps(generation) for generation in return_val])
        await self.cache.put(self._keys(prompt, llm_string), answer, ttl=self.ttl, vector=None)

    async def aclear(self, **kwargs: Any) -> None:
        """Forget every entry: later lookups only see entries stored after this call."""
        self.namespace = f"{self.namespace.split('#', 1)[0]}#{uuid.uuid4().hex[:12]}"

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Sync ``alookup`` (through tokenlean's one sync bridge)."""
        return run_sync(self.alookup(prompt, llm_string))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Sync ``aupdate``."""
        run_sync(self.aupdate(prompt, llm_string, return_val))

    def clear(self, **kwargs: Any) -> None:
        """Sync ``aclear``."""
        run_sync(self.aclear(**kwargs))


def _messages(prompt: str) -> tuple[Message, ...]:
    """A chat prompt's messages (LangChain's JSON of them), or a plain prompt as one user turn."""
    if prompt.startswith("[") and '"lc"' in prompt:
        try:
            parsed = loads(prompt, allowed_objects="messages")
        except (ValueError, TypeError, KeyError):
            parsed = None
        if isinstance(parsed, Sequence) and parsed and all(isinstance(m, BaseMessage) for m in parsed):
            return tuple(
                Message(_ROLES.get(m.type, "user"), flatten_content(m.content, param="prompt"))  # type: ignore[arg-type]
                for m in parsed
            )
    return (Message("user", prompt),)
