"""Rows that start or join a batch reuse cached prompt prefixes, on the real SmolLM2.

These drive ``BatchPrefill`` and ``RunningBatch`` directly on the test's thread (as test_running.py
does), so which path runs is fixed by the test, not by timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tokenlean.backends.local.batch_prefill import BatchPrefill
from tokenlean.backends.local.decoding import RowDecoder, SamplingSettings
from tokenlean.backends.local.jobs import Job
from tokenlean.backends.local.prefix_cache import PrefixCache
from tokenlean.backends.local.running import Entry, RunningBatch
from tokenlean.middleware.types import Message, Request

pytestmark = pytest.mark.slow

TOKENS = 10


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _prompt(backend: Any, system: str, question: str) -> list[int]:
    return list(backend.encode(Request(messages=(Message("system", system), Message("user", question)))))


def _job(backend: Any, prompt: list[int], loop: asyncio.AbstractEventLoop, rows: int = 1) -> Job:
    decoders = [
        RowDecoder(SamplingSettings(temperature=0, max_tokens=TOKENS), backend.tokenizer, backend.eos_ids)
        for _ in range(rows)
    ]
    return Job(prompt, decoders, loop, asyncio.Queue())


def _step(entry: Entry, logits: Any) -> int:
    token = entry[2].choose(logits)
    entry[2].advance(token)
    return token


def _entries(*jobs: Job) -> list[Entry]:
    return [(job, index, row) for job in jobs for index, row in enumerate(job.rows)]


def _finish(batch: RunningBatch, backend: Any) -> None:
    while batch.entries:
        batch.choose(batch.advance(backend._forward), _step)


def _alone(backend: Any, prompt: list[int], loop: asyncio.AbstractEventLoop) -> list[int]:
    """Greedy tokens of ``prompt`` prefilled in full with no prefix cache."""
    job = _job(backend, prompt, loop)
    _finish(BatchPrefill(backend.model, backend._forward, _step, 0, None)(_entries(job)), backend)
    return job.rows[0].token_ids


def test_a_newcomer_reuses_a_prompt_prefilled_in_a_batch(local_backend, passage: str, loop) -> None:  # type: ignore[no-untyped-def]
    import torch

    system = f"You answer questions about this passage only.\n\n{passage}"
    first = _prompt(local_backend, system, "Who received the first Nobel Prize in Physics?")
    other = _prompt(local_backend, "You are a helpful assistant.", "Name three colours.")
    later = _prompt(local_backend, system, "In which year was the prize first awarded?")
    cache = PrefixCache()
    prefill = BatchPrefill(local_backend.model, local_backend._forward, _step, 0, cache)
    with torch.inference_mode():
        expected = {tuple(p): _alone(local_backend, p, loop) for p in (first, other, later)}
        started = [_job(local_backend, first, loop), _job(local_backend, other, loop)]
        batch = prefill(_entries(*started))  # nothing cached yet: one padded batch, both prompts kept
        assert [job.events[0].action for job in started] == ["miss", "miss"] and len(cache) == 2
        for _ in range(3):  # the batch runs a few steps before the newcomers arrive
            batch.choose(batch.advance(local_backend._forward), _step)
        single, double = _job(local_backend, later, loop), _job(local_backend, later, loop, rows=2)
        batch.absorb(prefill(_entries(single, double)))
        _finish(batch, local_backend)

    for job in (single, double):
        event = job.events[0]
        assert event.action == "hit"
        assert event.data["reused_tokens"] > len(local_backend.tokenizer.encode(passage)) * 0.9
        assert event.data["reused_tokens"] + event.data["prefill_tokens"] == len(later)
    assert [job.rows[0].token_ids for job in started] == [expected[tuple(first)], expected[tuple(other)]]
    assert single.rows[0].token_ids == expected[tuple(later)]
    assert [row.token_ids for row in double.rows] == [expected[tuple(later)]] * 2


def test_without_a_prefix_cache_nothing_is_kept_or_reported(local_backend, loop) -> None:  # type: ignore[no-untyped-def]
    import torch

    prompt = _prompt(local_backend, "You are a helpful assistant.", "Name three colours.")
    job = _job(local_backend, prompt, loop)
    with torch.inference_mode():
        _finish(
            BatchPrefill(local_backend.model, local_backend._forward, _step, 0, None)(_entries(job)),
            local_backend,
        )
    assert job.events == [] and len(job.rows[0].token_ids) > 0


def test_requests_starting_together_run_their_shared_prefix_once(local_backend, passage: str, loop) -> None:  # type: ignore[no-untyped-def]
    import torch

    system = f"You answer questions about this passage only.\n\n{passage}"
    first = _prompt(local_backend, system, "Who received the first Nobel Prize in Physics?")
    second = _prompt(local_backend, system, "In which year was the prize first awarded?")
    other = _prompt(local_backend, "You are a helpful assistant.", "Name three colours.")
    cache = PrefixCache()
    prefill = BatchPrefill(local_backend.model, local_backend._forward, _step, 0, cache)
    with torch.inference_mode():
        expected = [_alone(local_backend, p, loop) for p in (first, second, other)]
        jobs = [_job(local_backend, first, loop), _job(local_backend, second, loop, rows=2)]
        jobs.append(_job(local_backend, other, loop))
        _finish(prefill(_entries(*jobs)), local_backend)

    paid, reused, alone = (job.events[0] for job in jobs)
    assert paid.action == "miss" and paid.data["prefill_tokens"] == len(first)  # it ran the shared prefix
    assert reused.action == "hit"
    assert reused.data["reused_tokens"] > len(local_backend.tokenizer.encode(passage)) * 0.9
    assert reused.data["reused_tokens"] + reused.data["prefill_tokens"] == len(second)
    assert alone.action == "miss"
    assert len(cache) == 2  # the shared prefix and the other prompt, for later requests
    assert jobs[0].rows[0].token_ids == expected[0]
    assert [row.token_ids for row in jobs[1].rows] == [expected[1]] * 2
    assert jobs[2].rows[0].token_ids == expected[2]
