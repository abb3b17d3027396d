"""``CacheEmbedder``: MiniLM with its top layers replaced by ones fine-tuned on near-miss pairs.

The loader a fine-tuned cache embedder would ship with, kept in bench/ because the measured
embedder did not earn a place in the cache (bench/cache_finetune.py: on QQP val its plain cosine
hit 33.3% of duplicates at <= 2% false hits, below the shipped head's ~34-36%). The weights file
(``bench/cache_finetune.py --out``) holds only the top layers as float16 (7.1 MB for two); the
bottom layers, tokenizer and pooling are the installed MiniLM's shared model, so the extra memory
is the top layers alone. With the stock top layers it reproduces ``shared_embedder`` (cosine
1.0000 on a check of three texts). Its vectors are not comparable with stock MiniLM vectors:
``name`` (a hash of the weights) is what a cache would key its index by if it were wired in.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenlean.embeddings import SentenceTransformerEmbedder, shared_embedder

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CACHE_EMBEDDER_PATH", "CacheEmbedder", "cache_embedder", "pool", "run_layers", "tokenize"]

CACHE_EMBEDDER_PATH = Path.home() / ".cache" / "tokenlean" / "bench" / "cache_embedder.npz"
LAYERS = 6  # all-MiniLM-L6-v2


def tokenize(tokenizer: Any, texts: list[str], max_tokens: int) -> tuple[Any, Any]:
    """Word-piece ids and attention mask, padded to the longest text (as sentence-transformers does)."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def run_layers(bert: Any, layers: Any, hidden: Any, mask: Any) -> Any:
    """``hidden`` through ``layers`` with BERT's own bidirectional mask for ``mask``."""
    from transformers.masking_utils import create_bidirectional_mask

    attention = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=mask)
    for layer in layers:
        out = layer(hidden, attention_mask=attention)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def pool(hidden: Any, mask: Any) -> Any:
    """MiniLM's sentence vector: the mean of the real tokens' states, L2-normalised."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, dim=-1)


class CacheEmbedder:
    """The shared MiniLM's bottom layers, then the fine-tuned top layers (see module doc)."""

    def __init__(
        self, path: str | Path | None = None, base: SentenceTransformerEmbedder | None = None
    ) -> None:
        import numpy as np
        import torch

        self.path = Path(path) if path is not None else CACHE_EMBEDDER_PATH
        self.base = base or shared_embedder()
        model: Any = self.base._model
        self._tokenizer = model.tokenizer
        self._max_tokens = int(model.max_seq_length)
        self._bert: Any = model[0].auto_model
        raw = self.path.read_bytes()
        with np.load(self.path, allow_pickle=False) as stored:
            top = int(stored["top"])
            state = {k: torch.from_numpy(stored[k].astype(np.float32)) for k in stored.files if k != "top"}
        self._bottom = LAYERS - top
        self._top = torch.nn.ModuleList(
            [copy.deepcopy(layer) for layer in self._bert.encoder.layer[self._bottom :]]
        )
        self._top.load_state_dict(state, strict=True)
        self._top.eval()
        self.dimension = self.base.dimension
        self.name = f"minilm-l6-top{top}-{hashlib.sha256(raw).hexdigest()[:12]}"
        """Which vectors these are: stored vectors are only compared with vectors of the same name."""
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors of ``texts`` from the fine-tuned top layers."""
        import numpy as np
        import torch

        out = []
        with self._lock, torch.inference_mode():
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            for start in range(0, len(order), self.base.batch_size):
                chunk = [texts[i] for i in order[start : start + self.base.batch_size]]
                ids, mask = tokenize(self._tokenizer, chunk, self._max_tokens)
                hidden = self._bert.embeddings(input_ids=ids)
                hidden = run_layers(self._bert, self._bert.encoder.layer[: self._bottom], hidden, mask)
                out.append(pool(run_layers(self._bert, self._top, hidden, mask), mask).numpy())
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        if texts:
            vectors[order] = np.vstack(out)
        return vectors


@lru_cache(maxsize=4)
def cache_embedder(path: str | None = None) -> CacheEmbedder:
    """One cache embedder per weights file for the whole process."""
    return CacheEmbedder(path)
