"""Scorers on the real embedded model (log-probabilities, agreement) and the answer features."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import ConfigError
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.types import Message, Request
from tokenlean.reasoning.cascade import AgreementScorer, LogprobScorer, build_scorer
from tokenlean.reasoning.cascade.features import FEATURE_NAMES, answer_features, check_equations, final_number
from tokenlean.reasoning.cascade.scorers import normalise_answer

QUESTION = Request(
    messages=(Message("user", "What is the capital of France? Answer in one word."),),
    max_tokens=6,
    temperature=0,
)


async def test_logprob_scorer_on_the_embedded_model(local_backend) -> None:  # type: ignore[no-untyped-def]
    scorer = LogprobScorer()
    request = scorer.prepare(QUESTION)
    response = await local_backend.complete(request)
    values = [entry["logprob"] for entry in response.choices[0].logprobs]
    score = await scorer.score(request, response)
    assert score == pytest.approx(math.exp(sum(values) / len(values)))
    assert 0.0 < score <= 1.0
    least = await LogprobScorer(reduce="min").score(request, response)
    assert least == pytest.approx(math.exp(min(values))) and least <= score
    without = await local_backend.complete(QUESTION)  # no logprobs asked: cannot judge
    assert await scorer.score(QUESTION, without) is None


async def test_agreement_scorer_on_the_embedded_model(local_backend) -> None:  # type: ignore[no-untyped-def]
    scorer = AgreementScorer(samples=3, temperature=1.0)
    request = scorer.prepare(QUESTION.replace(temperature=None, max_tokens=3))
    assert request.n == 3 and request.temperature == 1.0
    response = await local_backend.complete(request)
    assert len(response.choices) == 3
    score = await scorer.score(request, response)
    assert score in {1 / 3, 2 / 3, 1.0}
    counts = Counter(normalise_answer(c.text) for c in response.choices).most_common()
    assert score == pytest.approx(counts[0][1] / 3)
    chosen = scorer.choose(response)
    assert chosen.index == 0 and normalise_answer(chosen.text) == counts[0][0]


async def test_embedded_model_as_cheap_tier(local_backend) -> None:  # type: ignore[no-untyped-def]
    """The embedded model is the pipeline backend (tier ``default``); a fake stands in for the strong tier."""
    spec = PipelineSpec.parse(
        {
            "stages": [
                {
                    "type": "cascade",
                    "policy": "raise",
                    "options": {
                        "scorer": {"type": "logprob"},
                        "tiers": [
                            {"name": "smollm2", "threshold": 0.0},
                            {"name": "big", "backend": {"type": "fake"}},
                        ],
                    },
                }
            ]
        }
    )
    pipeline = Pipeline(
        local_backend, spec.build(backend=local_backend).stages, policies={"cascade": "raise"}
    )
    response = await pipeline(QUESTION)
    event = next(e for e in response.events if e.stage == "cascade" and e.action != "timing")
    assert event.data["tier"] == "smollm2" and 0 < event.data["scores"][0] <= 1
    assert response.model == local_backend.models()[0] and response.text


def test_bad_scorer_specs() -> None:
    with pytest.raises(ConfigError):
        build_scorer({"type": "oracle"})
    with pytest.raises(ConfigError):
        build_scorer({"type": "agreement", "samples": 1})
    with pytest.raises(ConfigError):
        build_scorer({"type": "logprob", "colour": "blue"})
    with pytest.raises(ConfigError) as caught:  # every tier but the last needs a threshold
        PipelineSpec.parse(
            {
                "stages": [
                    {
                        "type": "cascade",
                        "options": {"scorer": {"type": "logprob"}, "tiers": [{"name": "a"}, {"name": "b"}]},
                    }
                ]
            }
        ).build(backend=FakeBackend())
    assert "threshold" in caught.value.message


def test_arithmetic_checks() -> None:
    answer = (
        "He has 20 + 80/2 = 55 apples, then 3 x 4 = <<3*4=12>>12 pears and 12 * 2 = 24 + 1 = 25.\n#### 25"
    )
    pairs = check_equations(answer)
    assert (60.0, 55.0) in pairs and (12.0, 12.0) in pairs and (25.0, 25.0) in pairs
    assert (24.0, 25.0) not in pairs  # "12 * 2 = 24 + 1 = 25" continues from 24: no false alarm
    assert final_number(answer) == 25.0 and final_number("so the total is $1,250.") == 1250.0
    features = dict(zip(FEATURE_NAMES, answer_features("If he has 20 apples and 80 pears...", answer)))
    assert features["equations_wrong"] == 1 and features["final_equals_last_result"] == 1
    clean = dict(zip(FEATURE_NAMES, answer_features("x", "2 * 3 = <<2*3=6>>6\n#### 6")))
    assert clean["equations_wrong"] == 0 and clean["truncated"] == 0
    cut = dict(zip(FEATURE_NAMES, answer_features("x", "so 20 + 5 = <<20+5")))
    assert cut["truncated"] == 1 and cut["has_final_marker"] == 0
