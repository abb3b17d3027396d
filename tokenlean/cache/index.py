"""``ScopedIndex``: faiss inner-product search, one shard per context key.

A semantic lookup may only match entries with the same context (scope, model, parameters, system
prompt and history), so each context gets its own shard and a search never sees another
context's vectors. A shard starts as an exact ``IndexFlatIP`` and becomes an inverted-file index
(``IndexIVFFlat``, k-means cells, ``nprobe`` cells searched) once it holds ``ivf_from`` vectors,
which keeps a lookup under a millisecond at 100k entries. IVF rather than HNSW because a cache
deletes all the time (expiry, eviction) and IVF removes ids for real, where HNSW can only
tombstone them. IVF is approximate: a true neighbour in an unsearched cell is missed (a miss,
never a wrong hit); the cells are retrained when a shard has grown fourfold since its training,
which blocks for about a second at 100k vectors.
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
    trained_at: int = 0  # shard size when the IVF cells were trained; 0 while flat
    keys: dict[int, str] = field(default_factory=dict)


class ScopedIndex:
    """Vectors grouped by context key; ``search`` looks inside one group only."""

    def __init__(self, dimension: int, *, ivf_from: int = 4096, nprobe: int = 16) -> None:
        self.dimension = dimension
        self.ivf_from = ivf_from
        self.nprobe = nprobe
        self._shards: dict[str, _Shard] = {}
        self._where: dict[str, tuple[str, int]] = {}  # entry key -> (context, id)
        self._queries: dict[str, str] = {}  # entry key -> its query text, for the meaning guard
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def clear(self) -> None:
        """Forget every vector (before a rebuild from a store snapshot)."""
        self._shards.clear()
        self._where.clear()
        self._queries.clear()

    def add(self, key: str, context: str, vector: np.ndarray, query: str = "") -> None:
        """Index ``vector`` (normalised float32) for ``key`` under ``context``; re-adding replaces."""
        self.add_many([(key, context, vector, query)])

    def add_many(self, items: list[tuple[str, str, np.ndarray, str]]) -> None:
        """Index many ``(key, context, vector, query)`` at once: one faiss call per context."""
        groups: dict[str, list[tuple[str, np.ndarray]]] = {}
        for key, context, vector, query in items:
            if key in self._where:
                if self._where[key][0] == context:
                    continue  # the same entry replayed from the store's change log
                self.remove(key)
            groups.setdefault(context, []).append((key, vector))
            self._queries[key] = query
        for context, group in groups.items():
            self._add_group(context, group)

    def _add_group(self, context: str, group: list[tuple[str, np.ndarray]]) -> None:
        import numpy as np

        shard = self._shards.get(context)
        if shard is None:
            shard = self._shards[context] = _Shard(self._flat())
        ids = np.arange(self._next_id, self._next_id + len(group), dtype=np.int64)
        self._next_id += len(group)
        matrix = np.vstack([np.asarray(v, dtype=np.float32).reshape(1, -1) for _, v in group])
        shard.index.add_with_ids(matrix, ids)
        for ident, (key, _) in zip(ids.tolist(), group, strict=True):
            shard.keys[ident] = key
            self._where[key] = (context, ident)
        size = len(shard.keys)
        if size >= self.ivf_from and (shard.trained_at == 0 or size >= 4 * shard.trained_at):
            self._retrain(context, shard)

    def remove(self, key: str) -> None:
        """Drop ``key`` from its shard (a real removal: both index kinds support it)."""
        import numpy as np

        where = self._where.pop(key, None)
        self._queries.pop(key, None)
        if where is None:
            return
        context, ident = where
        shard = self._shards[context]
        del shard.keys[ident]
        if not shard.keys:
            del self._shards[context]
        else:
            shard.index.remove_ids(np.array([ident], dtype=np.int64))

    def search(self, context: str, vector: np.ndarray, k: int) -> list[tuple[str, float, str]]:
        """Up to ``k`` ``(key, cosine, query)`` in ``context``, most similar first."""
        import numpy as np

        shard = self._shards.get(context)
        if shard is None:
            return []
        scores, ids = shard.index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)
        found = []
        for score, ident in zip(scores[0], ids[0], strict=True):
            key = shard.keys.get(int(ident))
            if key is not None:
                found.append((key, float(score), self._queries.get(key, "")))
        return found

    def vectors(self, keys: list[str]) -> np.ndarray:
        """The stored vectors of ``keys`` (rows in order; every key must be indexed)."""
        import numpy as np

        rows = np.empty((len(keys), self.dimension), dtype=np.float32)
        for row, key in enumerate(keys):
            context, ident = self._where[key]
            rows[row] = self._shards[context].index.reconstruct(ident)
        return rows

    def _flat(self) -> Any:
        import faiss

        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    def _retrain(self, context: str, shard: _Shard) -> None:
        """Move ``shard`` into a freshly trained IVF index (about sqrt(n) cells)."""
        import faiss
        import numpy as np

        ids = np.fromiter(shard.keys, dtype=np.int64, count=len(shard.keys))
        vectors = np.vstack([shard.index.reconstruct(int(i)) for i in ids])
        cells = max(16, int(np.sqrt(len(ids))))
        ivf = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(self.dimension), self.dimension, cells, faiss.METRIC_INNER_PRODUCT
        )
        ivf.cp.min_points_per_centroid = 1  # quiet: training on fewer than 39 points a cell is fine here
        ivf.train(vectors)
        ivf.nprobe = min(self.nprobe, cells)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # SWIG: stubs lack it
        ivf.add_with_ids(vectors, ids)
        self._shards[context] = _Shard(ivf, len(ids), shard.keys)
