"""One request's drafting: its drafters in order of preference, each behind an adaptive switch.

Per request, ``extra_body={"tokenlean": {"draft": MODE}}`` picks the drafters:

- ``"auto"`` (default): prompt lookup, then retrieval (hints and earlier outputs), then the draft
  model where one is configured; the first that has a draft for this step is used;
- ``"lookup"``, ``"retrieval"``, ``"model"``: that drafter alone;
- ``"off"``: plain decoding.

Each drafter has its own switch, so a draft model that does not pay is turned off while prompt
lookup keeps copying. The session reports one ``Event(stage="draft")`` with the counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from tokenlean.backends.local.drafting.adaptive import AdaptiveSwitch, quality_class
from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.middleware.options import StageOptions, parse_call_options
from tokenlean.middleware.types import Event

__all__ = ["DRAFT_MODES", "DraftOptions", "DraftPolicy", "DraftSession", "Drafter", "parse_draft_mode"]

DRAFT_MODES = ("auto", "off", "lookup", "retrieval", "model")


class DraftOptions(StageOptions):
    """Per-call drafting of the embedded backend: ``{"draft": "lookup"}`` is ``{"draft": {"mode": "lookup"}}``.

    ``true``/``false`` (what YAML reads ``on``/``off`` as) mean ``auto``/``off``.
    """

    nullable: ClassVar[frozenset[str]] = frozenset({"mode"})

    mode: Literal["auto", "off", "lookup", "retrieval", "model"] | None = Field(
        default=None,
        description="Drafters to use: `auto` (prompt lookup, retrieval, then the draft model), one of "
        "`lookup`/`retrieval`/`model` alone, or `off` (plain decoding). Default: the backend's `draft`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if not isinstance(value, str | bool):
            return value
        mode = cls._yaml_word(value)
        if mode not in DRAFT_MODES:  # named as the option itself, as it was written
            raise ValueError(f"must be one of {', '.join(DRAFT_MODES)} (or {{mode: ...}})")
        return {"mode": mode}

    @field_validator("mode", mode="before")
    @classmethod
    def _word(cls, value: Any) -> Any:
        return cls._yaml_word(value)

    @staticmethod
    def _yaml_word(value: Any) -> Any:
        if isinstance(value, bool):
            return "auto" if value else "off"
        return value.strip().lower() if isinstance(value, str) else value


class Drafter(Protocol):
    """Proposes tokens to follow a context.

    ``cost`` is its time per drafted token and ``step_cost`` its fixed time per proposal, both in
    target decode steps (a few dict reads: 0; a draft model: a forward pass of its own each).
    ``propose`` finds its best source for the next tokens, asks ``budget(matched)`` how many tokens
    a source agreeing with the last ``matched`` tokens is worth (0: not known), and returns that
    many (or fewer) with ``matched``.
    """

    name: str
    cost: float
    step_cost: float

    def propose(self, context: Sequence[int], budget: Callable[[int], int]) -> tuple[list[int], int]: ...


@dataclass(frozen=True, slots=True)
class DraftPolicy:
    """Backend-wide drafting settings (see ``adaptive.py`` for what the costs mean).

    ``adaptive=False`` keeps every drafter on whatever it costs (for tests and measurements).
    ``verify_cost`` / ``verify_step_cost``: one more token in a verification pass, and such a pass's
    fixed extra, in plain decode steps; ``None`` takes the figures measured on the dev CPU for the
    kernels in use (``resolve``). ``draft_model_cost``: the draft model's time per token in target
    decode steps; ``None`` measures it once when the backend loads the draft model.
    """

    max_draft: int = 16
    verify_cost: float | None = None
    verify_step_cost: float | None = None
    min_gain: float = 1.05
    adaptive: bool = True
    lookup_min_ngram: int = 1
    lookup_max_ngram: int = 4
    draft_model_cost: float | None = None

    @classmethod
    def of(cls, value: DraftPolicy | Mapping[str, Any] | None) -> DraftPolicy:
        """A policy from itself, ``None`` (defaults) or a spec's mapping (unknown keys: ``ConfigError``)."""
        if value is None or isinstance(value, DraftPolicy):
            return value or cls()
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            known = ", ".join(sorted(cls.__dataclass_fields__))
            raise ConfigError(
                f"unknown draft_policy option(s) {sorted(unknown)}; known: {known}", param="draft_policy"
            )
        return cls(**value)

    def resolve(self, *, fast_kernels: bool = True) -> DraftPolicy:
        """This policy with measured verification costs where it leaves them to the kernels.

        With oneDNN-packed weights and grouped attention (``packed.py``, ``grouped.py``) a pass
        over ``1 + k`` tokens costs about ``1.12 + 0.05 k`` plain steps; with torch's default matmul
        about ``1.5 + 0.07 k`` (SmolLM2-135M, one thread of the shared EPYC, thread CPU time).
        """
        per_token, per_step = _KERNEL_COSTS[fast_kernels]
        return replace(
            self,
            verify_cost=per_token if self.verify_cost is None else self.verify_cost,
            verify_step_cost=per_step if self.verify_step_cost is None else self.verify_step_cost,
        )


_KERNEL_COSTS = {True: (0.05, 0.12), False: (0.07, 0.5)}


def parse_draft_mode(value: Any, default: str, *, has_model: bool) -> str:
    """Validate ``request.option("draft")`` through ``DraftOptions``; ``BadRequestError`` naming
    ``tokenlean.draft.mode`` otherwise."""
    mode = parse_call_options(DraftOptions, value, stage="draft").mode or default
    if mode == "model" and not has_model:
        raise BadRequestError(
            "draft='model' needs a draft model on the backend (LocalBackend(draft_model=...))",
            param="tokenlean.draft.mode",
        )
    return mode


class DraftSession:
    """The drafters of one request and their switches; ``propose`` then ``record`` each step."""

    def __init__(self, drafters: Sequence[Drafter], policy: DraftPolicy) -> None:
        self.drafters = list(drafters)
        costs = policy.resolve()  # a policy the backend has not resolved: the fast kernels' figures
        assert costs.verify_cost is not None and costs.verify_step_cost is not None
        self.switches = [
            AdaptiveSwitch(
                verify_cost=costs.verify_cost,
                verify_step_cost=costs.verify_step_cost,
                draft_cost=drafter.cost,
                step_cost=drafter.step_cost,
                min_gain=policy.min_gain if policy.adaptive else float("-inf"),
                max_draft=policy.max_draft,
            )
            for drafter in self.drafters
        ]
        self._quality = 0  # the quality class of the draft last proposed
        self.seconds = 0.0  # time spent in the drafters (the overhead drafting adds)

    @property
    def active(self) -> bool:
        """Whether any drafter is still switched on."""
        return any(switch.on for switch in self.switches)

    def propose(self, context: Sequence[int], limit: int) -> tuple[list[int], int]:
        """A draft of at most ``limit`` tokens and the index of the drafter that made it (-1: none).

        The first drafter, in order of preference, whose source its switch finds worth a draft wins.
        """
        started = time.perf_counter()
        try:
            for slot, (drafter, switch) in enumerate(zip(self.drafters, self.switches)):
                if not switch.on or limit <= 0:
                    continue
                draft, matched = drafter.propose(context, _budget(switch, limit))
                if draft:
                    self._quality = quality_class(matched)
                    return draft[:limit], slot
            return [], -1
        finally:
            self.seconds += time.perf_counter() - started

    def record(self, slot: int, drafted: int, accepted: int) -> None:
        """Count a verification step of drafter ``slot`` (for the draft ``propose`` returned last)."""
        self.switches[slot].record(self._quality, drafted, accepted)

    def event(self) -> Event:
        """The request's drafting figures: totals and one pair per drafter (``/metrics`` sums them)."""
        data: dict[str, Any] = {
            "drafted": sum(s.drafted for s in self.switches),
            "accepted": sum(s.accepted for s in self.switches),
            "steps": sum(s.steps for s in self.switches),
            "switched_off": sum(s.switched_off for s in self.switches),
            "drafters": ",".join(d.name for d in self.drafters),
        }
        for drafter, switch in zip(self.drafters, self.switches):
            data[f"drafted_{drafter.name}"] = switch.drafted
            data[f"accepted_{drafter.name}"] = switch.accepted
        action = "drafted" if data["drafted"] else "none"
        return Event(stage="draft", action=action, ms=self.seconds * 1000, data=data)


def _budget(switch: AdaptiveSwitch, limit: int) -> Callable[[int], int]:
    """What a drafter asks: how many tokens a source agreeing with the last ``matched`` is worth."""
    return lambda matched: switch.length(quality_class(matched), limit)
