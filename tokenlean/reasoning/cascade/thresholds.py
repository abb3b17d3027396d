"""Thresholds from validation data: the cost/quality curve of one escalation decision.

FrugalGPT (Chen, Zaharia & Zou, 2023) picks the cascade's thresholds to optimise quality under a
budget. For one decision (cheap tier -> next tier) and labelled validation rows (the scorer's
confidence, whether the cheap answer was correct, whether the next tier's was, what each call
cost) every candidate threshold gives one point of the curve: the share of calls escalated,
the accuracy and the mean cost. Two targets choose a point: *maximise quality within a budget*
(cost or share escalated) and *reach a quality target at least cost*.

Known failure mode: the chosen point is only as good as the validation rows are like live
traffic; a threshold chosen on few rows overfits the curve's noise (choose on one split, check
on another, as ``bench/cascade.py`` does). A cascade of more than two tiers is fitted one
adjacent pair at a time, which ignores how the decisions interact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenlean.errors import ConfigError

__all__ = ["CurvePoint", "choose_threshold", "threshold_curve"]


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """Escalate every answer scored below ``threshold``: what that costs and gives."""

    threshold: float
    escalated: float
    quality: float
    cost: float


def threshold_curve(
    scores: Sequence[float],
    cheap_correct: Sequence[bool],
    strong_correct: Sequence[bool] | None = None,
    *,
    cheap_cost: Sequence[float] | float = 0.0,
    strong_cost: Sequence[float] | float = 1.0,
) -> list[CurvePoint]:
    """One point per distinct threshold, from escalating nothing to escalating everything.

    ``strong_correct`` ``None`` assumes the strong tier is always right (an upper bound on
    quality). A row's cost is its cheap call, plus its strong call when escalated.
    """
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if n == 0 or len(cheap_correct) != n or (strong_correct is not None and len(strong_correct) != n):
        raise ConfigError("threshold_curve: scores and labels must be non-empty and of equal length")
    cheap = np.asarray(cheap_correct, dtype=np.float64)
    strong = np.ones(n) if strong_correct is None else np.asarray(strong_correct, dtype=np.float64)
    c_cost = np.broadcast_to(np.asarray(cheap_cost, dtype=np.float64), (n,))
    s_cost = np.broadcast_to(np.asarray(strong_cost, dtype=np.float64), (n,))
    order = np.argsort(s, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum((strong - cheap)[order])])  # escalating the k lowest
    extra = np.concatenate([[0.0], np.cumsum(s_cost[order])])
    base_quality, base_cost = cheap.mean(), c_cost.mean()
    ordered = s[order]
    points = []
    for k in range(n + 1):
        if 0 < k < n and ordered[k] == ordered[k - 1]:
            continue  # a threshold cannot split equal scores
        threshold = float(ordered[k]) if k < n else float(np.nextafter(ordered[-1], np.inf))
        points.append(
            CurvePoint(threshold, k / n, float(base_quality + gain[k] / n), float(base_cost + extra[k] / n))
        )
    return points


def choose_threshold(
    curve: Sequence[CurvePoint],
    *,
    max_cost: float | None = None,
    max_escalated: float | None = None,
    min_quality: float | None = None,
) -> CurvePoint:
    """The point that meets the target.

    With ``min_quality``: the cheapest point reaching it ("quality target at least cost").
    Otherwise: the best quality within ``max_cost`` and/or ``max_escalated`` ("maximise quality
    within a budget"). Ties go to the cheaper point. ``ConfigError`` if no point qualifies.
    """
    if min_quality is None and max_cost is None and max_escalated is None:
        raise ConfigError("choose a target: min_quality, or a budget (max_cost / max_escalated)")
    allowed = [
        p
        for p in curve
        if (max_cost is None or p.cost <= max_cost + 1e-12)
        and (max_escalated is None or p.escalated <= max_escalated + 1e-12)
    ]
    if min_quality is not None:
        reaching = [p for p in allowed if p.quality >= min_quality - 1e-12]
        if not reaching:
            best = max(allowed or curve, key=lambda p: p.quality)
            raise ConfigError(
                f"quality {min_quality:.4f} is out of reach; the best point gives {best.quality:.4f}"
            )
        return min(reaching, key=lambda p: (p.cost, p.escalated))
    if not allowed:
        raise ConfigError("no threshold fits the budget: even escalating nothing costs more")
    return max(allowed, key=lambda p: (p.quality, -p.cost))
