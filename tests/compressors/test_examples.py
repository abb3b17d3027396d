"""Worked examples: the label test and the memo (pure logic), and the stage reusing compressed examples."""

from __future__ import annotations

import threading
import time

import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.compressors.chat import prefix_digests, split_request
from tokenlean.compressors.examples import ExampleMemo, leading_examples
from tokenlean.compressors.stage import CompressionStage
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.types import Event, Message, Request

from .conftest import DATA, hotpot_documents

SHOTS = (DATA / "gsm8k" / "prompt_original.txt").read_text().strip()
QUESTIONS = (
    "Tom has 3 boxes of 12 pencils and gives away 7. How many pencils does he have left?",
    "A train travels 60 miles an hour for 3 hours. How far does it go?",
    "Mia bakes 4 trays of 9 cookies and eats 5. How many cookies are left?",
)


def _words(text: str) -> int:
    return len(text.split())


def _split(*messages: Message):  # type: ignore[no-untyped-def]
    request = Request(messages=messages, model="fake")
    return request, split_request(request, _words, min_block_tokens=3)


def test_digests_match_only_while_everything_before_matches() -> None:
    first, split_a = _split(Message("user", "one two three\n\nfour five six\n\nseven eight nine\n\nask?"))
    same_head, split_b = _split(Message("user", "one two three\n\nfour five six\n\nother words here\n\nask?"))
    other_role, split_c = _split(Message("system", "one two three\n\nfour five six\n\nseven eight nine"))
    a, b, c = (
        prefix_digests(r, s) for r, s in ((first, split_a), (same_head, split_b), (other_role, split_c))
    )
    assert len(a) == len(b) == 3
    assert a[:2] == b[:2] and a[2] != b[2]
    assert not set(a) & set(c)  # the role is part of the text


def test_an_example_run_is_computed_once_even_when_asked_for_concurrently() -> None:
    memo = ExampleMemo()
    calls: list[int] = []

    def compute() -> tuple[str, ...]:
        calls.append(1)
        time.sleep(0.05)  # hold the gate while the other threads arrive
        return ("short",)

    results: list[tuple[tuple[str, ...], bool]] = []
    threads = [
        threading.Thread(target=lambda: results.append(memo.compressed(("k",), compute))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert sorted(hit for _, hit in results) == [False, True, True, True]
    assert {blocks for blocks, _ in results} == {("short",)}


def test_a_failed_computation_is_not_kept() -> None:
    memo = ExampleMemo()

    def fail() -> tuple[str, ...]:
        raise RuntimeError("scorer down")

    with pytest.raises(RuntimeError):
        memo.compressed(("k",), fail)
    assert not memo.has(("k",))
    assert memo.compressed(("k",), lambda: ("x",)) == (("x",), False)


def test_examples_are_told_from_documents(hotpot_sample) -> None:  # type: ignore[no-untyped-def]
    shots = SHOTS.split("\n\n")
    assert leading_examples(shots) == len(shots) == 8
    reviews = ["Review: fine film\nSentiment: positive", "Review: dull\nSentiment: negative", "Notes: other"]
    assert leading_examples(reviews) == 2  # the run ends where the label changes
    assert leading_examples(hotpot_documents(hotpot_sample)) == 0
    assert leading_examples(["Passage: one text", "Passage: another text"]) == 0  # a document label
    assert leading_examples(["Question: only one example", "Other text"]) == 0
    assert leading_examples([]) == 0


def _gsm8k(question: str) -> Request:
    content = f"{SHOTS}\n\nQuestion: {question}\nLet's think step by step"
    return Request(messages=(Message("user", content),), model="fake")


def _event(events: tuple[Event, ...]) -> Event:
    return next(e for e in events if e.stage == "compress" and e.action != "timing")


async def test_examples_are_compressed_once_and_sent_byte_identical() -> None:
    stage = CompressionStage(rate=0.5, min_prompt_tokens=400)
    backend = FakeBackend()
    pipeline = Pipeline(backend, [stage], policies={"compress": "raise"})
    events = [_event((await pipeline(_gsm8k(q))).events) for q in QUESTIONS]
    assert [e.data["examples_memo"] for e in events] == ["miss", "hit", "hit"]
    assert {e.data["examples"] for e in events} == {8} and {e.data["mode"] for e in events} == {"plain"}
    sent = [r.messages[0].content for r in backend.requests]
    heads = {text.rsplit("\n\nQuestion:", 1)[0] for text in sent}
    assert len(heads) == 1  # the same compressed examples, byte for byte
    assert all(text.endswith(f"Question: {q}\nLet's think step by step") for text, q in zip(sent, QUESTIONS))
    ratios = [e.data["tokens_after"] / e.data["tokens_before"] for e in events]
    assert all(0.4 <= ratio <= 0.6 for ratio in ratios), ratios  # the rate holds with reuse too


async def test_blocks_after_the_examples_are_compressed_with_the_question(hotpot_sample) -> None:  # type: ignore[no-untyped-def]
    stage = CompressionStage(rate=0.5, min_prompt_tokens=400)
    backend = FakeBackend()
    pipeline = Pipeline(backend, [stage], policies={"compress": "raise"})
    documents = hotpot_documents(hotpot_sample)
    for n, document in enumerate(documents[:3]):
        content = f"{SHOTS}\n\n{document}\n\nQuestion: {QUESTIONS[0]}"
        event = _event((await pipeline(Request(messages=(Message("user", content),), model="fake"))).events)
        assert event.data["examples_memo"] == ("hit" if n else "miss") and event.data["mode"] == "auto"
        assert event.data["blocks"] == event.data["examples"] + 1
    sent = backend.requests[-1].messages[0].content
    assert sent.endswith(f"Question: {QUESTIONS[0]}")
    assert documents[2] not in sent  # the request's own document was compressed too


async def test_documents_sent_again_keep_question_aware_compression(hotpot_sample) -> None:  # type: ignore[no-untyped-def]
    stage = CompressionStage(rate=0.5, min_prompt_tokens=400)
    pipeline = Pipeline(FakeBackend(), [stage], policies={"compress": "raise"})
    documents = "\n\n".join(hotpot_documents(hotpot_sample))
    for question in (hotpot_sample["question"], "Which of these was published in Philadelphia?"):
        request = Request(messages=(Message("user", f"{documents}\n\nQuestion: {question}"),), model="fake")
        event = _event((await pipeline(request)).events)
        assert event.action == "compressed" and "examples" not in event.data and event.data["mode"] == "auto"


async def test_reuse_can_be_turned_off() -> None:
    stage = CompressionStage(rate=0.5, min_prompt_tokens=400, reuse_examples=False)
    pipeline = Pipeline(FakeBackend(), [stage], policies={"compress": "raise"})
    for question in QUESTIONS[:2]:
        event = _event((await pipeline(_gsm8k(question))).events)
        assert event.action == "compressed" and "examples" not in event.data


async def test_a_request_asking_for_question_mode_gets_it_for_its_examples() -> None:
    pipeline = Pipeline(FakeBackend(), [CompressionStage(rate=0.5, min_prompt_tokens=400)])
    for question in QUESTIONS[:2]:
        request = _gsm8k(question).replace(options={"compress": {"mode": "question"}})
        event = _event((await pipeline(request)).events)
        assert event.action == "compressed" and "examples" not in event.data
        assert event.data["mode"] == "question"
