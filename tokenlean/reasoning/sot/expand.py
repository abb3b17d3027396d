"""The two phases of Skeleton-of-Thought as calls through ``call_next``, and the assembly.

Skeleton-of-Thought (Ning et al., ICLR 2024, arXiv 2307.15337): one request writes the
skeleton; then every point is expanded by its own request, all issued at once
(``asyncio.gather``), so the embedded backend decodes them as one batch and vLLM schedules them
side by side. The answer is the points in skeleton order. Known failure mode: the speed-up
needs a backend that batches; on one that serves requests one at a time the expansions queue
and SoT is slower than normal generation.

An expansion that fails is not retried here (the backend's retry policy has already done what
is safe): the point keeps only its title and the others are kept (``PointResult.error`` records
why). Only if every point failed does the failure propagate, because then there is no answer
left to give. The opening line (``lead``) is one more request in the same batch; if it fails the
answer simply has none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Event, Message, Request, Response, Usage
from tokenlean.reasoning.sot.parse import (
    clean_expansion,
    clean_lead,
    drop_restated_opening,
    parse_skeleton,
    trim_to_sentence,
)
from tokenlean.reasoning.sot.prompts import SkeletonPrompts

__all__ = [
    "PointResult",
    "Skeleton",
    "assemble",
    "expand_all",
    "expand_point",
    "lead_text",
    "point_text",
    "write_lead",
    "write_skeleton",
]

_DROP_EXTRA = ("stream_options",)


@dataclass(frozen=True, slots=True)
class Skeleton:
    """The skeleton call's outcome: its points (``None`` when it did not parse) and its cost."""

    points: tuple[str, ...] | None
    raw: str
    usage: Usage
    ms: float
    model: str = ""
    events: tuple[Event, ...] = ()  # what the stages below (drafting, prefix reuse) did for the call


@dataclass(frozen=True, slots=True)
class PointResult:
    """One point: its title, the cleaned expansion ("" when it failed) and its cost."""

    index: int
    title: str
    text: str
    usage: Usage
    finish_reason: str | None
    error: BaseException | None = None
    events: tuple[Event, ...] = ()  # what the stages below did for this call


def sub_request(request: Request, messages: Sequence[Message], max_tokens: int, suffix: str) -> Request:
    """A non-streamed single-choice request for one phase, traceable to the client's request."""
    extra = {k: v for k, v in request.extra.items() if k not in _DROP_EXTRA}
    return request.replace(
        messages=messages,
        max_tokens=max_tokens,
        stream=False,
        n=1,
        extra=extra,
        request_id=f"{request.request_id}-sot-{suffix}",
    )


async def write_skeleton(
    request: Request,
    call_next: Handler,
    prompts: SkeletonPrompts,
    *,
    min_points: int,
    max_points: int,
    max_tokens: int,
) -> Skeleton:
    """Ask for the skeleton and parse it; a truncated last point is dropped."""
    started = time.perf_counter()
    messages = prompts.skeleton(request, min_points=min_points, max_points=max_points)
    response = await call_next(sub_request(request, messages, max_tokens, "skeleton"))
    response = await response.aread()
    truncated = bool(response.choices) and response.choices[0].finish_reason == "length"
    points = parse_skeleton(
        response.text,
        min_points=min_points,
        max_points=max_points,
        truncated=truncated,
        question=request.last_user_text,
    )
    return Skeleton(
        points,
        response.text,
        response.usage,
        (time.perf_counter() - started) * 1000,
        response.model,
        response.events,
    )


async def _once(call_next: Handler, request: Request) -> tuple[Response | None, BaseException | None]:
    """The response to ``request``, or the failure that ended it.

    Not retried here: failures from below a stage are retried only by the backend's one retry
    policy (tokenlean/backends/retry.py), which knows what is safe to repeat (DESIGN.md).
    """
    try:
        return await (await call_next(request)).aread(), None
    except Exception as exc:  # noqa: BLE001  # one part failing costs that part, not the answer
        return None, exc


async def expand_point(
    request: Request,
    call_next: Handler,
    prompts: SkeletonPrompts,
    points: Sequence[str],
    index: int,
    max_tokens: int,
) -> PointResult:
    """Expand point ``index``; if that fails, the point keeps its title alone."""
    point_request = sub_request(
        request, prompts.point(request, points, index), max_tokens, f"point{index + 1}"
    )
    response, error = await _once(call_next, point_request)
    if response is None:
        return PointResult(index, points[index], "", Usage(), None, error)
    others = [p for i, p in enumerate(points) if i != index]
    finish = response.choices[0].finish_reason if response.choices else None
    text = drop_restated_opening(
        clean_expansion(response.text, points[index], others), request.last_user_text
    )
    if finish == "length":
        text = trim_to_sentence(text)
    return PointResult(index, points[index], text, response.usage, finish, events=response.events)


async def write_lead(
    request: Request, call_next: Handler, prompts: SkeletonPrompts, max_tokens: int
) -> PointResult:
    """The answer's opening sentence (``index`` -1); none (``text`` empty) if it fails."""
    response, error = await _once(call_next, sub_request(request, prompts.lead(request), max_tokens, "lead"))
    if response is None:
        return PointResult(-1, "", "", Usage(), None, error)
    finish = response.choices[0].finish_reason if response.choices else None
    text = clean_lead(response.text, truncated=finish == "length")
    return PointResult(-1, "", text, response.usage, finish, events=response.events)


async def expand_all(
    request: Request, call_next: Handler, prompts: SkeletonPrompts, points: Sequence[str], max_tokens: int
) -> list[PointResult]:
    """Expand every point concurrently (one batch on a batching backend), in skeleton order."""
    jobs = [expand_point(request, call_next, prompts, points, i, max_tokens) for i in range(len(points))]
    return list(await asyncio.gather(*jobs))


def point_text(index: int, title: str, body: str | None) -> tuple[str, str]:
    """The answer's text for one point, as (head, tail): the numbered title, then ``: body``.

    The head can be sent as soon as all earlier points are done, the tail once this one is.
    """
    head = ("\n" if index else "") + f"{index + 1}. {title}"
    return head, (f": {body}" if body else "")


def lead_text(lead: PointResult | None) -> str:
    """The opening line as sent before the first point (with its line break), or ``""``."""
    return f"{lead.text}\n" if lead is not None and lead.text else ""


def assemble(results: Sequence[PointResult], lead: PointResult | None = None) -> str:
    """The whole answer: the opening line, then every point's head and tail, in order."""
    return lead_text(lead) + "".join("".join(point_text(r.index, r.title, r.text)) for r in results)
