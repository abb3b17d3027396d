"""Demonstrations only where they belong: the relevance test, its overrides and its events.

Real MiniLM, real SST-2 sentences; the backend is the FakeBackend (it echoes the request).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.demos.conftest import PARAPHRASES
from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.types import Event, Message, Request, Response
from tokenlean.selectors import DemoPool, DemoStage, Example
from tokenlean.selectors.relevance import (
    PoolGate,
    RelevanceRule,
    answer_labels,
    calibrate,
    calibrate_gate,
    neighbour_scores,
    relevance_score,
)

CHAT = "What is the capital of France?"
REVIEW = "A gorgeous, funny and deeply moving film; the cast is terrific."
SENTIMENT = Message("system", "Classify the sentiment of the movie review: positive or negative.")


async def _send(stage: DemoStage, request: Request) -> tuple[FakeBackend, Response]:
    fake = FakeBackend()
    response = await Pipeline(fake, [stage], default_policy="raise")(request)
    return fake, response


def _event(response: Response) -> Event:
    (event,) = [e for e in response.events if e.stage == "demos" and e.action != "timing"]
    return event


async def test_a_chat_question_gets_no_sentiment_demos_and_an_event_saying_why(sst2_pool: DemoPool) -> None:
    stage = DemoStage(pools={"sst2": sst2_pool}, pool="sst2", k=4)
    request = Request(messages=(Message("user", CHAT),))
    fake, response = await _send(stage, request)
    assert fake.requests[0].messages == request.messages
    event = _event(response)
    assert event.action == "skipped" and event.data["reason"] == "not similar"
    assert event.data["score"] < event.data["threshold"] and event.data["pool"] == "sst2"


async def test_a_movie_review_still_gets_its_demos(sst2_pool: DemoPool) -> None:
    stage = DemoStage(pools={"sst2": sst2_pool}, pool="sst2", k=4)
    fake, response = await _send(stage, Request(messages=(SENTIMENT, Message("user", REVIEW))))
    event = _event(response)
    assert event.action == "inserted" and event.data["chosen"] == 4
    assert event.data["relevance"]["reason"] == "similar"
    assert event.data["relevance"]["score"] >= event.data["relevance"]["threshold"]
    assert len(fake.requests[0].messages) == 2 + 2 * 4


@pytest.mark.parametrize(("threshold", "action"), [(-1, "inserted"), ("off", "inserted"), (0.99, "skipped")])
async def test_a_request_overrides_the_threshold(sst2_pool: DemoPool, threshold: Any, action: str) -> None:
    stage = DemoStage(pools={"sst2": sst2_pool}, pool="sst2", k=2)
    query = REVIEW if action == "skipped" else CHAT
    options = {"demos": {"threshold": threshold}}
    _, response = await _send(stage, Request(messages=(Message("user", query),), options=options))
    assert _event(response).action == action


@pytest.mark.parametrize("threshold", [2, True, "always", None])
async def test_a_bad_request_threshold_names_the_field(sst2_pool: DemoPool, threshold: Any) -> None:
    stage = DemoStage(pools={"sst2": sst2_pool}, pool="sst2")
    request = Request(messages=(Message("user", REVIEW),), options={"demos": {"threshold": threshold}})
    with pytest.raises(BadRequestError) as caught:
        await _send(stage, request)
    assert caught.value.param == "tokenlean.demos.threshold"


def _spec_stage(tmp_path: Path, **entry: Any) -> Pipeline:
    source = tmp_path / "faq.jsonl"
    source.write_text(
        "".join(json.dumps({"input": t, "output": label}) + "\n" for t, label, _ in PARAPHRASES)
    )
    options = {"pools": {"faq": {"path": str(source), **entry}}, "pool": "faq", "k": 1}
    spec = {"backend": {"type": "fake"}, "stages": [{"type": "demos", "policy": "raise", "options": options}]}
    return PipelineSpec.parse(spec).build()


async def test_a_pool_entry_threshold_overrides_the_calibrated_one(tmp_path: Path) -> None:
    strict = _spec_stage(tmp_path, threshold=0.99)
    response = await strict(Request(messages=(Message("user", PARAPHRASES[0][2]),)))
    assert _event(response).action == "skipped" and _event(response).data["threshold"] == 0.99
    calibrated = _spec_stage(tmp_path)
    response = await calibrated(Request(messages=(Message("user", PARAPHRASES[0][2]),)))
    assert _event(response).action == "inserted"


async def test_a_route_decides_by_the_system_prompt_alone(tmp_path: Path) -> None:
    routed = _spec_stage(tmp_path, route="(?i)customer questions")
    system = Message("system", "You answer customer questions briefly.")
    response = await routed(Request(messages=(system, Message("user", CHAT))))
    assert _event(response).action == "inserted" and _event(response).data["relevance"]["reason"] == "route"
    response = await routed(Request(messages=(Message("user", PARAPHRASES[0][2]),)))
    assert _event(response).action == "skipped" and _event(response).data["reason"] == "no route match"


@pytest.mark.parametrize(
    ("entry", "param"),
    [
        ({"threshold": 1.5}, "pools.faq.threshold"),
        ({"route": "("}, "pools.faq.route"),
        ({"route": 3}, "pools.faq.route"),
    ],
)
def test_a_bad_threshold_or_route_fails_at_startup(entry: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DemoStage(pools={"faq": {"path": "faq.jsonl", **entry}})
    assert caught.value.param == param
    with pytest.raises(ConfigError):
        DemoStage(pools={}, threshold="sometimes")


def test_leave_one_out_never_counts_an_example_as_its_own_neighbour(paraphrase_pool: DemoPool) -> None:
    own = neighbour_scores(paraphrase_pool, RelevanceRule(k=1))
    assert len(own) == len(paraphrase_pool) and float(own.max()) < 0.99
    assert relevance_score(paraphrase_pool, paraphrase_pool.vectors[0], k=1) == pytest.approx(1.0, abs=1e-5)


def test_a_tightly_clustered_pool_gets_a_higher_threshold_than_a_diverse_one(
    paraphrase_pool: DemoPool, sst2_pool: DemoPool, embedder: Any
) -> None:
    texts = [f"Where is my order number {n}? It has not arrived yet." for n in range(12)]
    tight = DemoPool.build("orders", [Example(t, "orders") for t in texts], embedder=embedder)
    assert calibrate(tight) > calibrate(sst2_pool) > calibrate(paraphrase_pool)
    assert calibrate(DemoPool.build("one", [Example("x", "y")], embedder=embedder)) == -1.0


def test_a_classification_pool_has_answer_labels_and_a_faq_pool_does_not(
    sst2_pool: DemoPool, paraphrase_pool: DemoPool
) -> None:
    assert answer_labels(sst2_pool) == ("negative", "positive")
    assert answer_labels(paraphrase_pool) == ()  # eleven outputs over sixteen examples: free-form


def test_naming_the_labels_loosens_the_threshold_and_the_event_says_so(sst2_pool: DemoPool) -> None:
    gate = calibrate_gate(sst2_pool)
    assert gate.unnamed is not None and gate.named < gate.unnamed
    assert gate.names_labels(SENTIMENT.content)
    assert not gate.names_labels("I feel positively great today")  # a word, not the label
    named = gate.decide(gate.named, SENTIMENT.content)
    assert named.applies and named.data()["labels_named"] is True
    unnamed = gate.decide(gate.named, CHAT)
    assert not unnamed.applies and unnamed.threshold == gate.unnamed and unnamed.labels_named is False


async def test_a_review_without_its_instruction_must_clear_the_strict_threshold(sst2_pool: DemoPool) -> None:
    stage = DemoStage(pools={"sst2": sst2_pool}, pool="sst2", k=2)
    _, with_instruction = await _send(stage, Request(messages=(SENTIMENT, Message("user", REVIEW))))
    _, bare = await _send(stage, Request(messages=(Message("user", REVIEW),)))
    gate = calibrate_gate(sst2_pool)
    assert _event(with_instruction).data["relevance"]["threshold"] == round(gate.named, 4)
    bare_data = _event(bare).data
    bare_data = bare_data.get("relevance", bare_data)
    assert bare_data["threshold"] == round(gate.unnamed or 0.0, 4) and bare_data["labels_named"] is False


def test_without_a_strict_threshold_unnamed_labels_mean_no_demos(sst2_pool: DemoPool) -> None:
    gate = calibrate_gate(sst2_pool, RelevanceRule(unnamed_quantile=None))
    decision = gate.decide(1.0, CHAT)
    assert not decision.applies and decision.reason == "labels not named"
    true_false = PoolGate(("False", "True"), 0.3, None)
    assert true_false.names_labels("premise ... question: it rained. true or false?")


async def test_an_instruction_inside_the_user_turn_is_read_past(sst2_pool: DemoPool) -> None:
    gate = calibrate_gate(sst2_pool)
    inline = f"{SENTIMENT.content}\n\n{REVIEW}"
    assert gate.without_instruction(inline) == REVIEW
    assert gate.without_instruction(REVIEW) is None and gate.without_instruction(SENTIMENT.content) is None
    vector = sst2_pool.embed_query(inline)
    score = relevance_score(sst2_pool, vector)
    text, _, nearer = gate.nearer_reading(sst2_pool, inline, vector, score)
    assert text == REVIEW and nearer > score
    stage = DemoStage(pools={"sst2": sst2_pool}, pool="sst2", k=2)
    _, response = await _send(stage, Request(messages=(Message("user", inline),)))
    event = _event(response)
    assert event.action == "inserted" and event.data["relevance"]["labels_named"] is True
