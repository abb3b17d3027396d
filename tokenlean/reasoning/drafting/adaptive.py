"""The adaptive switch: choose the draft length that pays best, and stop drafting when none pays.

Why: a verification step over ``k`` drafted tokens costs more than a plain one-token step (the
wider forward pass, plus the drafter's own work) and yields ``1 + accepted`` tokens. With costs in
plain decode steps (``c = verify_cost + draft_cost`` per drafted token, plus ``s = step_cost`` per
step for a drafter that must first catch up with the accepted tokens) and a per-token chance
``alpha`` that the next drafted token is accepted given the previous one was (the geometric model
of Leviathan et al., 2023, section 3.4), a step of ``k`` drafted tokens is worth

    gain(k) = (1 - alpha ** (k + 1)) / ((1 - alpha) * (1 + s + c * k))

plain steps per unit of time. ``alpha`` is estimated per request and drafter from the recent
window of steps (accepted tokens are successes, a step that stopped at a rejection one failure),
starting from a prior of 1/2. Each step drafts the ``k`` that maximises the gain; when even the
best ``k`` is worth less than ``min_gain`` after ``warmup_steps``, the drafter is switched off for
the rest of the request. A drafter too costly to pay even if always right (a draft model as slow
as the target) starts switched off.

The decision uses token counts and fixed cost ratios, not wall-clock time, so it is the same on a
loaded machine as on an idle one, and a seeded request stays reproducible. Failure mode: the cost
ratios are estimates (``verify_cost`` defaults to the ~0.12 step per extra token measured for
SmolLM2-135M on one CPU thread; on a GPU it is near 0); a wrong ratio moves the break-even point.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["AdaptiveSwitch", "expected_gain"]


def expected_gain(alpha: float, k: int, cost: float, step_cost: float = 0.0) -> float:
    """Tokens per plain-step time of a ``k``-token draft: acceptance ``alpha``, ``cost`` per token, ``step_cost``."""
    tokens = k + 1.0 if alpha >= 1.0 else (1.0 - alpha ** (k + 1)) / (1.0 - alpha)
    return tokens / (1.0 + step_cost + cost * k)


@dataclass(slots=True)
class AdaptiveSwitch:
    """Per-request, per-drafter bookkeeping: acceptance, the draft length to use, on/off."""

    verify_cost: float = 0.12
    draft_cost: float = 0.0
    step_cost: float = 0.0
    min_gain: float = 1.05
    warmup_steps: int = 2
    window: int = 8
    max_draft: int = 16
    prior_accepted: float = 1.0
    prior_rejected: float = 1.0
    draft_len: int = 1
    on: bool = True
    switched_off: bool = False
    drafted: int = 0
    accepted: int = 0
    steps: int = 0
    _recent: deque[tuple[int, int]] = field(
        default_factory=deque
    )  # (accepted, 1 if a rejection ended the step)

    def __post_init__(self) -> None:
        self.draft_len = self._best_length(self.alpha())
        if expected_gain(1.0, self.max_draft, self.cost, self.step_cost) < self.min_gain:
            self.on, self.switched_off = False, True  # cannot pay even when every drafted token is right

    @property
    def cost(self) -> float:
        """Cost of one drafted token, in plain decode steps."""
        return self.verify_cost + self.draft_cost

    def record(self, drafted: int, accepted: int) -> None:
        """Count one verification step of ``drafted`` tokens of which ``accepted`` were kept."""
        self.drafted += drafted
        self.accepted += accepted
        self.steps += 1
        self._recent.append((accepted, int(accepted < drafted)))
        if len(self._recent) > self.window:
            self._recent.popleft()
        alpha = self.alpha()
        self.draft_len = self._best_length(alpha)
        if self.steps >= self.warmup_steps and self.gain() < self.min_gain:
            self.on, self.switched_off = False, True

    def alpha(self) -> float:
        """Estimated chance that a drafted token is accepted, given the one before it was."""
        successes = self.prior_accepted + sum(a for a, _ in self._recent)
        failures = self.prior_rejected + sum(r for _, r in self._recent)
        return successes / (successes + failures)

    def gain(self) -> float:
        """Expected speed of drafting ``draft_len`` tokens relative to plain decoding."""
        return expected_gain(self.alpha(), self.draft_len, self.cost, self.step_cost)

    def _best_length(self, alpha: float) -> int:
        return max(
            range(1, self.max_draft + 1), key=lambda k: expected_gain(alpha, k, self.cost, self.step_cost)
        )

    @property
    def acceptance(self) -> float:
        """Accepted / drafted tokens so far (0 before any draft)."""
        return self.accepted / self.drafted if self.drafted else 0.0
