"""Continuous batching on the real SmolLM2: rows that join a running batch keep their greedy answers.

These drive ``RunningBatch`` and the single-row hand-over directly (on the test's thread, not the
backend's worker), so which path runs is fixed by the test, not by timing.
"""

from __future__ import annotations

from typing import Any

import pytest

from tokenlean.backends.local.decoding import RowDecoder, SamplingSettings
from tokenlean.backends.local.running import Entry, RunningBatch
from tokenlean.backends.local.single_row import DraftPlan
from tokenlean.middleware.types import Message, Request

pytestmark = pytest.mark.slow

QUESTIONS = ["Who wrote Hamlet?", "Name three colours of the rainbow.", "What is the capital of France?"]


def _prompt(backend: Any, text: str) -> list[int]:
    return list(backend.encode(Request(messages=(Message("user", text),))))


def _row(backend: Any, max_tokens: int) -> RowDecoder:
    return RowDecoder(
        SamplingSettings(temperature=0, max_tokens=max_tokens), backend.tokenizer, backend.eos_ids
    )


def _step(entry: Entry, logits: Any) -> int:
    token = entry[2].choose(logits)
    entry[2].advance(token)
    return token


def _alone(backend: Any, text: str, max_tokens: int) -> list[int]:
    """The row's greedy tokens when it is the only row of its batch."""
    row = _row(backend, max_tokens)
    batch, logits = RunningBatch.prefill([(None, 0, row)], [_prompt(backend, text)], backend._forward, 0)
    batch.choose(logits, _step)
    while batch.entries:
        batch.choose(batch.advance(backend._forward), _step)
    return row.token_ids


def test_rows_joining_mid_batch_keep_their_greedy_tokens(local_backend) -> None:  # type: ignore[no-untyped-def]
    import torch

    expected = [_alone(local_backend, q, 12) for q in QUESTIONS]
    rows = [_row(local_backend, 12) for _ in QUESTIONS]
    with torch.inference_mode():
        first, logits = RunningBatch.prefill(
            [(None, 0, rows[0])], [_prompt(local_backend, QUESTIONS[0])], local_backend._forward, 0
        )
        first.choose(logits, _step)
        for joined, question in enumerate(QUESTIONS[1:], start=1):
            for _ in range(3 * joined):  # the running rows are several tokens ahead of the newcomer
                first.choose(first.advance(local_backend._forward), _step)
            fresh, logits = RunningBatch.prefill(
                [(None, 0, rows[joined])], [_prompt(local_backend, question)], local_backend._forward, 0
            )
            fresh.choose(logits, _step)
            first.absorb(fresh)
        while first.entries:
            first.choose(first.advance(local_backend._forward), _step)
    assert [row.token_ids for row in rows] == expected
    assert all(len(tokens) > 0 for tokens in expected)


def test_a_drafting_row_hands_over_and_finishes_in_a_batch(local_backend) -> None:  # type: ignore[no-untyped-def]
    """The single-row path stops when others wait; the row then finishes as a batch row, unchanged."""
    import torch

    question, tokens = "Repeat after me: the quick brown fox jumps over the lazy dog.", 16
    expected = _alone(local_backend, question, tokens)
    row = _row(local_backend, tokens)
    sent: list[int] = []
    with torch.inference_mode():
        events, handover = local_backend.single.run(
            _prompt(local_backend, question),
            row,
            DraftPlan("lookup"),
            lambda token: (sent.append(token), row.advance(token)),
            lambda: False,
            lambda: len(sent) >= 4,  # another request arrives once four tokens are out
        )
        assert handover is not None and not row.done
        assert handover.token == sent[-1] and len(row.token_ids) < tokens
        batch = RunningBatch.of_one((None, 0, row), handover.cache, handover.cached_tokens, handover.token)
        other = _row(local_backend, 6)
        fresh, logits = RunningBatch.prefill(
            [(None, 0, other)], [_prompt(local_backend, QUESTIONS[0])], local_backend._forward, 0
        )
        fresh.choose(logits, _step)
        batch.absorb(fresh)
        while batch.entries:
            batch.choose(batch.advance(local_backend._forward), _step)
    assert row.token_ids == expected
    assert other.token_ids == _alone(local_backend, QUESTIONS[0], 6)
    assert [event.stage for event in events] == ["prefix", "draft"]


def test_a_row_that_ends_on_its_first_token_joins_as_nothing(local_backend) -> None:  # type: ignore[no-untyped-def]
    import torch

    with torch.inference_mode():
        running, logits = RunningBatch.prefill(
            [(None, 0, _row(local_backend, 8))],
            [_prompt(local_backend, QUESTIONS[0])],
            local_backend._forward,
            0,
        )
        running.choose(logits, _step)
        short = _row(local_backend, 1)
        fresh, logits = RunningBatch.prefill(
            [(None, 0, short)], [_prompt(local_backend, QUESTIONS[1])], local_backend._forward, 0
        )
        fresh.choose(logits, _step)
        assert short.done and fresh.entries == []
        running.absorb(fresh)
        assert len(running.entries) == 1 and running.mask.shape[0] == 1
        while running.entries:
            running.choose(running.advance(local_backend._forward), _step)


def test_a_batch_drops_the_padding_of_rows_that_left(local_backend) -> None:  # type: ignore[no-untyped-def]
    """Once a long prompt's row ends, the cache is as wide as the row still running, not wider."""
    import torch

    long_text = "Summarise this: " + "The river runs through the old town past the mill. " * 12
    expected = _alone(local_backend, QUESTIONS[0], 14)
    long_row, short_row = _row(local_backend, 2), _row(local_backend, 14)
    long_prompt, short_prompt = _prompt(local_backend, long_text), _prompt(local_backend, QUESTIONS[0])
    widths = []  # after each step: (rows running, mask columns, cache columns, short row's tokens)
    with torch.inference_mode():
        batch, logits = RunningBatch.prefill(
            [(None, 0, long_row), (None, 0, short_row)],
            [long_prompt, short_prompt],
            local_backend._forward,
            0,
        )
        batch.choose(logits, _step)
        while batch.entries:
            batch.choose(batch.advance(local_backend._forward), _step)
            cache_width = int(batch.cache.layers[0].keys.shape[-2])
            widths.append((len(batch.entries), batch.mask.shape[1], cache_width, len(short_row.token_ids)))
    assert long_row.done and short_row.token_ids == expected
    alone = [(mask, cache, tokens) for rows, mask, cache, tokens in widths if rows == 1]
    assert alone and len(long_prompt) > len(short_prompt) + 14
    # the columns it attends to: its prompt and the tokens it has run (all but the pending one)
    assert all(mask == cache == len(short_prompt) + tokens - 1 for mask, cache, tokens in alone)
