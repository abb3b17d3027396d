"""``SkeletonStage``: Skeleton-of-Thought with its router SoT-R, as the pipeline stage ``sot``.

Skeleton-of-Thought (Ning et al., ICLR 2024, arXiv 2307.15337) cuts end-to-end latency by
decoding one answer as several short ones in parallel: the model writes a skeleton (a few
points of a few words), every point is expanded by its own request, all at once, and the
answer is an opening line (written in the same batch as the points) and the points in order.
The router decides per request whether the request suits it (``mode="auto"``); a request can
force it with ``extra_body={"tokenlean": {"sot": "on"}}`` or refuse it with ``"off"``.
Known failure modes: points are written without seeing each other, so answers that must read
as one argument (maths, code, stories) get worse, which is what the router is for; the time to
the first token is the skeleton's whole decode plus the opening line's, far longer than normal
generation's; on a backend that does not batch concurrent requests SoT is slower, not faster.

``max_tokens`` bounds the whole answer: the skeleton's tokens (its titles reappear in the
answer) are subtracted, the opening line gets at most an equal share (``lead_max_tokens``), and
the rest is split between the points; a budget too small for two points means normal
generation. In ``auto`` mode so does a ``max_tokens`` below ``min_answer_tokens`` (128), without
running the router: SoT's fixed cost (the skeleton decoded in sequence, then one expansion round:
about 3.3 s in ``bench.sot``) is what normal generation spends on about 120 tokens there (28 ms
each at 160 tokens), so a shorter answer cannot repay it. Usage counts every call (skeleton,
opening line and expansions). A skeleton that does not parse falls back to normal generation; an
expansion that fails is retried once, then its point keeps only its title; an opening line that
fails is left out.

Events (``stage="sot"``): ``skipped`` (off, or a request SoT cannot serve: n > 1, logprobs,
tools, a text prompt), ``not_routed`` (the guard refused it, or the router's calibrated
probability was under the threshold: ``probability``, ``threshold``, ``route`` and ``routed`` say
which and what it decided),
``fallback`` (skeleton unparseable or no token budget), ``expanded`` (SoT answered: points,
titles, lead, skeleton_ms, expansion_ms, skeleton_tokens, expansion_tokens (lead included),
lead_tokens, retried, failed). A streamed answer carries ``skeleton`` on the response (sent
before the text) and ``expanded`` in its last chunk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from tokenlean.errors import ConfigError
from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Choice, Chunk, Event, Request, Response, Usage
from tokenlean.reasoning.sot.expand import (
    PointResult,
    Skeleton,
    assemble,
    expand_all,
    expand_point,
    lead_text,
    point_text,
    write_lead,
    write_skeleton,
)
from tokenlean.reasoning.sot.options import MODES, Mode, SotCallOptions, SotSpecOptions, parse_mode
from tokenlean.reasoning.sot.prompts import (
    DEFAULT_LEAD_EXAMPLES,
    DEFAULT_LEAD_TEMPLATE,
    DEFAULT_POINT_EXAMPLES,
    DEFAULT_POINT_TEMPLATE,
    DEFAULT_SKELETON_EXAMPLES,
    DEFAULT_SKELETON_TEMPLATE,
    SkeletonPrompts,
)
from tokenlean.reasoning.sot.router import SkeletonRouter

__all__ = ["SkeletonStage"]


class SkeletonStage:
    """Answer list-like requests as a skeleton whose points are expanded in parallel."""

    name: ClassVar[str] = "sot"
    options_model: ClassVar[type[SotCallOptions]] = SotCallOptions
    spec_model: ClassVar[type[SotSpecOptions]] = SotSpecOptions

    def __init__(
        self,
        *,
        mode: Mode = "auto",
        threshold: float | None = None,
        router_weights: str | Path | None = None,
        min_points: int = 2,
        max_points: int = 5,
        skeleton_max_tokens: int = 64,
        point_max_tokens: int = 128,
        min_point_tokens: int = 8,
        lead_max_tokens: int = 24,
        min_answer_tokens: int = 128,
        skeleton_template: str = DEFAULT_SKELETON_TEMPLATE,
        point_template: str = DEFAULT_POINT_TEMPLATE,
        lead_template: str = DEFAULT_LEAD_TEMPLATE,
        skeleton_examples: Sequence[Sequence[str]] | None = None,
        point_examples: Sequence[Sequence[str]] | None = None,
        lead_examples: Sequence[Sequence[str]] | None = None,
        router: SkeletonRouter | None = None,
    ) -> None:
        _check(
            mode,
            min_points,
            max_points,
            (skeleton_max_tokens, point_max_tokens, min_point_tokens, min_answer_tokens),
            lead_max_tokens,
        )
        self.mode: Mode = mode
        self.router = router or SkeletonRouter(router_weights, threshold=threshold)
        self.prompts = SkeletonPrompts(
            skeleton_template,
            point_template,
            _examples(skeleton_examples, DEFAULT_SKELETON_EXAMPLES, 2, "skeleton_examples"),  # type: ignore[arg-type]
            _examples(point_examples, DEFAULT_POINT_EXAMPLES, 3, "point_examples"),  # type: ignore[arg-type]
            lead_template,
            _examples(lead_examples, DEFAULT_LEAD_EXAMPLES, 2, "lead_examples"),  # type: ignore[arg-type]
        )
        self.min_points, self.max_points = min_points, max_points
        self.skeleton_max_tokens = skeleton_max_tokens
        self.point_max_tokens = point_max_tokens
        self.min_point_tokens = min_point_tokens
        self.lead_max_tokens = lead_max_tokens
        self.min_answer_tokens = min_answer_tokens

    async def warm_up(self) -> None:
        """Load the router's weights and encoder (one forward pass) before the first request needs
        them; a stage whose default mode is ``off`` routes nothing unless a call asks, so it waits."""
        if self.mode != "off":
            await asyncio.to_thread(self.router.probability, "What are some ways to save energy at home?")

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        mode = parse_mode(request.option(self.name), self.mode)
        reason = self._skip_reason(request, mode)
        if reason is not None:
            event = Event(self.name, "skipped", 0.0, {"routed": False, "mode": mode, "reason": reason})
            return (await call_next(request)).with_event(event)
        started = time.perf_counter()
        info: dict[str, Any] = {"routed": True, "mode": mode, "probability": None}
        if mode == "auto":
            route = await asyncio.to_thread(self.router.route, request.last_user_text)
            info.update(probability=route.probability, threshold=route.threshold, route=route.reason)
            if not route.suits:
                event = Event(self.name, "not_routed", _ms(started), {**info, "routed": False})
                return (await call_next(request)).with_event(event)
        skeleton = await write_skeleton(
            request,
            call_next,
            self.prompts,
            min_points=self.min_points,
            max_points=self.max_points,
            max_tokens=self._skeleton_tokens(request),
        )
        info.update(skeleton_ms=round(skeleton.ms, 1), skeleton_tokens=skeleton.usage.completion_tokens)
        points, budget, lead_budget, why_not = self._plan(request, skeleton)
        if not points:
            fallback = {**info, "reason": why_not, "skeleton": skeleton.raw[:500]}
            return await self._fall_back(request, call_next, skeleton, fallback, started)
        info.update(points=len(points), titles=list(points), point_max_tokens=budget)
        if request.stream:
            head = Event(self.name, "skeleton", _ms(started), dict(info))
            stream = self._stream(request, call_next, points, (budget, lead_budget), skeleton, info, started)
            return Response(model=skeleton.model, stream=stream, events=(head,))
        return await self._whole(request, call_next, points, (budget, lead_budget), skeleton, info, started)

    async def _whole(
        self,
        request: Request,
        call_next: Handler,
        points: Sequence[str],
        budgets: tuple[int, int],
        skeleton: Skeleton,
        info: dict[str, Any],
        started: float,
    ) -> Response:
        """The answer in one piece: every point and the opening line, expanded together."""
        expansion_started = time.perf_counter()
        results, lead = await asyncio.gather(
            expand_all(request, call_next, self.prompts, points, budgets[0]),
            self._lead(request, call_next, budgets[1]),
        )
        _raise_if_all_failed(results)
        choice = Choice(0, assemble(results, lead), self._finish_reason(request, results, budgets[0]))
        event = self._expanded(info, results, lead, _ms(expansion_started), started)
        return Response(
            model=skeleton.model,
            choices=(choice,),
            usage=_usage(skeleton, results, lead),
            events=(*_sub_events(skeleton, results, lead), event),
        )

    async def _lead(self, request: Request, call_next: Handler, budget: int) -> PointResult | None:
        """The opening line, or ``None`` when there is no budget for one."""
        return await write_lead(request, call_next, self.prompts, budget) if budget else None

    def _skip_reason(self, request: Request, mode: Mode) -> str | None:
        """Why SoT cannot or should not serve ``request``, or ``None`` if it may."""
        if mode == "off":
            return "off"
        if request.prompt is not None:
            return "text completion (no chat messages)"
        if not request.last_user_text.strip():
            return "no user message"
        if request.n != 1 or request.logprobs:
            return "n > 1 or logprobs requested"
        if request.step_aside_reason is not None:  # tools, JSON output, images: one answer, one shape
            return request.step_aside_reason
        if (
            request.max_tokens is not None
            and request.max_tokens < 2 * self.min_points * self.min_point_tokens
        ):
            return "max_tokens too small for a skeleton"
        if mode == "auto" and request.max_tokens is not None and request.max_tokens < self.min_answer_tokens:
            return f"max_tokens below {self.min_answer_tokens}: too short an answer for SoT to pay"
        return None

    def _skeleton_tokens(self, request: Request) -> int:
        """The skeleton's cap: its own limit, and at most half of the whole answer's."""
        if request.max_tokens is None:
            return self.skeleton_max_tokens
        return max(1, min(self.skeleton_max_tokens, request.max_tokens // 2))

    def _plan(self, request: Request, skeleton: Skeleton) -> tuple[tuple[str, ...], int, int, str]:
        """The points to expand, each one's token budget and the opening line's, or ``()`` and why not."""
        if skeleton.points is None:
            return (), 0, 0, "skeleton did not parse"
        if request.max_tokens is None:
            return skeleton.points, self.point_max_tokens, self.lead_max_tokens, ""
        room = request.max_tokens - skeleton.usage.completion_tokens
        points = skeleton.points[: max(0, room // (self.min_point_tokens + 1))]
        if len(points) < self.min_points:
            return (), 0, 0, "max_tokens leaves no room to expand the points"
        # one token per part is kept for the separator the assembly adds; the opening line gets at
        # most an equal share, and none if that would leave a point under min_point_tokens
        lead = min(self.lead_max_tokens, room // (len(points) + 1) - 1)
        if lead < self.min_point_tokens or (room - lead - 1) // len(points) - 1 < self.min_point_tokens:
            lead = 0
        room -= lead + 1 if lead else 0
        return points, min(self.point_max_tokens, room // len(points) - 1), lead, ""

    async def _stream(
        self,
        request: Request,
        call_next: Handler,
        points: Sequence[str],
        budgets: tuple[int, int],
        skeleton: Skeleton,
        info: dict[str, Any],
        started: float,
    ) -> AsyncIterator[Chunk]:
        """The answer in order: the opening line once it is done, then a point's title once all
        before it are done and its text once it is."""
        expansion_started = time.perf_counter()
        budget, lead_budget = budgets
        lead_task = asyncio.create_task(self._lead(request, call_next, lead_budget))
        tasks = [
            asyncio.create_task(expand_point(request, call_next, self.prompts, points, i, budget))
            for i in range(len(points))
        ]
        results: list[PointResult] = []
        try:
            lead = await lead_task
            if lead_text(lead):
                yield Chunk(0, lead_text(lead))
            for index, task in enumerate(tasks):
                yield Chunk(0, point_text(index, points[index], None)[0])
                results.append(await task)
                tail = point_text(index, results[-1].title, results[-1].text)[1]
                if tail:
                    yield Chunk(0, tail)
        finally:
            for pending in [lead_task, *tasks]:
                pending.cancel()  # the client went away: stop the expansions still running
        _raise_if_all_failed(results, unwrap=True)
        event = self._expanded(info, results, lead, _ms(expansion_started), started)
        yield Chunk(0, "", self._finish_reason(request, results, budget))
        yield Chunk(
            usage=_usage(skeleton, results, lead), events=(*_sub_events(skeleton, results, lead), event)
        )

    async def _fall_back(
        self, request: Request, call_next: Handler, skeleton: Skeleton, info: dict[str, Any], started: float
    ) -> Response:
        """Normal generation after a skeleton that cannot be used; its tokens still count."""
        response = await call_next(request)
        event = Event(self.name, "fallback", _ms(started), info)
        response = response.replace(events=(*skeleton.events, *response.events))
        if response.stream is not None:
            return response.replace(stream=_add_usage(response.stream, skeleton.usage)).with_event(event)
        return response.replace(usage=response.usage + skeleton.usage).with_event(event)

    def _finish_reason(self, request: Request, results: Sequence[PointResult], budget: int) -> str:
        """``length`` only when the client's ``max_tokens`` (not our per-point cap) cut a point."""
        bound_by_client = request.max_tokens is not None and budget < self.point_max_tokens
        cut = any(r.finish_reason == "length" for r in results)
        return "length" if bound_by_client and cut else "stop"

    def _expanded(
        self,
        info: dict[str, Any],
        results: Sequence[PointResult],
        lead: PointResult | None,
        expansion_ms: float,
        started: float,
    ) -> Event:
        lead_tokens = lead.usage.completion_tokens if lead is not None else 0
        data = {
            **info,
            "lead": bool(lead_text(lead)),
            "expansion_ms": round(expansion_ms, 1),
            "expansion_tokens": sum(r.usage.completion_tokens for r in results) + lead_tokens,
            "lead_tokens": lead_tokens,
            "failed": [r.index for r in results if r.error is not None],
        }
        return Event(self.name, "expanded", _ms(started), data)


def _check(
    mode: str, min_points: int, max_points: int, limits: tuple[int, ...], lead_max_tokens: int
) -> None:
    """``ConfigError`` naming the first option out of range."""
    if mode not in MODES:
        raise ConfigError(f"sot mode must be one of {', '.join(MODES)}; got {mode!r}", param="mode")
    if not 2 <= min_points <= max_points:
        raise ConfigError("sot needs 2 <= min_points <= max_points", param="min_points")
    if min(limits) < 1:
        raise ConfigError("sot token limits must be positive", param="point_max_tokens")
    if lead_max_tokens < 0:
        raise ConfigError("sot lead_max_tokens must be 0 (no opening line) or more", param="lead_max_tokens")


def _examples(
    given: Sequence[Sequence[str]] | None, default: tuple[tuple[str, ...], ...], width: int, name: str
) -> tuple[tuple[str, ...], ...]:
    """Worked examples from a spec (lists of strings), checked for shape; ``None`` = the defaults."""
    if given is None:
        return default
    examples = tuple(tuple(example) for example in given)
    if any(len(e) != width or not all(isinstance(x, str) for x in e) for e in examples):
        raise ConfigError(f"sot {name}: each example must be {width} strings", param=name)
    return examples


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _sub_events(
    skeleton: Skeleton, results: Sequence[PointResult], lead: PointResult | None
) -> tuple[Event, ...]:
    """The events the stages below reported for every call SoT made (skeleton, points, opening line)."""
    parts = (*results, *([lead] if lead is not None else []))
    return (*skeleton.events, *(event for part in parts for event in part.events))


def _usage(skeleton: Skeleton, results: Sequence[PointResult], lead: PointResult | None) -> Usage:
    total = skeleton.usage
    for result in (*results, *([lead] if lead is not None else [])):
        total = total + result.usage
    return total


def _raise_if_all_failed(results: Sequence[PointResult], *, unwrap: bool = False) -> None:
    """No point expanded: there is no answer to give, so the first failure is the answer.

    Inside the pipeline, errors from below arrive wrapped (the pipeline unwraps them when a stage
    returns); a stream runs after the stage returned, so it unwraps them itself.
    """
    errors = [r.error for r in results if r.error is not None]
    if results and len(errors) == len(results):
        error = errors[0]
        raise (getattr(error, "original", error) if unwrap else error)


async def _add_usage(stream: AsyncIterator[Chunk], extra: Usage) -> AsyncIterator[Chunk]:
    """Pass ``stream`` through, adding ``extra`` to the usage it reports."""
    async for chunk in stream:
        yield chunk if chunk.usage is None else dataclasses.replace(chunk, usage=chunk.usage + extra)
