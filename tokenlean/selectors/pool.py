"""``DemoPool``: a named set of demonstrations, their embeddings and a faiss index over them.

Paper context: KATE (Liu et al., 2022) picks in-context examples by sentence-embedding
similarity to the query. The pool embeds every example once (MiniLM by default), keeps the
vectors (MMR needs them) and an index (``index.py``); ``save``/``load`` round-trip all three, so
a restart never re-embeds. Known failure mode: vectors from one embedder are meaningless to
another, so the embedder's identity is stored and a mismatch on load is an error, not a silent
drop in quality.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenlean.errors import ConfigError
from tokenlean.selectors.examples import Example, load_examples, write_examples_jsonl
from tokenlean.selectors.index import DEFAULT_EXACT_THRESHOLD, VectorIndex, resolve_kind

if TYPE_CHECKING:
    import numpy as np

    from tokenlean.embeddings import Embedder

__all__ = ["DemoPool", "embedder_id"]

_FORMAT = 1


def embedder_id(embedder: Embedder) -> str:
    """A stable name for an embedder (its model folder), stored with saved vectors."""
    path = getattr(embedder, "path", None)
    if path is not None:
        path = Path(path)
        return f"{path.parent.name}/{path.name}"
    return type(embedder).__name__


class DemoPool:
    """Examples plus their L2-normalised vectors, searchable by cosine similarity.

    ``index`` is ``auto`` (exact below ``exact_threshold`` vectors, HNSW above), ``flat``,
    ``hnsw`` or ``ivf``. ``embedder`` is only loaded when a query or new example must be
    embedded, so a pool loaded from disk costs no model load until it is queried.
    """

    def __init__(
        self,
        name: str,
        examples: Sequence[Example],
        vectors: np.ndarray,
        *,
        embedder: Embedder | None = None,
        index: str = "auto",
        exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
        embedder_name: str | None = None,
        _built_index: VectorIndex | None = None,
    ) -> None:
        import numpy as np

        if len(examples) != len(vectors):
            raise ConfigError(f"pool {name!r}: {len(examples)} examples but {len(vectors)} vectors")
        self.name = name
        self.examples: list[Example] = list(examples)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index_option = index
        self.exact_threshold = exact_threshold
        self._embedder = embedder
        self.embedder_name = embedder_name or (embedder_id(embedder) if embedder is not None else None)
        self._lock = threading.RLock()
        self._labels: tuple[str, ...] | None = None
        self._index = _built_index or self._build_index(len(self.examples))

    # construction -------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        name: str,
        examples: Sequence[Example],
        *,
        embedder: Embedder | None = None,
        index: str = "auto",
        exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
    ) -> DemoPool:
        """Embed ``examples`` (their inputs) and index them."""
        embedder = embedder or _default_embedder()
        vectors = _embed(embedder, [e.input for e in examples])
        return cls(name, examples, vectors, embedder=embedder, index=index, exact_threshold=exact_threshold)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        name: str | None = None,
        input_key: str = "input",
        output_key: str = "output",
        label_key: str | None = "label",
        embedder: Embedder | None = None,
        index: str = "auto",
        exact_threshold: int = DEFAULT_EXACT_THRESHOLD,
    ) -> DemoPool:
        """Load a JSONL or CSV file of examples and build the pool (named after the file by default)."""
        examples = load_examples(path, input_key=input_key, output_key=output_key, label_key=label_key)
        return cls.build(
            name or Path(path).stem, examples, embedder=embedder, index=index, exact_threshold=exact_threshold
        )

    def _build_index(self, size: int) -> VectorIndex:
        kind = resolve_kind(self.index_option, size, self.exact_threshold)
        index = VectorIndex(self.vectors.shape[1] if self.vectors.ndim == 2 else self._dimension(), kind=kind)
        index.add(self.vectors.reshape(-1, index.dimension))
        return index

    def _dimension(self) -> int:
        if self._embedder is None:
            raise ConfigError(f"pool {self.name!r} is empty and has no embedder to tell its dimension")
        return int(self._embedder.dimension)

    # queries ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def index_kind(self) -> str:
        """The concrete index in use: ``flat``, ``hnsw`` or ``ivf``."""
        return self._index.kind

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct labels in the pool, sorted (empty when no example has one)."""
        if self._labels is None:  # computed once: label balance asks on every query
            self._labels = tuple(sorted({e.label for e in self.examples if e.label is not None}))
        return self._labels

    @property
    def embedder(self) -> Embedder:
        """The embedder for queries, loaded on first use."""
        if self._embedder is None:
            self._embedder = _default_embedder()
            found = embedder_id(self._embedder)
            if self.embedder_name is not None and found != self.embedder_name:
                raise ConfigError(f"pool {self.name!r} was embedded with {self.embedder_name}, not {found}")
            self.embedder_name = found
        return self._embedder

    def embed_query(self, text: str) -> np.ndarray:
        """The query's vector, shape ``(dimension,)``."""
        vector: np.ndarray = _embed(self.embedder, [text])[0]
        return vector

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine scores and ids of the ``n`` nearest examples, best first (ids of hits only)."""
        with self._lock:
            scores, ids = self._index.search(query.reshape(1, -1), n)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def search_many(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine scores and ids, shape ``(len(queries), n)``, in one index call (id -1 pads)."""
        with self._lock:
            return self._index.search(queries, n)

    # updates and persistence --------------------------------------------------------------

    def add(self, examples: Sequence[Example]) -> None:
        """Embed and append ``examples``; the index grows in place (rebuilt if ``auto`` changes kind)."""
        import numpy as np

        if not examples:
            return
        vectors = _embed(self.embedder, [e.input for e in examples])
        with self._lock:
            self.examples.extend(examples)
            self._labels = None
            self.vectors = np.concatenate([self.vectors.reshape(-1, vectors.shape[1]), vectors])
            wanted = resolve_kind(self.index_option, len(self.examples), self.exact_threshold)
            if wanted != self._index.kind:
                self._index = self._build_index(len(self.examples))
            else:
                self._index.add(vectors)

    def save(self, folder: str | Path) -> Path:
        """Write examples, vectors, index and metadata to ``folder`` (``meta.json`` last)."""
        import numpy as np

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            write_examples_jsonl(self.examples, folder / "examples.jsonl")
            np.save(folder / "vectors.npy", self.vectors)
            self._index.save(folder / "index.faiss")
            meta = {
                "format": _FORMAT,
                "name": self.name,
                "count": len(self.examples),
                "dimension": int(self._index.dimension),
                "embedder": self.embedder_name,
                "index": self.index_option,
                "index_kind": self._index.kind,
                "exact_threshold": self.exact_threshold,
            }
        (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(
        cls, folder: str | Path, *, embedder: Embedder | None = None, name: str | None = None
    ) -> DemoPool:
        """Read a pool written by ``save``: nothing is re-embedded and the index is not rebuilt."""
        import numpy as np

        folder = Path(folder)
        meta = _read_meta(folder)
        examples = load_examples(folder / "examples.jsonl")
        vectors = np.load(folder / "vectors.npy")
        index = VectorIndex.load(folder / "index.faiss", kind=meta["index_kind"], dimension=meta["dimension"])
        if not len(examples) == len(vectors) == index.size == meta["count"]:
            raise ConfigError(
                f"saved pool {folder} is inconsistent (examples, vectors and index differ in size)"
            )
        if embedder is not None and meta["embedder"] and embedder_id(embedder) != meta["embedder"]:
            raise ConfigError(
                f"pool {folder} was embedded with {meta['embedder']}, not {embedder_id(embedder)}"
            )
        return cls(
            name or meta["name"],
            examples,
            vectors,
            embedder=embedder,
            index=meta["index"],
            exact_threshold=meta["exact_threshold"],
            embedder_name=meta["embedder"],
            _built_index=index,
        )


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{folder} is not a saved demonstration pool: {exc}", param="path") from exc
    if meta.get("format") != _FORMAT:
        raise ConfigError(f"{folder}: unsupported pool format {meta.get('format')!r}", param="path")
    return meta


def _default_embedder() -> Embedder:
    from tokenlean.embeddings import shared_embedder

    return shared_embedder()


def _embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    import numpy as np

    if not texts:
        return np.zeros((0, int(embedder.dimension)), dtype=np.float32)
    return np.ascontiguousarray(embedder.embed(texts), dtype=np.float32)
