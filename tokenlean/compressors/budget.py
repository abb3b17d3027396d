"""The budget controller: how many tokens each part of the prompt may keep.

After LLMLingua (Jiang et al., EMNLP 2023, section 3.1) and LongLLMLingua (Jiang et al., ACL 2024,
sections 4.1-4.3). The instruction and the question are kept whole; what is left of the budget
goes to the context blocks in two levels:

- coarse: blocks are taken in rank order (most useful first) until they hold ``slack`` times the
  context budget; the rest are dropped whole, because deleting one irrelevant document is cheaper
  and safer than thinning ten of them;
- fine: each kept block gets a keep rate, gentler for better-ranked blocks (LongLLMLingua's dynamic
  compression ratio: rates spread linearly by ``dynamic`` around the mean), so that the kept
  tokens add up to the context budget. The token-level pruner then meets each block's rate.

``fit_selection`` closes the loop in the target tokenizer: the pruner counts scorer tokens, the
reading model counts its own, so the final selection is trimmed or topped up by unit score until
the rendered prompt is within a few tokens of the target.

Known failure mode: the coarse level trusts the ranking; a relevant block ranked last is dropped
whole however much budget the fine level could have found for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BudgetPlan", "fit_selection", "plan_budget"]


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """Which blocks survive the coarse level (best first) and the keep rate of each."""

    kept: tuple[int, ...]
    rates: dict[int, float]
    context_budget: float


def plan_budget(
    block_tokens: Sequence[int],
    order: Sequence[int],
    context_budget: float,
    *,
    protected_tokens: Sequence[int] | None = None,
    slack: float = 2.0,
    dynamic: float = 0.3,
) -> BudgetPlan:
    """Coarse selection along ``order`` and per-block keep rates summing to ``context_budget``.

    Blocks holding protected tokens are always kept, at least at the rate their protected
    tokens need. ``context_budget`` and ``block_tokens`` are in scorer tokens.
    """
    protected = list(protected_tokens or [0] * len(block_tokens))
    must = [i for i in order if protected[i] > 0]
    kept: list[int] = list(must)
    held = sum(block_tokens[i] for i in kept)
    for index in order:
        if held >= context_budget * slack or context_budget <= 0:
            break
        if index not in kept and block_tokens[index] > 0:
            kept.append(index)
            held += block_tokens[index]
    kept.sort(key=list(order).index)
    floors = {i: protected[i] / block_tokens[i] if block_tokens[i] else 1.0 for i in kept}
    rates = _spread_rates(
        [block_tokens[i] for i in kept],
        floors=[floors[i] for i in kept],
        budget=context_budget,
        dynamic=dynamic,
    )
    return BudgetPlan(tuple(kept), dict(zip(kept, rates, strict=True)), context_budget)


def _spread_rates(sizes: list[int], *, floors: list[float], budget: float, dynamic: float) -> list[float]:
    """Rates ``clip(tau * (1 + dynamic * (1 - 2 r / (K - 1))), floor, 1)`` with tau set by bisection."""
    k = len(sizes)
    if k == 0:
        return []
    weights = np.array([1 + dynamic * (1 - 2 * r / (k - 1)) if k > 1 else 1.0 for r in range(k)])
    size = np.array(sizes, dtype=float)
    floor = np.array(floors)

    def rates_for(tau: float) -> np.ndarray:
        return np.clip(tau * weights, floor, 1.0)

    lo, hi = 0.0, 1.0 / max(weights.min(), 1e-6)
    for _ in range(40):
        mid = (lo + hi) / 2
        if float((rates_for(mid) * size).sum()) > budget:
            hi = mid
        else:
            lo = mid
    return [float(r) for r in rates_for(lo)]


def fit_selection(
    keep: list[np.ndarray],
    scores: list[np.ndarray],
    costs: list[np.ndarray],
    locked: list[np.ndarray],
    count: Callable[[list[np.ndarray]], int],
    target: int,
    *,
    tolerance: float = 0.02,
    rounds: int = 6,
) -> list[np.ndarray]:
    """Trim or top up per-unit ``keep`` masks until ``count(keep)`` is within ``tolerance`` of ``target``.

    Units are removed lowest score first and added back highest score first; ``locked`` units
    (protected, or in blocks the coarse level dropped) never change. ``costs`` are scorer tokens,
    used to guess how many units to move before the next exact ``count``.
    """
    keep = [k.copy() for k in keep]
    slack = max(2, int(target * tolerance))
    flat = [
        (float(s), b, u)
        for b, (sc, lk) in enumerate(zip(scores, locked, strict=True))
        for u, s in enumerate(sc)
        if not lk[u]
    ]
    flat.sort()
    for _ in range(rounds):
        now = count(keep)
        gap = now - target
        if abs(gap) <= slack:
            break
        if gap > 0:
            candidates = [(s, b, u) for s, b, u in flat if keep[b][u]]
        else:
            candidates = [(s, b, u) for s, b, u in reversed(flat) if not keep[b][u]]
        moved = 0.0
        for _, b, u in candidates:
            if moved >= abs(gap) - slack / 2:
                break
            keep[b][u] = not keep[b][u]
            moved += float(costs[b][u])
        if not candidates:
            break
    return keep
