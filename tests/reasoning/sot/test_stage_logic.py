"""The SoT stage's logic on scripted backends: order, parallelism, budgets, failures, options."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tokenlean.errors import BackendError, BadRequestError, ConfigError
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.types import Message, Request
from tokenlean.reasoning.sot import SkeletonStage
from tokenlean.reasoning.sot.router import Route, RouterWeights, SkeletonRouter

from .conftest import LEAD, SlowFake, phase, scripted

QUESTION = (Message("system", "Be helpful."), Message("user", "How can I manage my time better?"))


class FixedRouter:
    """Stands in for the MiniLM router where only the decision matters."""

    def __init__(self, probability: float) -> None:
        self.value = probability
        self.asked: list[str] = []

    def route(self, text: str) -> Route:
        self.asked.append(text)
        return Route(self.value >= 0.5, self.value, "fixed", 0.5)


def pipeline(backend: SlowFake, **options: object) -> Pipeline:
    """SoT forced on; without the opening line unless asked (its own tests are below)."""
    options.setdefault("mode", "on")
    options.setdefault("lead_max_tokens", 0)
    return Pipeline(backend, [SkeletonStage(**options)], policies={"sot": "raise"})  # type: ignore[arg-type]


def sot_events(response) -> list:  # type: ignore[no-untyped-def]
    return [e for e in response.events if e.stage == "sot" and e.action != "timing"]


async def test_points_are_expanded_concurrently_and_assembled_in_order() -> None:
    backend = SlowFake(scripted())
    response = await pipeline(backend)(Request(messages=QUESTION, max_tokens=200))
    assert response.text == (
        "1. Plan the week: body of point 1\n2. Set priorities: body of point 2\n3. Avoid distractions: body of point 3"
    )
    assert [phase(r) for r in backend.requests] == ["skeleton", "point1", "point2", "point3"]
    assert backend.max_in_flight == 3  # all three expansions were in flight together
    point = backend.requests[2]
    assert point.messages[0] == Message("system", "Be helpful.")  # the conversation is kept
    assert "Set priorities" in point.messages[-1].content and "manage my time" in point.messages[-1].content
    [event] = sot_events(response)
    assert event.action == "expanded"
    assert event.data["points"] == 3 and event.data["titles"] == [
        "Plan the week",
        "Set priorities",
        "Avoid distractions",
    ]
    assert event.data["skeleton_ms"] > 0 and event.data["expansion_ms"] > 0 and event.data["routed"] is True
    # usage counts every call: 1 skeleton + 3 points
    assert response.usage.completion_tokens == sum(len(backend.reply(r).split()) for r in backend.requests)


async def test_streaming_gives_the_same_answer_point_by_point() -> None:
    backend = SlowFake(scripted())
    response = await pipeline(backend)(Request(messages=QUESTION, max_tokens=200, stream=True))
    assert response.is_streaming and [e.action for e in sot_events(response)] == ["skeleton"]
    chunks = [chunk async for chunk in response.stream]  # type: ignore[union-attr]
    texts = [c.text for c in chunks if c.text]
    assert texts == [
        "1. Plan the week",
        ": body of point 1",
        "\n2. Set priorities",
        ": body of point 2",
        "\n3. Avoid distractions",
        ": body of point 3",
    ]
    assert chunks[-2].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [e.action for e in chunks[-1].events] == ["expanded"]
    complete = await pipeline(SlowFake(scripted()))(Request(messages=QUESTION, max_tokens=200))
    assert "".join(texts) == complete.text


POINTS = "1. Plan the week: body of point 1\n2. Set priorities: body of point 2\n3. Avoid distractions: body of point 3"


async def test_an_opening_line_is_written_in_the_same_wave_as_the_points() -> None:
    backend = SlowFake(scripted())
    response = await pipeline(backend, lead_max_tokens=24)(Request(messages=QUESTION, max_tokens=200))
    assert response.text == f"{LEAD}\n{POINTS}"
    assert sorted(phase(r) for r in backend.requests[1:]) == ["lead", "point1", "point2", "point3"]
    assert backend.max_in_flight == 4  # the opening line is decoded alongside the points
    lead = next(r for r in backend.requests if phase(r) == "lead")
    assert lead.max_tokens == 24 and lead.messages[0] == Message("system", "Be helpful.")
    assert "manage my time" in lead.messages[-1].content
    [event] = sot_events(response)
    assert event.data["lead"] is True and event.data["lead_tokens"] == len(LEAD.split())
    assert response.usage.completion_tokens == sum(len(backend.reply(r).split()) for r in backend.requests)
    assert event.data["expansion_tokens"] + event.data["skeleton_tokens"] == response.usage.completion_tokens
    streamed = await pipeline(SlowFake(scripted()), lead_max_tokens=24)(
        Request(messages=QUESTION, max_tokens=200, stream=True)
    )
    texts = [c.text async for c in streamed.stream if c.text]  # type: ignore[union-attr]
    assert texts[:2] == [f"{LEAD}\n", "1. Plan the week"] and "".join(texts) == response.text


async def test_a_failed_or_unusable_opening_line_leaves_the_points_alone() -> None:
    backend = SlowFake(scripted(), fail={"lead": 2})
    response = await pipeline(backend, lead_max_tokens=24)(Request(messages=QUESTION, max_tokens=200))
    assert response.text == POINTS and sot_events(response)[0].data["lead"] is False
    assert [phase(r) for r in backend.requests].count("lead") == 1  # not retried by the stage

    def listing(request: Request) -> str:  # a "lead" that is really the list again
        return "1. Plan the week\n2. More" if phase(request) == "lead" else scripted()(request)

    response = await pipeline(SlowFake(listing), lead_max_tokens=24)(
        Request(messages=QUESTION, max_tokens=200)
    )
    assert response.text == POINTS


async def test_the_opening_line_shares_max_tokens_and_yields_to_the_points() -> None:
    backend = SlowFake(scripted())
    await pipeline(backend, lead_max_tokens=24, point_max_tokens=500)(
        Request(messages=QUESTION, max_tokens=100)
    )
    skeleton_tokens = len(backend.reply(backend.requests[0]).split())
    budgets = {phase(r): r.max_tokens for r in backend.requests[1:]}
    room = 100 - skeleton_tokens
    assert budgets["lead"] == min(24, room // 4 - 1)  # at most an equal share of what is left
    assert skeleton_tokens + sum(budgets.values()) + len(budgets) <= 100  # type: ignore[arg-type]
    backend = SlowFake(scripted("1. A\n2. B\n3. C\n"))
    await pipeline(backend, lead_max_tokens=24, min_point_tokens=8)(Request(messages=QUESTION, max_tokens=40))
    assert "lead" not in [phase(r) for r in backend.requests]  # too little room: points only
    with pytest.raises(ConfigError):
        SkeletonStage(lead_max_tokens=-1)


async def test_a_point_is_sent_only_when_all_before_it_are_done() -> None:
    class Staggered(SlowFake):
        async def complete(self, request: Request):  # type: ignore[no-untyped-def]
            if phase(request) == "point1":
                self.delay = 0.3  # the first point is the slowest
            else:
                self.delay = 0.01
            return await super().complete(request)

    response = await pipeline(Staggered(scripted()))(Request(messages=QUESTION, max_tokens=200, stream=True))
    texts = [c.text async for c in response.stream if c.text]  # type: ignore[union-attr]
    assert texts[:3] == ["1. Plan the week", ": body of point 1", "\n2. Set priorities"]


async def test_max_tokens_bounds_the_whole_answer() -> None:
    backend = SlowFake(scripted())
    await pipeline(backend, point_max_tokens=500)(Request(messages=QUESTION, max_tokens=100))
    skeleton, *points = backend.requests
    assert skeleton.max_tokens == 50  # at most half the answer
    skeleton_tokens = len(backend.reply(skeleton).split())
    assert {p.max_tokens for p in points} == {(100 - skeleton_tokens) // 3 - 1}
    assert skeleton_tokens + sum(p.max_tokens for p in points) + len(points) <= 100  # type: ignore[misc]


async def test_a_tight_budget_keeps_fewer_points_or_falls_back() -> None:
    backend = SlowFake(scripted("1. A\n2. B\n3. C\n4. D\n5. E\n6. F\n"))
    response = await pipeline(backend, min_point_tokens=8)(Request(messages=QUESTION, max_tokens=40))
    # skeleton costs 12 "tokens" in the fake; 28 left fit 3 points of at least 8 (+1 separator)
    assert sot_events(response)[0].data["points"] == 3
    backend = SlowFake(scripted("1. A\n2. B\n3. C\n4. D\n5. E\n6. F\n" * 2))
    response = await pipeline(backend, min_point_tokens=8)(Request(messages=QUESTION, max_tokens=40))
    # 24 skeleton tokens leave 16: not enough for two points, so normal generation answers
    assert response.text == "normal answer"
    assert sot_events(response)[0].data["reason"] == "max_tokens leaves no room to expand the points"


async def test_a_failed_expansion_falls_back_to_its_title_without_a_retry() -> None:
    backend = SlowFake(scripted(), fail={"point2": 1})
    response = await pipeline(backend)(Request(messages=QUESTION, max_tokens=200))
    assert (
        response.text
        == "1. Plan the week: body of point 1\n2. Set priorities\n3. Avoid distractions: body of point 3"
    )
    [event] = sot_events(response)
    assert event.data["failed"] == [1]
    assert [phase(r) for r in backend.requests].count("point2") == 1  # the stage retries nothing


async def test_a_failed_expansion_does_not_fail_a_stream() -> None:
    backend = SlowFake(scripted(), fail={"point1": 2})
    response = await pipeline(backend)(Request(messages=QUESTION, max_tokens=200, stream=True))
    read = await response.aread()
    assert read.text.startswith("1. Plan the week\n2. Set priorities: body of point 2")
    assert next(e for e in read.events if e.action == "expanded").data["failed"] == [0]


async def test_when_every_expansion_fails_the_backend_error_surfaces() -> None:
    backend = SlowFake(scripted(), fail={"point1": 2, "point2": 2, "point3": 2})
    with pytest.raises(BackendError, match="point1 failed"):
        await pipeline(backend)(Request(messages=QUESTION, max_tokens=200))
    backend = SlowFake(scripted(), fail={"point1": 2, "point2": 2, "point3": 2})
    response = await pipeline(backend)(Request(messages=QUESTION, max_tokens=200, stream=True))
    with pytest.raises(BackendError, match="point1 failed"):
        await response.aread()


async def test_an_unparseable_skeleton_falls_back_to_normal_generation() -> None:
    backend = SlowFake(scripted("I think you should just try harder."))
    for stream in (False, True):
        response = await (
            await pipeline(backend)(Request(messages=QUESTION, max_tokens=200, stream=stream))
        ).aread()
        assert response.text == "normal answer"
        [event] = sot_events(response)
        assert event.action == "fallback" and event.data["reason"] == "skeleton did not parse"
        # the wasted skeleton still counts: 7 words of skeleton + 2 of answer
        assert response.usage.completion_tokens == 9
    assert phase(backend.requests[-1]) == "normal" and backend.requests[-1].max_tokens == 200


async def test_the_router_decides_in_auto_mode_and_requests_override_it() -> None:
    low, high = FixedRouter(0.1), FixedRouter(0.9)
    backend = SlowFake(scripted())
    response = await pipeline(backend, mode="auto", router=low)(Request(messages=QUESTION, max_tokens=200))
    assert response.text == "normal answer" and low.asked == ["How can I manage my time better?"]
    assert (
        sot_events(response)[0].action == "not_routed" and sot_events(response)[0].data["probability"] == 0.1
    )
    forced = Request(messages=QUESTION, max_tokens=200, options={"sot": "on"})
    response = await pipeline(backend, mode="auto", router=low)(forced)
    assert (
        sot_events(response)[0].action == "expanded" and sot_events(response)[0].data["probability"] is None
    )
    response = await pipeline(backend, mode="auto", router=high)(Request(messages=QUESTION, max_tokens=200))
    assert sot_events(response)[0].action == "expanded" and sot_events(response)[0].data["probability"] == 0.9
    assert sot_events(response)[0].data["threshold"] == 0.5 and sot_events(response)[0].data["routed"] is True
    off = Request(messages=QUESTION, max_tokens=200, options={"sot": {"mode": "OFF"}})
    response = await pipeline(backend, mode="on", router=high)(off)
    assert response.text == "normal answer" and sot_events(response)[0].data["reason"] == "off"


async def test_auto_mode_leaves_short_answers_to_normal_generation_without_routing() -> None:
    high = FixedRouter(0.9)
    backend = SlowFake(scripted())
    short = Request(messages=QUESTION, max_tokens=48)
    response = await pipeline(backend, mode="auto", router=high)(short)
    [event] = sot_events(response)
    assert response.text == "normal answer" and high.asked == []  # the router never ran
    assert event.action == "skipped" and event.data["reason"].startswith("max_tokens below 128")
    forced = Request(messages=QUESTION, max_tokens=48, options={"sot": "on"})
    assert sot_events(await pipeline(backend, mode="auto", router=high)(forced))[0].action == "expanded"
    response = await pipeline(backend, mode="auto", router=high, min_answer_tokens=32)(short)
    assert sot_events(response)[0].action == "expanded" and high.asked == ["How can I manage my time better?"]


class KeywordEmbedder:
    """Stands in for MiniLM: unit vector e0 for texts with "tips", e1 otherwise."""

    dimension = 384

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.eye(384, dtype=np.float32)[[0 if "tips" in t else 1 for t in texts]]


async def test_auto_mode_decides_on_the_calibrated_probability_and_the_weights_threshold(
    tmp_path: Path,
) -> None:
    coef = np.zeros(384, dtype=np.float32)
    coef[0], coef[1] = 2.0, -2.0
    # raw probabilities 0.88 / 0.12; calibrated sigmoid(0.5 * logit) 0.73 / 0.27; threshold 0.8
    RouterWeights(coef, 0.0, 0.8, {}, 0, (0.5, 0.0)).save(tmp_path / "w.npz")
    router = SkeletonRouter(tmp_path / "w.npz", embedder=KeywordEmbedder())
    backend = SlowFake(scripted())
    ask = Request(messages=(Message("user", "Some tips for sleeping well?"),), max_tokens=200)
    [event] = sot_events(await pipeline(backend, mode="auto", router=router)(ask))
    assert event.action == "not_routed" and event.data["routed"] is False  # 0.88 raw would have passed
    assert event.data["probability"] == pytest.approx(0.7311, abs=1e-4) and event.data["threshold"] == 0.8
    assert event.data["route"] == "classifier below 0.8"
    router = SkeletonRouter(tmp_path / "w.npz", embedder=KeywordEmbedder(), threshold=0.7)
    [event] = sot_events(await pipeline(backend, mode="auto", router=router)(ask))
    assert event.action == "expanded" and event.data["routed"] is True and event.data["threshold"] == 0.7


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ("sometimes", "tokenlean.sot"),
        (3, "tokenlean.sot"),
        ({"mode": "yes"}, "tokenlean.sot.mode"),
        ({"moed": "on"}, "tokenlean.sot.moed"),
    ],
)
async def test_a_bad_option_is_a_bad_request_naming_the_field(value: object, param: str) -> None:
    backend = SlowFake(scripted())
    with pytest.raises(BadRequestError) as caught:
        await pipeline(backend)(Request(messages=QUESTION, options={"sot": value}))
    assert caught.value.param == param and backend.requests == []


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (Request(prompt="List three fruits:"), "text completion"),
        (Request(messages=QUESTION, n=2), "n > 1"),
        (Request(messages=QUESTION, tools=({"type": "function"},)), "uses tools"),
        (Request(messages=QUESTION, max_tokens=20), "max_tokens too small"),
    ],
)
async def test_requests_sot_cannot_serve_pass_through_untouched(request_: Request, reason: str) -> None:
    backend = SlowFake(scripted())
    backend.capabilities = dataclasses.replace(backend.capabilities, tools=True)  # so tools reach the stage
    response = await pipeline(backend)(request_)
    assert backend.requests == [request_]
    assert reason in sot_events(response)[0].data["reason"]


def test_the_stage_is_built_from_a_pipeline_spec() -> None:
    spec = PipelineSpec.parse(
        {
            "backend": {"type": "fake"},
            "stages": [
                {
                    "type": "sot",
                    "options": {
                        "mode": "on",
                        "max_points": 4,
                        "point_max_tokens": 64,
                        "skeleton_examples": [["Why exercise?", "1. Health\n2. Mood"]],
                        "lead_max_tokens": 16,
                        "lead_examples": [["Why exercise?", "Exercise pays off in many ways."]],
                    },
                }
            ],
        }
    )
    stage = spec.build().stage("sot")
    assert isinstance(stage, SkeletonStage) and stage.max_points == 4
    assert stage.prompts.skeleton_examples == (("Why exercise?", "1. Health\n2. Mood"),)
    assert stage.lead_max_tokens == 16
    assert stage.prompts.lead_examples == (("Why exercise?", "Exercise pays off in many ways."),)
    for bad in (
        {"mode": "maybe"},
        {"min_points": 1},
        {"skeleton_examples": [["only a question"]]},
        {"lead_examples": [["only a question"]]},
        {"lead_max_tokens": -1},
        {"colour": 1},
    ):
        with pytest.raises(ConfigError):
            PipelineSpec.parse(
                {"backend": {"type": "fake"}, "stages": [{"type": "sot", "options": bad}]}
            ).build()
