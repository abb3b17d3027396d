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

from collections.abc import Mapping
from typing import Any, ClassVar

from tokenlean.errors import BadRequestError, UnknownModelError
from tokenlean.middleware.stage import Backend, Handler
from tokenlean.middleware.types import Event, Request, Response
from tokenlean.reasoning.cascade.runner import Cascade
from tokenlean.reasoning.cascade.scorers import build_scorer
from tokenlean.reasoning.cascade.tiers import build_tiers, parse_options

__all__ = ["CASCADE_PREFIX", "CascadeStage"]

CASCADE_PREFIX = "cascade:"
_OPTION_KEYS = {"cascade", "thresholds", "escalate_on_error", "enabled"}


class CascadeStage:
    """Answer from the cheapest tier whose answer the scorer accepts."""

    name: ClassVar[str] = "cascade"

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

    def models(self) -> list[str]:
        """The model names that select a cascade (``cascade:<name>``), for ``/v1/models``."""
        return [CASCADE_PREFIX + name for name in self.cascades]

    def select(self, request: Request) -> tuple[Cascade | None, dict[str, Any]]:
        """The cascade ``request`` asks for (by model name, option or default) and its options."""
        options = _options(request.option(self.name))
        by_model = self.resolve_model(request.model)
        if options.get("enabled") is False:
            if by_model is not None:
                raise BadRequestError(
                    f"model {request.model!r} is a cascade; it cannot be disabled",
                    param="tokenlean.cascade.enabled",
                )
            return None, options
        name = by_model or options.get("cascade") or self.default
        if name is None:
            return None, options
        if name not in self.cascades:
            raise BadRequestError(
                f"unknown cascade {name!r}; known: {', '.join(sorted(self.cascades))}",
                param="tokenlean.cascade.cascade",
            )
        cascade = self.cascades[name]
        _check_thresholds(options.get("thresholds"), len(cascade.tiers) - 1)
        return cascade, options

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
        if request.n > 1:
            return await self._straight_to_last(request, call_next, cascade)
        return await cascade.run(
            request, call_next, options.get("thresholds"), options.get("escalate_on_error")
        )

    @staticmethod
    async def _straight_to_last(request: Request, call_next: Handler, cascade: Cascade) -> Response:
        last = cascade.tiers[-1]
        tier_request = request.replace(model=last.model or request.model)
        response = await (last.backend.complete(tier_request) if last.backend else call_next(tier_request))
        event = Event(
            CascadeStage.name,
            "skipped",
            0.0,
            {"cascade": cascade.name, "reason": "n>1", "tier": last.name, "tiers_tried": [last.name]},
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


def _options(raw: Any) -> dict[str, Any]:
    """Normalise ``tokenlean.cascade``: a name, ``false``, or a mapping of known keys."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        return {"cascade": raw}
    if raw is False:
        return {"enabled": False}
    if not isinstance(raw, Mapping):
        raise BadRequestError(
            "tokenlean.cascade must be a cascade name, false, or an object", param="tokenlean.cascade"
        )
    unknown = set(raw) - _OPTION_KEYS
    if unknown:
        key = min(unknown)
        raise BadRequestError(
            f"unknown cascade option {key!r}; known: {', '.join(sorted(_OPTION_KEYS))}",
            param=f"tokenlean.cascade.{key}",
        )
    for key in ("enabled", "escalate_on_error"):
        if key in raw and not isinstance(raw[key], bool):
            raise BadRequestError(f"{key} must be true or false", param=f"tokenlean.cascade.{key}")
    if "cascade" in raw and not isinstance(raw["cascade"], str):
        raise BadRequestError("cascade must be a name", param="tokenlean.cascade.cascade")
    return dict(raw)


def _check_thresholds(value: Any, expected: int) -> None:
    if value is None:
        return
    if (
        not isinstance(value, (list, tuple))
        or len(value) != expected
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise BadRequestError(
            f"thresholds must be a list of {expected} number(s), one per tier but the last",
            param="tokenlean.cascade.thresholds",
        )
