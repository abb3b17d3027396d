"""``presence_penalty``, ``frequency_penalty`` and ``logit_bias`` for the embedded backend.

OpenAI's definition, applied to one row's logits before each choice (a ``RowDecoder`` shaper):
``logit[j] += bias[j] - frequency * count[j] - presence * (count[j] > 0)``, where ``count`` counts
token ``j`` among the tokens this row generated so far (the prompt does not count, as in OpenAI's
and vLLM's samplers). Drafting is off for such rows: a draft is verified against the model's
plain distribution, which these fields change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Request

__all__ = ["Penalties", "penalties_for"]


class Penalties:
    """One request's penalties and biases; stateless between steps, so rows share one."""

    def __init__(self, presence: float, frequency: float, bias: Mapping[int, float]) -> None:
        self.presence, self.frequency = presence, frequency
        self.bias_ids, self.bias_values = list(bias), list(bias.values())

    def shape(self, logits: Any, token_ids: list[int]) -> Any:
        """``logits`` (1-D) with the biases added and the penalties for ``token_ids`` subtracted."""
        import torch

        logits = logits.clone()
        if self.bias_ids:
            logits[self.bias_ids] += torch.tensor(self.bias_values, dtype=logits.dtype)
        if token_ids and (self.presence or self.frequency):
            counts = torch.bincount(torch.tensor(token_ids), minlength=logits.shape[-1])[: logits.shape[-1]]
            counts = counts.to(logits.dtype)
            logits -= self.frequency * counts + self.presence * (counts > 0).to(logits.dtype)
        return logits

    def accept(self, token: int) -> None:
        """Nothing to record: the counts come from the row's tokens."""


def penalties_for(request: Request, vocab_size: int) -> Penalties | None:
    """The request's penalties (from ``extra``, where the wire layer puts them); None when neutral."""
    presence = _number(request.extra.get("presence_penalty"), "presence_penalty")
    frequency = _number(request.extra.get("frequency_penalty"), "frequency_penalty")
    bias = _bias(request.extra.get("logit_bias"), vocab_size)
    if not presence and not frequency and not bias:
        return None
    return Penalties(presence, frequency, bias)


def _number(value: Any, name: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -2 <= value <= 2:
        raise BadRequestError(f"{name}: a number from -2 to 2 is required", param=name)
    return float(value)


def _bias(value: Any, vocab_size: int) -> dict[int, float]:
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequestError("logit_bias: an object of token id -> bias is required", param="logit_bias")
    bias: dict[int, float] = {}
    for key, amount in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            token = -1
        if not 0 <= token < vocab_size:
            raise BadRequestError(f"logit_bias: {key!r} is not a token id of this model", param="logit_bias")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not -100 <= amount <= 100:
            raise BadRequestError(
                f"logit_bias: the bias of {key} must be from -100 to 100", param="logit_bias"
            )
        bias[token] = float(amount)
    return bias
