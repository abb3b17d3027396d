"""CascadeStage: escalation exactly below threshold, costs, failing tiers, streaming, options."""

from __future__ import annotations

import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import BackendUnavailableError, BadRequestError, UnknownModelError
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.types import Message, Request
from tokenlean.reasoning.cascade import Cascade, CascadeStage, Tier, cascade_models, resolve_cascade_model

QUESTION = Request(messages=(Message("user", "What is two plus two?"),), model="whatever")


def tier(name, backend, threshold=None, cost_input=0.0, cost_output=0.0):  # type: ignore[no-untyped-def]
    return Tier(name, backend, name + "-model", cost_input, cost_output, threshold)


def two_tier_pipeline(kit, score, threshold, *, cheap=None, escalate_on_error=True):  # type: ignore[no-untyped-def]
    cheap = cheap or kit.replying("cheap answer four", "cheap-model")
    strong = kit.replying("strong answer is 4", "strong-model")
    tiers = (tier("cheap", cheap, threshold, 1e-6, 2e-6), tier("strong", strong, None, 1e-5, 3e-5))
    stage = CascadeStage({"c": Cascade("c", tiers, kit.FixedScorer(score), escalate_on_error)}, default="c")
    return Pipeline(FakeBackend(model="pipeline"), [stage], policies={"cascade": "raise"}), cheap, strong


def cascade_event(response):  # type: ignore[no-untyped-def]
    return next(e for e in response.events if e.stage == "cascade" and e.action != "timing")


@pytest.mark.parametrize(
    ("score", "threshold", "answered_by"),
    [
        (0.7, 0.7, "cheap"),
        (0.7000001, 0.7, "cheap"),
        (0.6999999, 0.7, "strong"),
        (0.0, 0.0, "cheap"),
        (None, 0.0, "strong"),
    ],
)
async def test_escalates_exactly_below_threshold(kit, score, threshold, answered_by) -> None:  # type: ignore[no-untyped-def]
    pipeline, cheap, strong = two_tier_pipeline(kit, score, threshold)
    response = await pipeline(QUESTION)
    event = cascade_event(response)
    assert event.data["tier"] == answered_by
    assert response.text == ("cheap answer four" if answered_by == "cheap" else "strong answer is 4")
    assert len(cheap.requests) == 1 and len(strong.requests) == (answered_by == "strong")
    assert event.data["tiers_tried"] == (["cheap"] if answered_by == "cheap" else ["cheap", "strong"])
    assert event.action == ("accepted" if answered_by == "cheap" else "escalated")


async def test_costs_add_up(kit) -> None:  # type: ignore[no-untyped-def]
    pipeline, _cheap, _strong = two_tier_pipeline(kit, 0.1, 0.5)
    escalated = cascade_event(await pipeline(QUESTION)).data
    # FakeBackend counts words: prompt 5, cheap answer 3, strong answer 4.
    cheap_cost, strong_cost = 5 * 1e-6 + 3 * 2e-6, 5 * 1e-5 + 4 * 3e-5
    assert escalated["cost"] == pytest.approx(cheap_cost + strong_cost)
    assert escalated["baseline_cost"] == pytest.approx(strong_cost) and not escalated["baseline_estimated"]
    assert escalated["saved"] == pytest.approx(-cheap_cost)
    assert (escalated["prompt_tokens"], escalated["completion_tokens"]) == (10, 7)

    pipeline, _, _ = two_tier_pipeline(kit, 0.9, 0.5)
    accepted = cascade_event(await pipeline(QUESTION)).data
    assert accepted["cost"] == pytest.approx(cheap_cost)
    assert accepted["baseline_cost"] == pytest.approx(5 * 1e-5 + 3 * 3e-5) and accepted["baseline_estimated"]
    assert accepted["saved"] == pytest.approx(accepted["baseline_cost"] - cheap_cost)


async def test_failing_tier_escalates(kit) -> None:  # type: ignore[no-untyped-def]
    down = kit.FailingBackend(model="down")
    pipeline, _, _strong = two_tier_pipeline(kit, 1.0, 0.5, cheap=down)
    response = await pipeline(QUESTION)
    event = cascade_event(response)
    assert response.text == "strong answer is 4" and len(down.requests) == 1
    assert event.data["tier"] == "strong" and event.data["tiers_tried"] == ["cheap", "strong"]
    assert event.data["errors"] == [{"tier": "cheap", "error": "BackendUnavailableError: connection refused"}]
    assert event.data["cost"] == pytest.approx(5 * 1e-5 + 4 * 3e-5)


async def test_failing_tier_raises_when_configured(kit) -> None:  # type: ignore[no-untyped-def]
    pipeline, _, strong = two_tier_pipeline(
        kit, 1.0, 0.5, cheap=kit.FailingBackend(), escalate_on_error=False
    )
    with pytest.raises(BackendUnavailableError):
        await pipeline(QUESTION)
    assert strong.requests == []
    pipeline, _, _ = two_tier_pipeline(kit, 1.0, 0.5, cheap=kit.FailingBackend())
    options = {"cascade": {"escalate_on_error": False}}
    with pytest.raises(BackendUnavailableError):
        await pipeline(QUESTION.replace(options=options))


async def test_failure_from_the_pipeline_backend_escalates(kit) -> None:  # type: ignore[no-untyped-def]
    """A ``default`` tier goes through call_next; its failure comes up through the pipeline."""
    strong = kit.replying("strong answer is 4", "strong-model")
    tiers = (Tier("local", None, None, 0.0, 0.0, 0.5), tier("strong", strong))
    stage = CascadeStage({"c": Cascade("c", tiers, kit.FixedScorer(1.0))}, default="c")
    pipeline = Pipeline(kit.FailingBackend(model="pipeline"), [stage])
    response = await pipeline(QUESTION)
    assert response.text == "strong answer is 4"
    assert cascade_event(response).data["errors"][0]["error"].startswith("BackendUnavailableError")


async def test_stream_sends_only_the_accepted_answer(kit) -> None:  # type: ignore[no-untyped-def]
    for score, expected, tier_name in (
        (0.9, "cheap answer four", "cheap"),
        (0.1, "strong answer is 4", "strong"),
    ):
        pipeline, _, strong = two_tier_pipeline(kit, score, 0.5)
        response = await pipeline(QUESTION.replace(stream=True))
        assert response.is_streaming
        chunks = [chunk async for chunk in response.stream]
        assert "".join(c.text for c in chunks) == expected
        events = [e for c in chunks for e in c.events if e.stage == "cascade"]
        assert len(events) == 1 and events[0].data["tier"] == tier_name and events[0].data["cost"] > 0
        if tier_name == "strong":
            assert strong.requests[0].stream  # the last tier is streamed through
        assert any(c.finish_reason == "stop" for c in chunks)


async def test_model_name_selects_cascade() -> None:
    pipeline = PipelineSpec.from_file(
        __import__("pathlib").Path(__file__).with_name("cascade_spec.yaml")
    ).build()
    assert sorted(cascade_models(pipeline)) == ["cascade:always-strong", "cascade:cheap-first"]
    assert resolve_cascade_model(pipeline, "cascade:always-strong") == "always-strong"
    assert resolve_cascade_model(pipeline, "gpt-4o") is None
    with pytest.raises(UnknownModelError):
        resolve_cascade_model(pipeline, "cascade:nope")
    cheap = await pipeline(QUESTION.replace(model="cascade:cheap-first"))
    strong = await pipeline(QUESTION.replace(model="cascade:always-strong"))
    default = await pipeline(QUESTION)
    assert (cheap.model, strong.model, default.model) == ("small-model", "large-model", "small-model")
    assert cascade_event(strong).data["scores"] == [1.0]  # three agreeing samples, still below 1.01
    with pytest.raises(UnknownModelError):
        await pipeline(QUESTION.replace(model="cascade:nope"))
    await pipeline.aclose()


@pytest.mark.parametrize(
    ("option", "param"),
    [
        ({"cascade": "nope"}, "tokenlean.cascade.cascade"),
        ({"thresholds": [0.1, 0.2]}, "tokenlean.cascade.thresholds"),
        ({"threshold": 0.1}, "tokenlean.cascade.threshold"),
        ({"enabled": "no"}, "tokenlean.cascade.enabled"),
        (42, "tokenlean.cascade"),
    ],
)
async def test_bad_options_name_the_field(kit, option, param) -> None:  # type: ignore[no-untyped-def]
    pipeline, _, _ = two_tier_pipeline(kit, 0.9, 0.5)
    with pytest.raises(BadRequestError) as caught:
        await pipeline(QUESTION.replace(options={"cascade": option}))
    assert caught.value.param == param


async def test_per_request_thresholds_and_disable(kit) -> None:  # type: ignore[no-untyped-def]
    pipeline, _cheap, _strong = two_tier_pipeline(kit, 0.6, 0.5)
    escalated = await pipeline(QUESTION.replace(options={"cascade": {"thresholds": [0.61]}}))
    assert cascade_event(escalated).data["tier"] == "strong"
    passed = await pipeline(QUESTION.replace(options={"cascade": False}))
    assert passed.model == "pipeline" and not [
        e for e in passed.events if e.stage == "cascade" and e.action != "timing"
    ]


async def test_n_above_one_goes_to_the_last_tier(kit) -> None:  # type: ignore[no-untyped-def]
    pipeline, cheap, strong = two_tier_pipeline(kit, 0.9, 0.5)
    response = await pipeline(QUESTION.replace(n=2))
    assert len(response.choices) == 2 and cheap.requests == [] and len(strong.requests) == 1
    assert cascade_event(response).action == "skipped"


@pytest.mark.parametrize(
    ("options", "where"),
    [
        (
            {
                "scorer": {"type": "logprob"},
                "tiers": [{"name": "a", "threshold": 0.5, "colour": 1}, {"name": "b"}],
            },
            "tiers.0.colour",
        ),
        ({"scorer": {"type": "logprob"}, "tiers": [{"name": "a", "threshold": 0.5}]}, "tiers"),
        (
            {"scorer": {"type": "logprob"}, "tiers": [{"threshold": 0.5, "cost_input": -1}, {}]},
            "tiers.0.cost_input",
        ),
        ({"cascades": {}, "default": "x"}, ""),
    ],
)
def test_bad_specs_name_the_key(options, where) -> None:  # type: ignore[no-untyped-def]
    from tokenlean.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        CascadeStage.from_spec(options, backend=FakeBackend())
    assert where in (caught.value.param or "")


async def test_warm_up_reaches_the_scorers_that_have_one(kit) -> None:  # type: ignore[no-untyped-def]
    class Loading(kit.FixedScorer):  # type: ignore[misc,name-defined]
        async def warm_up(self) -> None:
            self.seen.append("warmed")

    loading, plain = Loading(1.0), kit.FixedScorer(1.0)
    tiers = (tier("t", FakeBackend()),)
    await CascadeStage({"a": Cascade("a", tiers, loading), "b": Cascade("b", tiers, plain)}).warm_up()
    assert loading.seen == ["warmed"] and plain.seen == []
