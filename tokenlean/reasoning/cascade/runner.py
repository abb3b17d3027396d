"""``Cascade``: run one request through the tiers, cheapest first, until a scorer accepts.

FrugalGPT's LLM cascade (Chen, Zaharia & Zou, 2023, arXiv 2305.05176): ask the cheapest tier,
score its answer, stop if the score reaches the tier's threshold, otherwise ask the next tier;
the last tier's answer is always accepted. Every answer reports the tier that answered, the tiers
tried and the dollars spent and saved against sending every request to the last tier.

Streaming: a tier's answer can only be judged once it is complete, so non-final tiers are asked
without streaming and the client only ever sees the accepted answer. The last tier is streamed
through as it arrives. The price is the time to first token: an accepted cheap answer arrives in
one piece after the whole cheap generation plus scoring, and an escalated answer starts after
every cheaper tier finished and was scored.

Known failure mode: every escalation pays for the cheaper tiers too, so a scorer that escalates
most requests costs more (and is slower) than the last tier alone; the event's ``saved`` goes
negative and says so.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Chunk, Event, Request, Response, Usage
from tokenlean.reasoning.cascade.scorers import Scorer
from tokenlean.reasoning.cascade.tiers import Tier

__all__ = ["Cascade"]

STAGE = "cascade"


@dataclass
class _Trace:
    """What happened to one request so far: the event's figures."""

    name: str
    tried: list[str]
    scores: list[float | None]
    errors: list[dict[str, str]]
    spent: float = 0.0
    usage: Usage = field(default_factory=Usage)
    scoring_ms: float = 0.0


@dataclass(frozen=True)
class Cascade:
    """Tiers cheapest first, the scorer that judges them, and what a failing tier does."""

    name: str
    tiers: tuple[Tier, ...]
    scorer: Scorer
    escalate_on_error: bool = True

    @property
    def thresholds(self) -> tuple[float, ...]:
        """One threshold per tier but the last."""
        return tuple(float(t.threshold or 0.0) for t in self.tiers[:-1])

    async def run(
        self,
        request: Request,
        call_next: Handler,
        thresholds: Sequence[float] | None = None,
        escalate_on_error: bool | None = None,
    ) -> Response:
        """Answer ``request`` from the first tier whose answer scores at least its threshold."""
        limits = tuple(thresholds) if thresholds is not None else self.thresholds
        escalate = self.escalate_on_error if escalate_on_error is None else escalate_on_error
        trace = _Trace(self.name, [], [], [])
        for index, tier in enumerate(self.tiers[:-1]):
            tier_request = self.scorer.prepare(_for_tier(request, tier, stream=False))
            try:
                response = await _call(tier, tier_request, call_next)
            except Exception as exc:  # a failing tier escalates (configurable)
                if not escalate:
                    raise
                trace.tried.append(tier.name)
                trace.errors.append({"tier": tier.name, "error": _describe(exc)})
                continue
            response = await response.aread()
            _charge(trace, tier, response)
            started = time.perf_counter()
            score = await self.scorer.score(tier_request, response)
            trace.scoring_ms += (time.perf_counter() - started) * 1000
            trace.scores.append(score)
            if score is not None and score >= limits[index]:
                return self._accept(request, index, response, trace, limits)
        return await self._final(request, call_next, trace, limits)

    def _accept(
        self, request: Request, index: int, response: Response, trace: _Trace, limits: Sequence[float]
    ) -> Response:
        choice = self.scorer.choose(response)
        completion = response.usage.completion_tokens / max(len(response.choices), 1)
        last = self.tiers[-1]
        baseline = response.usage.prompt_tokens * last.cost_input + completion * last.cost_output
        event = self._event(trace, index, baseline, estimated=True, limits=limits)
        answer = Response(
            model=response.model,
            choices=(choice,),
            usage=response.usage,
            id=response.id,
            created=response.created,
            events=response.events,
        )
        if request.stream:
            return answer.replace(choices=(), stream=_replay(answer, event))
        return answer.with_event(event)

    async def _final(
        self, request: Request, call_next: Handler, trace: _Trace, limits: Sequence[float]
    ) -> Response:
        last, index = self.tiers[-1], len(self.tiers) - 1
        response = await _call(last, _for_tier(request, last, stream=request.stream), call_next)
        if response.is_streaming:
            # The tiers before were tried already: say so now, so the headers carry it; the cost
            # (known once the stream ends) follows in the stream's last event.
            head = {"cascade": trace.name, "tier": last.name, "tiers_tried": [*trace.tried, last.name]}
            event = Event(STAGE, "accepted" if index == 0 else "escalated", 0.0, {**head, "streamed": True})
            charged = self._charged_stream(response.stream, trace, limits)  # type: ignore[arg-type]
            return response.replace(stream=charged).with_event(event)
        _charge(trace, last, response)
        return response.with_event(
            self._event(trace, index, last.cost(response.usage), estimated=False, limits=limits)
        )

    async def _charged_stream(
        self, stream: AsyncIterator[Chunk], trace: _Trace, limits: Sequence[float]
    ) -> AsyncIterator[Chunk]:
        """Pass the last tier's chunks through; once it ends, report with its real usage."""
        last = self.tiers[-1]
        usage = Usage()
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            yield chunk
        trace.tried.append(last.name)
        trace.spent += last.cost(usage)
        trace.usage = trace.usage + usage
        yield Chunk(
            events=(
                self._event(trace, len(self.tiers) - 1, last.cost(usage), estimated=False, limits=limits),
            )
        )

    def _event(
        self, trace: _Trace, index: int, baseline: float, *, estimated: bool, limits: Sequence[float]
    ) -> Event:
        data: dict[str, Any] = {
            "cascade": trace.name,
            "tier": self.tiers[index].name,
            "tier_index": index,
            "tiers_tried": list(trace.tried),
            "escalations": len(trace.tried) - 1,
            "scores": list(trace.scores),
            "thresholds": list(limits),
            "errors": list(trace.errors),
            "cost": trace.spent,
            "baseline_cost": baseline,
            "saved": baseline - trace.spent,
            "baseline_estimated": estimated,
            "prompt_tokens": trace.usage.prompt_tokens,
            "completion_tokens": trace.usage.completion_tokens,
        }
        action = "accepted" if index == 0 else "escalated"
        return Event(STAGE, action, round(trace.scoring_ms, 3), data)


def _for_tier(request: Request, tier: Tier, *, stream: bool) -> Request:
    max_tokens = request.max_tokens
    if tier.max_tokens is not None:
        max_tokens = tier.max_tokens if max_tokens is None else min(max_tokens, tier.max_tokens)
    return request.replace(model=tier.model or request.model, stream=stream, max_tokens=max_tokens)


async def _call(tier: Tier, request: Request, call_next: Handler) -> Response:
    """The pipeline's backend (through the stages below) or the tier's own backend."""
    if tier.backend is None:
        return await call_next(request)
    return await tier.backend.complete(request)


def _charge(trace: _Trace, tier: Tier, response: Response) -> None:
    trace.tried.append(tier.name)
    trace.spent += tier.cost(response.usage)
    trace.usage = trace.usage + response.usage


def _describe(exc: BaseException) -> str:
    """The error as the caller would name it (unwrapping the pipeline's marker, if any)."""
    original = exc.__cause__ if exc.__cause__ is not None and type(exc).__name__.startswith("_") else exc
    message = getattr(original, "message", None) or str(original)
    return f"{type(original).__name__}: {message}"


async def _replay(answer: Response, event: Event) -> AsyncIterator[Chunk]:
    """An accepted (complete) answer as a stream: its text, its finish, its usage and the event."""
    choice = answer.choices[0]
    yield Chunk(0, choice.text, logprobs=choice.logprobs)
    yield Chunk(0, "", choice.finish_reason or "stop")
    yield Chunk(usage=answer.usage, events=(event,))
