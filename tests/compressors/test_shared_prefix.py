"""Shared prefixes: the memo's bookkeeping (pure logic) and the stage reusing compressed examples."""

from __future__ import annotations

import threading
import time

import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.compressors.chat import prefix_digests, split_request
from tokenlean.compressors.shared_prefix import SharedPrefixMemo, looks_like_demonstrations
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


def test_shared_run_is_the_longest_leading_run_seen_before() -> None:
    memo = SharedPrefixMemo()
    assert memo.shared_run(["a", "ab", "abc"]).blocks == 0
    run = memo.shared_run(["a", "ab", "abX"])
    assert (run.blocks, run.digest) == (2, "ab")
    assert memo.shared_run(["b"]).blocks == 0


def test_seen_digests_are_bounded() -> None:
    memo = SharedPrefixMemo(seen_entries=2)
    memo.shared_run(["a", "ab", "abc"])  # "a" is evicted
    assert memo.shared_run(["a"]).blocks == 0


def test_a_shared_run_is_computed_once_even_when_asked_for_concurrently() -> None:
    memo = SharedPrefixMemo()
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
    memo = SharedPrefixMemo()

    def fail() -> tuple[str, ...]:
        raise RuntimeError("scorer down")

    with pytest.raises(RuntimeError):
        memo.compressed(("k",), fail)
    assert not memo.has(("k",))
    assert memo.compressed(("k",), lambda: ("x",)) == (("x",), False)


def test_examples_are_told_from_documents(hotpot_sample) -> None:  # type: ignore[no-untyped-def]
    assert looks_like_demonstrations(SHOTS.split("\n\n"))
    assert looks_like_demonstrations(
        ["Review: fine film\nSentiment: positive", "Review: dull\nSentiment: negative"]
    )
    assert not looks_like_demonstrations(hotpot_documents(hotpot_sample))
    assert not looks_like_demonstrations(["Passage: one text", "Passage: another text"])
    assert not looks_like_demonstrations(["Question: only one example"])


def _gsm8k(question: str) -> Request:
    content = f"{SHOTS}\n\nQuestion: {question}\nLet's think step by step"
    return Request(messages=(Message("user", content),), model="fake")


def _event(events: tuple[Event, ...]) -> Event:
    return next(e for e in events if e.stage == "compress" and e.action != "timing")


async def test_repeated_examples_are_compressed_once_and_sent_byte_identical() -> None:
    stage = CompressionStage(rate=0.5, min_prompt_tokens=400)
    backend = FakeBackend()
    pipeline = Pipeline(backend, [stage], policies={"compress": "raise"})
    events = [_event((await pipeline(_gsm8k(q))).events) for q in QUESTIONS]
    assert events[0].action == "compressed" and "shared_blocks" not in events[0].data
    assert events[0].data["mode"] == "auto"  # the first sighting: compressed with its question
    assert (events[1].data["shared_memo"], events[2].data["shared_memo"]) == ("miss", "hit")
    assert events[1].data["shared_blocks"] == events[2].data["shared_blocks"] > 0
    sent = [r.messages[0].content for r in backend.requests]
    heads = [text.rsplit("\n\nQuestion:", 1)[0] for text in sent]
    assert heads[1] == heads[2] != heads[0]  # the reused examples, byte for byte
    assert all(text.endswith(f"Question: {q}\nLet's think step by step") for text, q in zip(sent, QUESTIONS))
    ratios = [e.data["tokens_after"] / e.data["tokens_before"] for e in events]
    assert all(0.4 <= ratio <= 0.6 for ratio in ratios), ratios  # the rate holds with reuse too


async def test_blocks_after_the_shared_examples_are_compressed_with_the_question(hotpot_sample) -> None:  # type: ignore[no-untyped-def]
    stage = CompressionStage(rate=0.5, min_prompt_tokens=400)
    backend = FakeBackend()
    pipeline = Pipeline(backend, [stage], policies={"compress": "raise"})
    documents = hotpot_documents(hotpot_sample)
    for n, document in enumerate(documents[:3]):
        content = f"{SHOTS}\n\n{document}\n\nQuestion: {QUESTIONS[0]}"
        event = _event((await pipeline(Request(messages=(Message("user", content),), model="fake"))).events)
        if n:
            assert event.data["shared_blocks"] > 0 and event.data["mode"] == "auto"
            assert event.data["blocks"] == event.data["shared_blocks"] + 1
    sent = backend.requests[-1].messages[0].content
    assert sent.endswith(f"Question: {QUESTIONS[0]}")
    assert documents[2] not in sent  # the request's own document was compressed too


async def test_recurring_documents_keep_question_aware_compression(hotpot_sample) -> None:  # type: ignore[no-untyped-def]
    stage = CompressionStage(rate=0.5, min_prompt_tokens=400)
    pipeline = Pipeline(FakeBackend(), [stage], policies={"compress": "raise"})
    documents = "\n\n".join(hotpot_documents(hotpot_sample))
    for question in (hotpot_sample["question"], "Which of these was published in Philadelphia?"):
        request = Request(messages=(Message("user", f"{documents}\n\nQuestion: {question}"),), model="fake")
        event = _event((await pipeline(request)).events)
        assert event.action == "compressed" and "shared_blocks" not in event.data


async def test_reuse_can_be_turned_off() -> None:
    stage = CompressionStage(rate=0.5, min_prompt_tokens=400, reuse_shared_prefix=False)
    pipeline = Pipeline(FakeBackend(), [stage], policies={"compress": "raise"})
    for question in QUESTIONS[:2]:
        event = _event((await pipeline(_gsm8k(question))).events)
        assert event.action == "compressed" and "shared_blocks" not in event.data
