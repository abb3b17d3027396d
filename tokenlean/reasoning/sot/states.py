"""The router's request encoder: the embedded chat model's hidden state as it starts to answer.

Why not the MiniLM sentence vector the other stages use: whether a request suits a skeleton is a
question about the *answer's* form (independent points or one argument), and a chat model that
has read the request and its own chat template is about to decide exactly that. Measured on
SoT's labelled requests (10-fold held-out ROC AUC of a logistic regression, standardised
features): MiniLM 0.85 on LIMA and 0.96 on Vicuna-80; SmolLM2-135M-Instruct's state after layer
15 of 30 at the last token of the chat-formatted request 0.90 and 0.98. Of the four encodings
compared (layer 15 or 30, last token or mean over tokens) that one ranked best on both sets'
own folds, so it is the one used.

Only the first ``LAYER`` layers run (a hook stops the forward pass), in float32 so that the
features match the ones the weights were trained on whatever the CPU supports. Known cost: one
more copy of the 135M model in memory (about 0.5 GB) and one half-model pass over at most
``MAX_TOKENS`` tokens per routed request (about 100 ms on one torch thread here: with the
embedded model every pass runs on one, see tokenlean.threads).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ENCODING", "LAYER", "MAX_CHARS", "MAX_TOKENS", "HiddenStateEncoder", "shared_state_encoder"]

LAYER = 15
"""Hidden state after this many decoder layers (SmolLM2-135M has 30)."""
MAX_CHARS = 2000
"""A long request is read from its start up to here (its opening says what it asks for)."""
MAX_TOKENS = 192
"""At most this many tokens of the chat-formatted request, counted back from the answer's start."""
ENCODING = f"SmolLM2-135M-Instruct layer {LAYER} last token (chat template, <= {MAX_TOKENS} tokens)"
"""Written into router weights trained on these features, checked when they load."""


class _Stop(Exception):
    """Raised by the layer hook once the wanted state exists: the later layers never run."""


class HiddenStateEncoder:
    """``embed(texts)``: one float32 row per text, the decoder state named by ``ENCODING``.

    The rows are raw states (not normalised): the router's weights fold in the standardisation
    they were trained with.
    """

    def __init__(self, model: str | Path | None = None) -> None:
        self.model_ref = model
        self.dimension = 0
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._captured: Any = None

    def load(self) -> None:
        """Tokenizer and the base model (no LM head), once."""
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModel

            from tokenlean.models import load_pretrained

            self._tokenizer, model = load_pretrained(self.model_ref, AutoModel, torch.float32)
            model.layers[LAYER - 1].register_forward_hook(self._capture)
            self.dimension = int(model.config.hidden_size)
            self._model = model

    def _capture(self, _module: Any, _inputs: Any, output: Any) -> None:
        self._captured = output[0] if isinstance(output, tuple) else output
        raise _Stop

    def embed(self, texts: list[str]) -> np.ndarray:
        """The state at the last position of each chat-formatted text (one pass per text)."""
        import numpy as np
        import torch

        self.load()
        rows = []
        with self._lock, torch.inference_mode():
            for text in texts:
                self._captured = None
                try:
                    self._model(input_ids=torch.tensor([self._chat_ids(text)]))
                except _Stop:
                    pass
                if self._captured is None:
                    raise RuntimeError(f"the model finished without reaching layer {LAYER}")
                rows.append(self._captured[0, -1].float().numpy())
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dimension)

    def _chat_ids(self, text: str) -> list[int]:
        messages = [{"role": "user", "content": text[:MAX_CHARS]}]
        ids = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if not isinstance(ids, list):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)[-MAX_TOKENS:]


_shared: dict[str, HiddenStateEncoder] = {}
_shared_lock = threading.Lock()


def shared_state_encoder(model: str | Path | None = None) -> HiddenStateEncoder:
    """One encoder per model for the whole process."""
    key = str(model or "")
    with _shared_lock:
        if key not in _shared:
            _shared[key] = HiddenStateEncoder(model)
        return _shared[key]
