"""Token counting in the target model's tokenizer.

Budgets (demonstrations that fit in N tokens, compression to N tokens, max_tokens against the
context) must be measured in the tokenizer of the model that will read the prompt, not in words.
``shared_tokenizer`` loads a tokenizer once per folder; the default is the embedded model's.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

__all__ = ["HFTokenCounter", "TokenCounter", "shared_token_counter"]


class TokenCounter(Protocol):
    """Counts tokens of a text in one model's tokenizer."""

    def count(self, text: str) -> int:
        """Number of tokens ``text`` encodes to (no special tokens)."""
        ...


class HFTokenCounter:
    """A transformers tokenizer loaded from a local folder (default: the embedded model)."""

    def __init__(self, model_dir: str | Path | None = None) -> None:
        from transformers import AutoTokenizer

        from tokenlean.models import resolve_model_dir

        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(resolve_model_dir(model_dir)))

    def count(self, text: str) -> int:
        """Number of tokens ``text`` encodes to (no special tokens)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))


_counters: dict[str, HFTokenCounter] = {}
_lock = threading.Lock()


def shared_token_counter(model_dir: str | Path | None = None) -> HFTokenCounter:
    """One counter per tokenizer folder for the whole process."""
    key = str(model_dir or "")
    with _lock:
        if key not in _counters:
            _counters[key] = HFTokenCounter(model_dir)
        return _counters[key]
