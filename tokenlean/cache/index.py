"""``ScopedIndex``: faiss inner-product search, one shard per context key.

A semantic lookup may only match entries with the same context (scope, model, parameters, system
prompt and history), so each context gets its own shard and a search never sees another
context's vectors. A shard starts as an exact ``IndexFlatIP`` and becomes an inverted-file index
(``IndexIVFFlat``, k-means cells, ``nprobe`` cells searched) once it holds ``ivf_from`` vectors,
which keeps a lookup under a millisecond at 100k entries. IVF rather than HNSW because a cache
deletes all the time (expiry, eviction) and IVF removes ids for real, where HNSW can only
tombstone them. IVF is approximate: a true neighbour in an unsearched cell is missed (a miss,
never a wrong hit); the cells are retrained when a shard has grown fourfold since its training.

Training k-means over a large shard takes seconds, and the index is called from the proxy's event
loop: retrained in place, growing one shard to 100k vectors stalled a single add for 5.2 s on this
project's 2-core CPU, and every request in flight with it. Training runs in a worker thread instead
(faiss releases the GIL; one OpenMP thread, so serving keeps the other cores): the shard's vectors
are copied (0.1-0.4 s at 65-85k), the new index is trained and filled from the copy while searches,
adds and removals go on with the old one, and the first call after it is ready adopts it, replaying
what changed meanwhile (longest add 0.04-0.35 s; ``growth_stall`` in bench/cache_latency.py). Until then
lookups search the old index (exact while a shard is still flat), and both are in memory.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ScopedIndex"]

log = logging.getLogger(__name__)


@dataclass
class _Shard:
    """The vectors of one context: a faiss index plus the id ↔ key maps."""

    index: Any
    trained_at: int = 0  # shard size at its last IVF training (or failed try); 0 before any
    keys: dict[int, str] = field(default_factory=dict)
    retraining: _Retraining | None = None


@dataclass(frozen=True)
class _Retraining:
    """An IVF index being built in a worker thread, trained on ``trained_on`` vectors; once the
    future is done it holds exactly the vectors of ``ids``."""

    future: Future[Any]
    ids: np.ndarray
    trained_on: int


CATCH_UP_INLINE = 1024
"""Adds and removals made during a retrain that the adopting call replays itself; more (a bulk load
or a resync while it trained) are replayed in the worker first, so no call stalls on them."""


class ScopedIndex:
    """Vectors grouped by context key; ``search`` looks inside one group only."""

    def __init__(
        self, dimension: int, *, ivf_from: int = 4096, nprobe: int = 16, executor: Executor | None = None
    ) -> None:
        """``executor`` runs the retraining (default: one worker thread, started when first needed)."""
        self.dimension = dimension
        self.ivf_from = ivf_from
        self.nprobe = nprobe
        self._executor = executor
        self._owns_executor = executor is None
        self._retraining: set[str] = set()  # contexts whose shard has a retrain in flight
        self._shards: dict[str, _Shard] = {}
        self._where: dict[str, tuple[str, int]] = {}  # entry key -> (context, id)
        self._queries: dict[str, str] = {}  # entry key -> its query text, for the meaning guard
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def clear(self) -> None:
        """Forget every vector (before a rebuild from a store snapshot); retrains in flight are dropped."""
        self._retraining.clear()
        self._shards.clear()
        self._where.clear()
        self._queries.clear()

    def add(self, key: str, context: str, vector: np.ndarray, query: str = "") -> None:
        """Index ``vector`` (normalised float32) for ``key`` under ``context``; re-adding replaces."""
        self.add_many([(key, context, vector, query)])

    def add_many(self, items: list[tuple[str, str, np.ndarray, str]]) -> None:
        """Index many ``(key, context, vector, query)`` at once: one faiss call per context."""
        self._adopt_retrained()
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
        due = size >= self.ivf_from and (shard.trained_at == 0 or size >= 4 * shard.trained_at)
        if due and shard.retraining is None:
            self._start_retrain(context, shard)

    def remove(self, key: str) -> None:
        """Drop ``key`` from its shard (a real removal: both index kinds support it)."""
        import numpy as np

        self._adopt_retrained()
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

        self._adopt_retrained()
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

        self._adopt_retrained()
        rows = np.empty((len(keys), self.dimension), dtype=np.float32)
        for row, key in enumerate(keys):
            context, ident = self._where[key]
            rows[row] = self._shards[context].index.reconstruct(ident)
        return rows

    def _flat(self) -> Any:
        import faiss

        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    def settle(self) -> None:
        """Wait for every retrain in flight and adopt its index (for benchmarks and tests)."""
        while self._retraining:
            for context in list(self._retraining):
                shard = self._shards.get(context)
                if shard is not None and shard.retraining is not None:
                    wait([shard.retraining.future])
            self._adopt_retrained()

    def close(self) -> None:
        """Stop the retraining worker (started by this index); queued retrains are dropped."""
        if self._owns_executor and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _start_retrain(self, context: str, shard: _Shard) -> None:
        """Copy ``shard``'s vectors and train an IVF index from them in the worker thread."""
        import numpy as np

        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenlean-ivf")
        ids = np.fromiter(shard.keys, dtype=np.int64, count=len(shard.keys))
        vectors = shard.index.reconstruct_batch(ids)
        future = self._executor.submit(self._trained_ivf, vectors, ids)
        shard.retraining = _Retraining(future, ids, len(ids))
        self._retraining.add(context)

    def _adopt_retrained(self) -> None:
        """Swap in every finished retrain, replaying the adds and removals made while it trained."""
        import numpy as np

        for context in [c for c in self._retraining if self._finished(c)]:
            self._retraining.discard(context)
            shard = self._shards.get(context)
            if shard is None or shard.retraining is None:
                continue  # the shard emptied (or the index was cleared) while it trained
            job, shard.retraining = shard.retraining, None
            if job.future.cancelled():
                continue  # closed
            error = job.future.exception()
            if error is not None:
                log.warning("IVF retrain of a cache shard failed; it keeps its index", exc_info=error)
                shard.trained_at = job.trained_on  # tried again after another fourfold growth
                continue
            current = np.fromiter(shard.keys, dtype=np.int64, count=len(shard.keys))
            removed = np.setdiff1d(job.ids, current, assume_unique=True)
            added = np.setdiff1d(current, job.ids, assume_unique=True)
            change = (job.future.result(), removed, shard.index.reconstruct_batch(added), added)
            if len(removed) + len(added) > CATCH_UP_INLINE and self._executor is not None:
                shard.retraining = _Retraining(
                    self._executor.submit(_changed, *change), current, job.trained_on
                )
                self._retraining.add(context)
            else:
                shard.index, shard.trained_at = _changed(*change), job.trained_on

    def _finished(self, context: str) -> bool:
        shard = self._shards.get(context)
        return shard is None or shard.retraining is None or shard.retraining.future.done()

    def _trained_ivf(self, vectors: np.ndarray, ids: np.ndarray) -> Any:
        """A new IVF index (about sqrt(n) cells) trained on and holding ``vectors``; thread-safe."""
        import faiss
        import numpy as np

        faiss.omp_set_num_threads(1)  # this worker thread's own setting: the serving threads keep the rest
        cells = max(16, int(np.sqrt(len(ids))))
        ivf = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(self.dimension), self.dimension, cells, faiss.METRIC_INNER_PRODUCT
        )
        ivf.cp.min_points_per_centroid = 1  # quiet: training on fewer than 39 points a cell is fine here
        ivf.train(vectors)
        ivf.nprobe = min(self.nprobe, cells)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # SWIG: stubs lack it
        ivf.add_with_ids(vectors, ids)
        return ivf


def _changed(index: Any, removed: np.ndarray, vectors: np.ndarray, added: np.ndarray) -> Any:
    """``index`` with the ids ``removed`` taken out and ``vectors`` added under the ids ``added``."""
    if len(removed):
        index.remove_ids(removed)
    if len(added):
        index.add_with_ids(vectors, added)
    return index
