"""The adaptive switch: keep drafting for a request only while it pays.

Why: a verification step over ``d`` drafted tokens costs more than a plain one-token step (the
wider forward pass, plus the drafter's own work), and it yields ``1 + accepted`` tokens. With
costs measured in plain decode steps, a speculative step is worth

    gain = (1 + accepted) / (1 + (verify_cost + draft_cost) * drafted)

plain steps per unit of time. Over a sliding window of recent speculative steps the switch turns
the drafter off for the rest of the request when the gain falls below ``min_gain``; it also adapts
the draft length (grow after a fully accepted draft, shrink after a rejection), the heuristic
transformers' assisted generation uses.

The decision uses token counts and fixed cost ratios, not wall-clock time, so it is the same on
a loaded machine as on an idle one, and a seeded request stays reproducible. Failure mode: the
cost ratios are estimates (``verify_cost`` defaults to the ~0.1 step per extra token measured for
SmolLM2-135M on a 2-core CPU; it is far smaller on a GPU); a wrong ratio only moves the break-even.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["AdaptiveSwitch"]


@dataclass(slots=True)
class AdaptiveSwitch:
    """Per-request, per-drafter bookkeeping: acceptance counts, draft length, on/off."""

    verify_cost: float = 0.1
    draft_cost: float = 0.0
    min_gain: float = 1.0
    warmup_steps: int = 3
    window: int = 8
    max_draft: int = 8
    draft_len: int = 0
    on: bool = True
    switched_off: bool = False
    drafted: int = 0
    accepted: int = 0
    steps: int = 0
    _recent: deque[tuple[int, int]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.draft_len = self.draft_len or self.max_draft

    def record(self, drafted: int, accepted: int) -> None:
        """Count one verification step of ``drafted`` tokens of which ``accepted`` were kept."""
        self.drafted += drafted
        self.accepted += accepted
        self.steps += 1
        self._recent.append((drafted, accepted))
        if len(self._recent) > self.window:
            self._recent.popleft()
        if accepted >= drafted:
            self.draft_len = min(self.max_draft, self.draft_len + 2)
        else:
            self.draft_len = max(1, self.draft_len - 1)
        if self.steps >= self.warmup_steps and self.gain() < self.min_gain:
            self.on = False
            self.switched_off = True

    def gain(self) -> float:
        """Estimated speed of drafting relative to plain decoding, over the recent window."""
        steps = len(self._recent)
        if not steps:
            return 1.0
        drafted = sum(d for d, _ in self._recent)
        accepted = sum(a for _, a in self._recent)
        return (steps + accepted) / (steps + (self.verify_cost + self.draft_cost) * drafted)

    @property
    def acceptance(self) -> float:
        """Accepted / drafted tokens so far (0 before any draft)."""
        return self.accepted / self.drafted if self.drafted else 0.0
