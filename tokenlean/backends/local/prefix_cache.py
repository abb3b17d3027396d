"""KV prefix reuse for the embedded backend: an LRU of token sequences and their KV caches.

Technique: the "prompt cache" idea (Prompt Cache, Gim et al., MLSys 2024; vLLM's automatic prefix
caching): requests that share a prompt prefix (a long system prompt, few-shot demonstrations, the
earlier turns of a conversation) need not recompute its keys and values. After a single-row
request finishes, its cache (prompt and generated tokens) is kept under its token ids, and so is
the prompt of every request prefilled in a batch (``row_cache``); a new prompt, alone or joining
a batch, takes the entry with the longest common prefix, copies that many positions and prefills
only the rest. The demonstration and compression stages keep the stable prefix first so it hits.

Known failure modes: only an exact token prefix is reused (one changed token early in the prompt
voids everything after it), and memory grows with the entries kept (``max_bytes`` bounds it).
Caches with sliding-window layers (Gemma 3) cannot be cut back to an arbitrary prefix and are not
stored. The reused keys/values come from a different pass shape than a full prefill, so logits
can differ in the last float bits (see docs/speculative.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from tokenlean.backends.local.kv import cache_length, is_sliding

__all__ = ["PrefixCache", "common_prefix", "copy_prefix", "row_cache"]


class PrefixCache:
    """Token ids → KV cache, least recently used dropped first; ``hits``/``misses`` count lookups."""

    def __init__(self, *, max_entries: int = 8, max_bytes: int = 512 * 2**20, min_tokens: int = 16) -> None:
        self.max_entries, self.max_bytes, self.min_tokens = max_entries, max_bytes, min_tokens
        self._entries: OrderedDict[tuple[int, ...], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, prompt_ids: Sequence[int]) -> tuple[Any, int] | None:
        """A fresh cache holding the longest stored prefix of ``prompt_ids`` (at most all but one token).

        At least one prompt token is left to run, because its logits choose the first new token.
        Returns ``None`` (a miss) when no entry shares ``min_tokens`` or more.
        """
        with self._lock:
            best, length = None, 0
            for key in self._entries:
                common = common_prefix(key, prompt_ids)
                if common > length:
                    best, length = key, common
            length = min(length, len(prompt_ids) - 1)
            if best is None or length < self.min_tokens:
                self.misses += 1
                return None
            self._entries.move_to_end(best)
            stored = self._entries[best][0]
            self.hits += 1
            self.reused_tokens += length
        return copy_prefix(stored, length), length

    def longest(self, prompt_ids: Sequence[int]) -> int:
        """How many leading tokens of ``prompt_ids`` the best entry holds (no copy, no counting)."""
        with self._lock:
            return max((common_prefix(key, prompt_ids) for key in self._entries), default=0)

    def put(self, token_ids: Sequence[int], cache: Any) -> None:
        """Keep ``cache`` (which holds exactly ``token_ids``) for later requests; the caller gives it up."""
        if is_sliding(cache) or len(token_ids) < self.min_tokens or cache_length(cache) != len(token_ids):
            return
        size = _cache_bytes(cache)
        if size > self.max_bytes or self.max_entries <= 0:
            return
        key = tuple(token_ids)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (cache, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        """Drop every entry (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def row_cache(cache: Any, row: int, length: int) -> Any:
    """A new cache with batch row ``row``'s last ``length`` positions (its tokens under left padding)."""
    from transformers import DynamicCache

    layers = [
        (
            layer.keys[row : row + 1, :, -length:, :].clone(),
            layer.values[row : row + 1, :, -length:, :].clone(),
        )
        for layer in cache.layers
    ]
    return DynamicCache(ddp_cache_data=layers)


def copy_prefix(cache: Any, length: int) -> Any:
    """A new cache with the first ``length`` positions of ``cache``; the stored one stays intact."""
    from transformers import DynamicCache

    layers = [(layer.keys[..., :length, :], layer.values[..., :length, :]) for layer in cache.layers]
    return DynamicCache(ddp_cache_data=layers)


def _cache_bytes(cache: Any) -> int:
    total = 0
    for layer in cache.layers:
        for tensor in (layer.keys, layer.values):
            if tensor is not None:
                total += tensor.numel() * tensor.element_size()
    return total


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
