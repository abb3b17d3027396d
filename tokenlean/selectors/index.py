"""Inner-product vector indexes over faiss: exact for small pools, approximate above a size.

Paper context: KATE (Liu et al., 2022) retrieves demonstrations by embedding similarity; at pool
sizes in the tens of thousands an exact scan still costs only a few milliseconds, but it grows
linearly, so above ``exact_threshold`` vectors the ``auto`` kind switches to HNSW (Malkov &
Yashunin, 2018). Known failure mode: an approximate index can miss a true nearest neighbour
(recall < 1), and HNSW degrades on many exact-duplicate vectors; the benchmark reports recall
against the exact index so the trade is visible.

Vectors are L2-normalised, so inner product is cosine similarity.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tokenlean.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEFAULT_EXACT_THRESHOLD", "IndexKind", "VectorIndex", "resolve_kind"]

IndexKind = Literal["auto", "flat", "hnsw", "ivf"]
DEFAULT_EXACT_THRESHOLD = 20_000
_KINDS = ("auto", "flat", "hnsw", "ivf")


def resolve_kind(kind: str, size: int, exact_threshold: int = DEFAULT_EXACT_THRESHOLD) -> str:
    """The concrete index kind for a pool of ``size`` vectors (``auto`` decides by size)."""
    if kind not in _KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; known: {', '.join(_KINDS)}", param="index")
    if kind != "auto":
        return kind
    return "flat" if size <= exact_threshold else "hnsw"


class VectorIndex:
    """A faiss inner-product index with the settings tokenlean uses, plus save and load.

    ``hnsw_m``/``ef_search`` trade build time and memory for recall; ``nprobe`` does the same for
    IVF. An IVF index must be trained, so it is built from the first batch of vectors it sees
    (at least ``39 * nlist`` vectors give faiss enough points per centroid).
    """

    def __init__(
        self,
        dimension: int,
        *,
        kind: str = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 96,
        nprobe: int = 16,
    ) -> None:
        if kind not in ("flat", "hnsw", "ivf"):
            raise ConfigError(f"index kind must be flat, hnsw or ivf, not {kind!r}", param="index")
        self.dimension = dimension
        self.kind = kind
        self.hnsw_m, self.ef_construction, self.ef_search, self.nprobe = (
            hnsw_m,
            ef_construction,
            ef_search,
            nprobe,
        )
        self._index: Any = None if kind == "ivf" else self._empty()

    def _empty(self) -> Any:
        import faiss

        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dimension)
        index = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _trained_ivf(self, vectors: np.ndarray) -> Any:
        import faiss

        nlist = max(1, min(int(4 * len(vectors) ** 0.5), len(vectors) // 39))
        quantizer = faiss.IndexFlatIP(self.dimension)
        index = faiss.IndexIVFFlat(quantizer, self.dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(self.nprobe, nlist)
        return index

    @property
    def size(self) -> int:
        """Number of vectors indexed."""
        return 0 if self._index is None else int(self._index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        """Append ``vectors``; their ids continue from the current size."""
        import numpy as np

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ConfigError(f"expected vectors of dimension {self.dimension}, got shape {vectors.shape}")
        if len(vectors) == 0:
            return
        if self._index is None:
            self._index = self._trained_ivf(vectors)
        self._index.add(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids of the ``k`` best matches per query row; id -1 pads missing hits."""
        import numpy as np

        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        if self.size == 0 or k <= 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores, ids = self._index.search(queries, min(k, self.size))
        return scores, ids

    def save(self, path: str | Path) -> None:
        """Write the index with faiss's own format (an HNSW graph is saved, not rebuilt)."""
        import faiss

        if self._index is None:
            raise ConfigError("cannot save an empty IVF index: it has not been trained yet")
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: str | Path, *, kind: str, dimension: int) -> VectorIndex:
        """Read an index written by ``save``."""
        import faiss

        index = cls(dimension, kind=kind)
        index._index = faiss.read_index(str(path))
        if kind == "hnsw":
            index._index.hnsw.efSearch = index.ef_search
        elif kind == "ivf":
            index._index.nprobe = min(index.nprobe, index._index.nlist)
        return index
