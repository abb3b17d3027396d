"""``ScopedIndex``: faiss inner-product search, one shard per context key.

A semantic lookup may only match entries with the same context (scope, model, parameters, system
prompt and history), so each context gets its own shard and a search never sees another
context's vectors. A shard starts as an exact ``IndexFlatIP`` and becomes an HNSW graph
(Malkov and Yashunin, 2018) once it holds ``hnsw_from`` vectors, which keeps a lookup well under a
millisecond at 100k entries; HNSW is approximate (a true neighbour can be missed, a miss and
never a wrong hit) and cannot delete, so removed ids are tombstoned, filtered from results, and
the shard is rebuilt once a third of it is dead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ScopedIndex"]


@dataclass
class _Shard:
    """The vectors of one context: a faiss index plus the id ↔ key maps."""

    index: Any
    hnsw: bool = False
    keys: dict[int, str] = field(default_factory=dict)
    dead: set[int] = field(default_factory=set)


class ScopedIndex:
    """Vectors grouped by context key; ``search`` looks inside one group only."""

    def __init__(self, dimension: int, *, hnsw_from: int = 4096, hnsw_m: int = 32, ef_search: int = 64) -> None:
        self.dimension = dimension
        self.hnsw_from = hnsw_from
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self._shards: dict[str, _Shard] = {}
        self._where: dict[str, tuple[str, int]] = {}  # entry key -> (context, id)
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def clear(self) -> None:
        """Forget every vector (before a rebuild from a store snapshot)."""
        self._shards.clear()
        self._where.clear()

    def add(self, key: str, context: str, vector: np.ndarray) -> None:
        """Index ``vector`` (normalised float32) for ``key`` under ``context``; re-adding replaces."""
        import numpy as np

        if key in self._where:
            if self._where[key][0] == context:
                return  # same entry replayed from the store's change log
            self.remove(key)
        shard = self._shards.get(context)
        if shard is None:
            shard = self._shards[context] = _Shard(self._flat())
        ident = self._next_id
        self._next_id += 1
        shard.index.add_with_ids(np.asarray(vector, dtype=np.float32).reshape(1, -1), np.array([ident], dtype=np.int64))
        shard.keys[ident] = key
        self._where[key] = (context, ident)
        if not shard.hnsw and len(shard.keys) >= self.hnsw_from:
            self._rebuild(context, shard, hnsw=True)

    def add_many(self, items: list[tuple[str, str, np.ndarray]]) -> None:
        """Index many ``(key, context, vector)`` at once: one faiss call per context."""
        import numpy as np

        groups: dict[str, list[tuple[str, np.ndarray]]] = {}
        for key, context, vector in items:
            if key in self._where:
                if self._where[key][0] == context:
                    continue
                self.remove(key)
            groups.setdefault(context, []).append((key, vector))
        for context, group in groups.items():
            shard = self._shards.get(context)
            if shard is None:
                shard = self._shards[context] = _Shard(self._flat())
            ids = np.arange(self._next_id, self._next_id + len(group), dtype=np.int64)
            self._next_id += len(group)
            matrix = np.vstack([np.asarray(v, dtype=np.float32).reshape(1, -1) for _, v in group])
            if not shard.hnsw and len(shard.keys) + len(group) >= self.hnsw_from:
                self._rebuild(context, shard, hnsw=True)
                shard = self._shards[context]
            shard.index.add_with_ids(matrix, ids)
            for ident, (key, _) in zip(ids.tolist(), group, strict=True):
                shard.keys[ident] = key
                self._where[key] = (context, ident)

    def remove(self, key: str) -> None:
        """Drop ``key``; HNSW shards tombstone it and rebuild when a third is dead."""
        import numpy as np

        where = self._where.pop(key, None)
        if where is None:
            return
        context, ident = where
        shard = self._shards[context]
        del shard.keys[ident]
        if not shard.keys:
            del self._shards[context]
        elif shard.hnsw:
            shard.dead.add(ident)
            if len(shard.dead) * 2 > len(shard.keys):
                self._rebuild(context, shard, hnsw=len(shard.keys) >= self.hnsw_from)
        else:
            shard.index.remove_ids(np.array([ident], dtype=np.int64))

    def search(self, context: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """Up to ``k`` ``(key, cosine)`` pairs in ``context``, most similar first."""
        import numpy as np

        shard = self._shards.get(context)
        if shard is None:
            return []
        want = min(k + len(shard.dead), shard.index.ntotal)
        scores, ids = shard.index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), want)
        found = []
        for score, ident in zip(scores[0], ids[0], strict=True):
            key = shard.keys.get(int(ident))
            if key is not None:
                found.append((key, float(score)))
                if len(found) == k:
                    break
        return found

    def _flat(self) -> Any:
        import faiss

        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    def _hnsw(self) -> Any:
        import faiss

        graph = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efSearch = self.ef_search
        graph.hnsw.efConstruction = 64
        return faiss.IndexIDMap2(graph)

    def _rebuild(self, context: str, shard: _Shard, *, hnsw: bool) -> None:
        """Copy the live vectors of ``shard`` into a fresh flat or HNSW index."""
        import numpy as np

        ids = np.fromiter(shard.keys, dtype=np.int64, count=len(shard.keys))
        vectors = np.vstack([shard.index.reconstruct(int(i)) for i in ids]) if len(ids) else None
        fresh = _Shard(self._hnsw() if hnsw else self._flat(), hnsw, dict(shard.keys))
        if vectors is not None:
            fresh.index.add_with_ids(vectors, ids)
        self._shards[context] = fresh
