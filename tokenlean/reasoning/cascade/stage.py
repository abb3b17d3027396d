"""``CascadeStage``: FrugalGPT cascades as a pipeline stage, chosen per request or by model name.

FrugalGPT (Chen, Zaharia & Zou, 2023, arXiv 2305.05176): a cheap model answers first, a scorer
decides whether to escalate. The stage holds named cascades (``runner.Cascade``); a request picks
one with ``model="cascade:<name>"`` (clients that cannot send extra fields, as RouteLLM encodes
its router in the model name), with ``extra_body={"tokenlean": {"cascade": {"cascade": name}}}``,
or gets the spec's ``default``. A request that picks none passes through untouched.

Per-request options (``tokenlean.cascade``): ``cascade`` (name), ``thresholds`` (one per tier but
the last), ``escalate_on_error`` (bool), ``enabled`` (false: pass through). A bare string is a
cascade name; ``false`` disables. A request with ``n > 1`` goes straight to the last tier: a
cheap tier's samples cannot be judged one by one against the client's n.

Known failure mode: a tier that names its own backend is called directly, so the stages below
the cascade (compression, cache) do not see that tier's traffic; only ``backend: default``
tiers go through them. If the last tier's own backend fails, the error is the stage's: with the
default ``bypass`` policy the pipeline then answers from its own backend (set ``policy: raise``
to refuse instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import Field, model_validator

from tokenlean.errors import BadRequestError, UnknownModelError
from tokenlean.middleware.options import StageOptions, parse_call_options
from tokenlean.middleware.stage import Backend, Handler
from tokenlean.middleware.types import Event, Request, Response
from tokenlean.reasoning.cascade.runner import Cascade
from tokenlean.reasoning.cascade.scorers import build_scorer
from tokenlean.reasoning.cascade.tiers import CascadeOptions, build_tiers, parse_options

__all__ = ["CASCADE_PREFIX", "CascadeCallOptions", "CascadeStage"]

CASCADE_PREFIX = "cascade:"


class CascadeCallOptions(StageOptions):
    """Per-call options of the cascade stage; a bare string is a cascade name, ``false`` disables."""

    nullable: ClassVar[frozenset[str]] = frozenset({"thresholds"})

    cascade: str | None = Field(default=None, description="The named cascade to run (default: the spec's).")
    thresholds: Sequence[float] | None = Field(
        default=None, description="One score threshold per tier but the last, replacing the spec's."
    )
    escalate_on_error: bool | None = Field(
        default=None,
        description="Whether a failing tier escalates to the next one (else its error is raised).",
    )
    enabled: bool = Field(default=True, description="false: pass the request through untouched.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"cascade": value}
        return {"enabled": False} if value is False else value


class CascadeStage:
    """Answer from the cheapest tier whose answer the scorer accepts."""

    name: ClassVar[str] = "cascade"
    options_model: ClassVar[type[CascadeCallOptions]] = CascadeCallOptions
    spec_model: ClassVar[type[CascadeOptions]] = CascadeOptions  # read by from_spec (tiers.parse_options)

    def __init__(self, cascades: Mapping[str, Cascade], *, default: str | None = None) -> None:
        self.cascades = dict(cascades)
        self.default = default

    @classmethod
    def from_spec(cls, options: dict[str, Any], *, backend: Backend | None = None) -> CascadeStage:
        """Build tiers and scorers from a spec's options; ``backend`` is the pipeline's (tier ``default``)."""
        parsed = parse_options(options)
        cascades = {}
        for name, spec in parsed.cascades.items():
            tiers = build_tiers(spec.tiers, backend)
            scorer = build_scorer(spec.scorer.model_dump())
            cascades[name] = Cascade(name, tuple(tiers), scorer, spec.escalate_on_error)
        return cls(cascades, default=parsed.default)

    async def warm_up(self) -> None:
        """Let each cascade's scorer load what it loads on first use (a learnt scorer's embedder)."""
        for cascade in self.cascades.values():
            warm_up = getattr(cascade.scorer, "warm_up", None)
            if warm_up is not None:
                await warm_up()

    def models(self) -> list[str]:
        """The model names that select a cascade (``cascade:<name>``), for ``/v1/models``."""
        return [CASCADE_PREFIX + name for name in self.cascades]

    def select(self, request: Request) -> tuple[Cascade | None, CascadeCallOptions]:
        """The cascade ``request`` asks for (by model name, option or default) and its options."""
        options = parse_call_options(CascadeCallOptions, request.option(self.name), stage=self.name)
        by_model = self.resolve_model(request.model)
        if not options.enabled:
            if by_model is not None:
                raise BadRequestError(
                    f"model {request.model!r} is a cascade; it cannot be disabled",
                    param="tokenlean.cascade.enabled",
                )
            return None, options
        name = by_model or options.cascade or self.default
        if name is None:
            return None, options
        if name not in self.cascades:
            raise BadRequestError(
                f"unknown cascade {name!r}; known: {', '.join(sorted(self.cascades))}",
                param="tokenlean.cascade.cascade",
            )
        cascade = self.cascades[name]
        _check_thresholds(options.thresholds, len(cascade.tiers) - 1)
        return cascade, options

    def bypass_request(self, request: Request) -> Request:
        """``request`` as the pipeline forwards it when this stage failed: no cascade model name.

        A bypass goes on to the pipeline's backend, so a ``cascade:<name>`` request is sent to
        the last tier's model when that tier uses the pipeline's backend, else to the default.
        """
        if not request.model.startswith(CASCADE_PREFIX):
            return request
        cascade = self.cascades.get(request.model[len(CASCADE_PREFIX) :])
        last = cascade.tiers[-1] if cascade is not None else None
        model = last.model if last is not None and last.backend is None and last.model else ""
        return request.replace(model=model)

    def resolve_model(self, model: str) -> str | None:
        """``"cascade:<name>"`` -> ``name``; ``None`` for other models; 404 for an unknown cascade."""
        if not model.startswith(CASCADE_PREFIX):
            return None
        name = model[len(CASCADE_PREFIX) :]
        if name not in self.cascades:
            raise UnknownModelError(
                f"no cascade {name!r} is served here; known: {', '.join(self.models())}", param="model"
            )
        return name

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        """Run the selected cascade, or pass the request through if none applies."""
        cascade, options = self.select(request)
        if cascade is None:
            return await call_next(request)
        request = request.replace(model=_plain_model(request.model))  # tiers name their own models
        if request.n > 1 or request.step_aside_reason is not None:
            # n answers, tool calls or JSON cannot be scored as one text: the strongest tier answers
            return await self._straight_to_last(request, call_next, cascade)
        return await cascade.run(request, call_next, options.thresholds, options.escalate_on_error)

    @staticmethod
    async def _straight_to_last(request: Request, call_next: Handler, cascade: Cascade) -> Response:
        last = cascade.tiers[-1]
        tier_request = request.replace(model=last.model or _plain_model(request.model))
        response = await (last.backend.complete(tier_request) if last.backend else call_next(tier_request))
        reason = "n>1" if request.n > 1 else request.step_aside_reason
        event = Event(
            CascadeStage.name,
            "skipped",
            0.0,
            {"cascade": cascade.name, "reason": reason, "tier": last.name, "tiers_tried": [last.name]},
        )
        return response.with_event(event)

    async def aclose(self) -> None:
        """Close the backends the tiers built (the pipeline closes its own)."""
        closed: set[int] = set()
        for cascade in self.cascades.values():
            for tier in cascade.tiers:
                if tier.owned and tier.backend is not None and id(tier.backend) not in closed:
                    closed.add(id(tier.backend))
                    await tier.backend.aclose()


def _plain_model(model: str) -> str:
    """``model`` unless it names a cascade: ``cascade:<name>`` means nothing to a backend.

    An empty name lets the backend pick its own model (OpenAIBackend: the upstream's first).
    """
    return "" if model.startswith(CASCADE_PREFIX) else model


def _check_thresholds(value: Sequence[float] | None, expected: int) -> None:
    """The thresholds' count depends on the cascade chosen, so it is checked here, not in the model."""
    if value is not None and len(value) != expected:
        raise BadRequestError(
            f"thresholds must be a list of {expected} number(s), one per tier but the last",
            param="tokenlean.cascade.thresholds",
        )
