"""The lean default pipeline on each slice of the mixed workload: the events show the intended decisions,
and the composition rules of docs/profiles.md hold (real SmolLM2, real MiniLM, real public data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unavailable
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.types import Message, Request, Response

pytestmark = pytest.mark.slow
DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
SYSTEM = "Answer the question from the documents. Answer with a few words only."


class Recorder:
    """The shared embedded backend, recording every request that reaches it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.capabilities, self.seen = inner, inner.capabilities, []

    async def complete(self, request: Request) -> Response:
        self.seen.append(request)
        return await self.inner.complete(request)

    def models(self) -> list[str]:
        return list(self.inner.models())

    async def aclose(self) -> None:
        return None


def _data(path: str) -> Path:
    if not (DATA / path).exists():
        unavailable(f"../shared/data/{path} is missing")
    return DATA / path


@pytest.fixture(scope="module")
def sst2_pool() -> Any:
    from tokenlean.selectors import DemoPool, Example

    labels = {"0": "negative", "1": "positive"}
    lines = _data("icl_classification/sst2/stsa.binary.train").read_text().splitlines()[:300]
    return DemoPool.build("sst2", [Example(line[2:], labels[line[0]], labels[line[0]]) for line in lines])


@pytest.fixture
def lean(shared_backend: Any, sst2_pool: Any) -> tuple[Pipeline, Recorder]:
    recorder = Recorder(shared_backend)
    spec = PipelineSpec.parse(
        {
            "profile": "lean",
            "stages": [
                {"type": "cache", "options": {"semantic": False}},  # exact keys: no MiniLM decision model
                {"type": "demos", "options": {"pools": {"sst2": sst2_pool}, "pool": "sst2"}},
            ],
        }
    )
    return spec.build(recorder), recorder


def _ask(model: str, messages: list[tuple[str, str]], max_tokens: int = 8, **options: Any) -> Request:
    return Request(
        messages=tuple(Message(r, c) for r, c in messages),
        model=model,
        max_tokens=max_tokens,
        temperature=0,
        options=options,
    )


def _actions(response: Response, stage: str) -> list[str]:
    return [e.action for e in response.events if e.stage == stage and e.action != "timing"]


def _hotpot() -> tuple[str, str]:
    row = json.loads(_data("multidoc_qa/hipporag_v1_samples/hotpotqa_train.json").read_text())[0]
    docs = "\n\n".join(f"{title}\n{''.join(s).strip()}" for title, s in row["context"])
    return docs, row["question"]


def test_stage_order_is_the_documented_one(lean: tuple[Pipeline, Recorder]) -> None:
    pipeline, _ = lean
    assert [s.name for s in pipeline.stages] == ["cache", "demos", "compress", "sot"]


async def test_chat_slice_repeat_hits_and_no_demos_for_chat(
    lean: tuple[Pipeline, Recorder], model_name: str
) -> None:
    pipeline, recorder = lean
    question = _ask(model_name, [("user", "What is the capital of France?")])
    first = await pipeline(question)
    assert _actions(first, "cache") == ["miss"]
    assert _actions(first, "demos") == [
        "skipped"
    ]  # the relevance gate: a chat question gets no sentiment demos
    assert _actions(first, "compress") == ["skipped"]  # short
    assert recorder.seen[-1].messages == question.messages
    again = await pipeline(question.replace(request_id="again"))
    assert _actions(again, "cache") == ["hit"] and again.text == first.text
    assert len(recorder.seen) == 1


async def test_rag_slice_is_compressed_system_prompt_kept_and_cached_under_the_client_key(
    lean: tuple[Pipeline, Recorder], model_name: str
) -> None:
    pipeline, recorder = lean
    docs, question = _hotpot()
    request = _ask(model_name, [("system", SYSTEM), ("user", f"{docs}\n\nQuestion: {question}")])
    response = await pipeline(request)
    assert _actions(response, "compress") == ["compressed"]
    sent = recorder.seen[-1]
    assert sent.messages[0].content == SYSTEM  # byte-identical: a prefix cache still matches it
    assert len(sent.messages[1].content) < len(request.messages[1].content)
    assert sent.messages[1].content.endswith(f"Question: {question}")  # the question is never cut
    cache = pipeline.stage("cache")
    assert await cache.lookup(request) is not None  # stored under the request the client sent
    assert await cache.lookup(sent) is None  # never under the compressed one
    hit = await pipeline(request.replace(request_id="again"))
    assert _actions(hit, "cache") == ["hit"] and len(recorder.seen) == 1


async def test_classify_slice_gets_demos_before_compression(
    lean: tuple[Pipeline, Recorder], model_name: str
) -> None:
    pipeline, recorder = lean
    system = "Classify the sentiment of the movie review. Answer with one word: positive or negative."
    review = "a gorgeous , witty , seductive movie that keeps you smiling long after it ends ."
    response = await pipeline(_ask(model_name, [("system", system), ("user", review)], max_tokens=3))
    assert _actions(response, "demos") == ["inserted"]
    assert _actions(response, "compress") == ["skipped"]  # four short demos are not long context
    sent = recorder.seen[-1]
    assert sent.messages[0].content == system and len(sent.messages) > 2


async def test_gsm8k_slice_examples_are_compressed_once_and_the_prefix_reused(
    lean: tuple[Pipeline, Recorder], model_name: str
) -> None:
    pipeline, recorder = lean
    shots = _data("gsm8k/prompt_original.txt").read_text().strip()
    rows = [json.loads(line) for line in _data("gsm8k/test.jsonl").read_text().splitlines()[:2]]
    events, sent = [], []
    for row in rows:
        question = f"Question: {row['question']}\nLet's think step by step"
        response = await pipeline(_ask(model_name, [("user", f"{shots}\n\n{question}")], max_tokens=8))
        events.append(response.events)
        sent.append(recorder.seen[-1].messages[0].content)
        assert sent[-1].endswith(question)
    compress = [next(e for e in ev if e.stage == "compress" and e.action != "timing") for ev in events]
    assert all(c.action == "compressed" and c.data["tokens_saved"] > 200 for c in compress)
    assert [c.data["examples_memo"] for c in compress] == ["miss", "hit"]
    assert sent[0].rsplit("\n\nQuestion:", 1)[0] == sent[1].rsplit("\n\nQuestion:", 1)[0]
    prefix = next(e for e in events[1] if e.stage == "prefix")  # the embedded backend's KV reuse
    assert prefix.action == "hit" and prefix.data["reused_tokens"] > 200


async def test_list_slice_sot_sub_requests_report_the_backend_events(
    lean: tuple[Pipeline, Recorder], model_name: str
) -> None:
    pipeline, recorder = lean
    ask = "What are some tips for staying productive while working from home?"
    response = await pipeline(_ask(model_name, [("user", ask)], max_tokens=96, sot="on"))
    assert _actions(response, "sot") in (["expanded"], ["fallback"])
    assert len(recorder.seen) >= 2  # skeleton, then points (or the normal answer after a fallback)
    below = {e.stage for e in response.events} & {"prefix", "draft"}
    assert below, "the sub-calls' backend events (prefix reuse, drafting) must reach the response"
    assert recorder.seen[0].request_id.endswith("-sot-skeleton")  # SoT's own call, through the stages below


async def test_list_slice_router_keeps_maths_out(lean: tuple[Pipeline, Recorder], model_name: str) -> None:
    pipeline, _ = lean
    # 128: the smallest budget at which the lean profile lets SoT's router decide at all
    response = await pipeline(_ask(model_name, [("user", "Solve 3x + 7 = 22 for x.")], max_tokens=128))
    assert _actions(response, "sot") == ["not_routed"]


def test_a_cascade_sits_below_compression(sst2_pool: Any) -> None:
    spec = PipelineSpec.parse(
        {"profile": "lean", "stages": [{"type": "cascade", "options": {"cascades": {"c": {}}}}]}
    )
    order = [s.type for s in spec.resolved().stages]
    assert order.index("compress") < order.index(
        "cascade"
    )  # every tier, the cheap one too, gets the compressed request
