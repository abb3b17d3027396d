"""Small KV-cache helpers shared by the single-row decode loop and the draft model.

Speculation rolls the cache back after every verification (rejected draft tokens leave it), so
the cache must support exact cropping. A full-attention ``DynamicCache`` does; a sliding-window
layer (Gemma 3) only after ``activate_past_recording()``, and then it must be cropped (by 0 if
nothing was rejected) after every forward so it trims itself back to its window.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import Any

__all__ = ["cache_length", "crop_to", "forward_tokens", "is_sliding", "new_cache"]


def new_cache(model: Any) -> Any:
    """An empty cache laid out for ``model`` (sliding layers where its config has them), croppable."""
    from transformers import DynamicCache

    cache: Any = DynamicCache(config=model.config)  # its typed methods miss some (activate_past_recording)
    if is_sliding(cache):
        cache.activate_past_recording()
    return cache


def is_sliding(cache: Any) -> bool:
    """True when any layer keeps only a window: such a cache cannot be cut back to any prefix."""
    return any(getattr(layer, "is_sliding", False) for layer in getattr(cache, "layers", ()))


def cache_length(cache: Any) -> int:
    """Tokens the cache holds (for sliding layers: the tokens seen)."""
    return int(cache.get_seq_length())


def crop_to(cache: Any, length: int) -> None:
    """Cut the cache back to its first ``length`` tokens (always calls ``crop``, see module doc)."""
    remove = cache_length(cache) - length
    if remove < 0:
        raise ValueError(f"cannot crop a cache of {cache_length(cache)} tokens to {length}")
    cache.crop(-remove)


def forward_tokens(model: Any, cache: Any, ids: Sequence[int], keep: int = 1) -> Any:
    """Run ``ids`` after what ``cache`` holds; return the logits of the last ``keep`` positions.

    One row, no padding: positions continue from the cache length and no attention mask is
    needed. ``logits_to_keep`` spares the vocabulary projection of a long prefill.
    """
    import torch

    start = cache_length(cache)
    out = model(
        input_ids=torch.tensor([list(ids)], dtype=torch.long),
        position_ids=torch.arange(start, start + len(ids), dtype=torch.long).unsqueeze(0),
        use_cache=True,
        logits_to_keep=keep,
        **{_cache_keyword(type(model)): cache},  # type: ignore[arg-type]  # a class is hashable; the lru_cache stub says no for type[Any]
    )
    return out.logits[0, -keep:, :]


@functools.cache
def _cache_keyword(model_type: Any) -> str:
    """transformers renamed ``past_key_values`` to ``cache``; use whichever this model takes."""
    return "cache" if "cache" in inspect.signature(model_type.forward).parameters else "past_key_values"
