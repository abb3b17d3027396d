"""The adaptive switch: how long a draft to make at each step, and when a drafter stops paying.

Why: a verification step over ``k`` drafted tokens costs more than a plain one-token step and
yields ``1 + accepted`` tokens, so a draft is worth making only when it is likely to be accepted.
How likely depends mostly on how well the draft's source matches the text so far: in 36 recorded
greedy answers of SmolLM2-135M a continuation found after a 1-token match was right on its first
token 15% (open chat) to 34% (input-grounded) of the time, after a 2-token match about 60%, after
6 or more matched tokens 80-95%. Once the first drafted token is right, the next ones
usually are too (70-95%): the model is copying. So the switch keeps, per request and drafter:

- a first-token acceptance ``p`` for each match-quality class (``quality_class``: a drafter
  without a match length, such as a draft model, is class 0), from a prior that the request's
  own steps soon outweigh;
- a continuation acceptance ``a`` (the chance that a drafted token is kept given the one before
  it was), shared by the classes.

A ``k``-token draft is then expected to yield ``1 + p (1 - a^k) / (1 - a)`` tokens (the geometric
model of Leviathan et al., 2023, section 3.4, with its own first step) at a cost, in plain decode
steps, of ``1 + step_cost + verify_step_cost + (verify_cost + draft_cost) k``: the wider pass has a
fixed part and a part per token, and a draft model adds its own. Each step drafts the ``k`` with
the best ratio, or nothing when that ratio is below ``min_gain``. A drafter is switched off for the
rest of the request when every class it has drafted in no longer pays after ``warmup_steps``
steps (nothing it finds is worth checking), or from the start when it could not pay even if always
right.

The decision uses token counts and fixed cost ratios, not wall-clock time, so it is the same on a
loaded machine as on an idle one, and a seeded request stays reproducible. Failure mode: the cost
ratios are estimates for one machine (measured on the shared EPYC with oneDNN-packed weights,
see ``packed.py``; with torch's default matmul a verification pass has a fixed extra of about 0.5
plain steps instead of 0.12, ``DraftPolicy.resolve``); wrong ratios move the break-even point,
not the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AdaptiveSwitch", "expected_gain", "quality_class"]

FIRST_PRIORS = (0.5, 0.3, 0.6, 0.8, 0.9)
"""Prior first-token acceptance per class: no match length, 1, 2, 3-5, 6+ matched tokens."""


def quality_class(matched: int) -> int:
    """The class of a draft whose source agreed with the last ``matched`` tokens (0: not known)."""
    if matched <= 0:
        return 0
    return 1 if matched == 1 else 2 if matched == 2 else 3 if matched <= 5 else 4


def expected_gain(first: float, further: float, k: int, cost: float, fixed: float = 0.0) -> float:
    """Tokens per plain-step time of a ``k``-token draft (``k = 0``: a plain step, 1.0).

    ``first``: chance the first drafted token is kept; ``further``: each next one given the one
    before was; ``cost`` per drafted token and ``fixed`` per step, in plain decode steps.
    """
    if k <= 0:
        return 1.0
    kept = first * (k if further >= 1.0 else (1.0 - further**k) / (1.0 - further))
    return (1.0 + kept) / (1.0 + fixed + cost * k)


@dataclass(slots=True)
class AdaptiveSwitch:
    """Per-request, per-drafter bookkeeping: acceptance by match quality, draft length, on/off."""

    verify_cost: float = 0.05
    verify_step_cost: float = 0.12
    draft_cost: float = 0.0
    step_cost: float = 0.0
    min_gain: float = 1.05
    warmup_steps: int = 3
    max_draft: int = 16
    first_priors: tuple[float, ...] = FIRST_PRIORS
    prior_weight: float = 2.0
    further_prior: float = 0.8
    further_weight: float = 4.0
    on: bool = True
    switched_off: bool = False
    drafted: int = 0
    accepted: int = 0
    steps: int = 0
    _tried: list[int] = field(default_factory=list)  # steps per class
    _first: list[int] = field(default_factory=list)  # of which the first drafted token was kept
    _kept: int = 0  # drafted tokens kept after a kept first one
    _broken: int = 0  # steps whose draft broke off after a kept first one

    def __post_init__(self) -> None:
        self._tried = [0] * len(self.first_priors)
        self._first = [0] * len(self.first_priors)
        best = expected_gain(1.0, 1.0, self.max_draft, self.cost, self.fixed_cost)
        if best < self.min_gain:
            self.on, self.switched_off = False, True  # cannot pay even when every drafted token is right

    @property
    def cost(self) -> float:
        """Cost of one drafted token, in plain decode steps."""
        return self.verify_cost + self.draft_cost

    @property
    def fixed_cost(self) -> float:
        """Cost of a drafting step beyond a plain step, before its tokens."""
        return self.verify_step_cost + self.step_cost

    def first(self, quality: int) -> float:
        """Estimated chance that a draft of class ``quality`` has its first token accepted."""
        prior = self.first_priors[quality] * self.prior_weight
        return (prior + self._first[quality]) / (self.prior_weight + self._tried[quality])

    def further(self) -> float:
        """Estimated chance that a drafted token is accepted, given the one before it was."""
        prior = self.further_prior * self.further_weight
        return (prior + self._kept) / (self.further_weight + self._kept + self._broken)

    def gain(self, quality: int, k: int) -> float:
        """Expected speed of a ``k``-token draft of class ``quality`` relative to plain decoding."""
        return expected_gain(self.first(quality), self.further(), k, self.cost, self.fixed_cost)

    def length(self, quality: int, limit: int | None = None) -> int:
        """The draft length that pays best for class ``quality`` (0: do not draft this step)."""
        if not self.on:
            return 0
        top = self.max_draft if limit is None else min(limit, self.max_draft)
        first, further = self.first(quality), self.further()
        best, best_gain = 0, self.min_gain
        for k in range(1, top + 1):
            value = expected_gain(first, further, k, self.cost, self.fixed_cost)
            if value > best_gain:
                best, best_gain = k, value
        return best

    def record(self, quality: int, drafted: int, accepted: int) -> None:
        """Count one verification step: ``drafted`` tokens of class ``quality``, ``accepted`` kept."""
        self.drafted += drafted
        self.accepted += accepted
        self.steps += 1
        self._tried[quality] += 1
        if accepted:
            self._first[quality] += 1
            self._kept += accepted - 1
            self._broken += int(accepted < drafted)
        # failing 1-token matches alone never switch a drafter off: in open chat most of them fail
        # while its rarer long matches still pay
        tried = [q for q, count in enumerate(self._tried) if count]
        if self.steps >= self.warmup_steps and tried != [1] and all(self.length(q) == 0 for q in tried):
            self.on, self.switched_off = False, True

    @property
    def acceptance(self) -> float:
        """Accepted / drafted tokens so far (0 before any draft)."""
        return self.accepted / self.drafted if self.drafted else 0.0
