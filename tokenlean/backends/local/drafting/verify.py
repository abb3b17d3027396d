"""Verification of a draft by the target model: which drafted tokens to keep, and the next token.

The target runs once over ``[last token] + draft`` and yields ``len(draft) + 1`` rows of logits:
row ``i`` is the target's distribution for the position of ``draft[i]`` (the last row is the
position after the whole draft).

- Greedy: keep drafted tokens while each equals the target's argmax; the next token is the
  target's argmax at the first mismatch (or after the whole draft). The output is token for token
  what plain greedy decoding gives, up to floating-point differences between a one-token and a
  multi-token forward pass (a near tie can flip; see docs/speculative.md).
- Sampling: the speculative sampling rule (Leviathan et al., 2023, Algorithm 1; Chen et al., 2023):
  accept ``x`` with probability ``min(1, p(x) / q(x))``; on rejection sample from
  ``norm(max(0, p - q))``. Every drafter here is deterministic (``q`` is a point mass on ``x``), so
  that is: accept with probability ``p(x)``, else sample from ``p`` with ``x`` removed. The output
  then has exactly the target's distribution ``p`` (after temperature and top-p).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["verify_greedy", "verify_sampled"]


def verify_greedy(logits: Any, draft: Sequence[int]) -> tuple[int, int]:
    """``(accepted, next_token)`` for greedy decoding; ``logits`` has ``len(draft) + 1`` rows."""
    import torch

    choices = torch.argmax(logits, dim=-1).tolist()
    accepted = 0
    while accepted < len(draft) and choices[accepted] == draft[accepted]:
        accepted += 1
    return accepted, int(choices[accepted])


def verify_sampled(
    logits: Any, draft: Sequence[int], distribution: Callable[[Any], Any], generator: Any = None
) -> tuple[int, int]:
    """``(accepted, next_token)`` by the speculative sampling rule for a point-mass draft.

    ``distribution`` maps a row of logits to the probabilities the request samples from (the
    row decoder's temperature and top-p); ``generator`` is the request's seeded RNG, if any.
    """
    import torch

    for i, token in enumerate(draft):
        probs = distribution(logits[i])
        if float(torch.rand(1, generator=generator)) < float(probs[token]):
            continue
        residual = probs.clone()
        residual[token] = 0.0
        total = float(residual.sum())
        if total <= 0.0:  # p was a point mass on the drafted token: rejection is impossible
            continue
        return i, int(torch.multinomial(residual / total, 1, generator=generator))
    final = distribution(logits[len(draft)])
    return len(draft), int(torch.multinomial(final, 1, generator=generator))
