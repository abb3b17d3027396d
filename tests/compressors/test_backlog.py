"""``ScorerBacklog``: the wait estimate behind the compress stage's ``max_wait_s`` (pure logic, a fake clock)."""

from __future__ import annotations

import pytest

from tokenlean.compressors.backlog import ScorerBacklog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_scorer_admits_under_any_bound() -> None:
    backlog = ScorerBacklog(clock=Clock())
    assert backlog.wait_s() == 0.0 and backlog.rate() is None
    assert backlog.admit(1000, max_wait_s=0.0) == (True, 0.0)


def test_busy_with_no_measured_rate_counts_as_over_every_bound() -> None:
    backlog = ScorerBacklog(clock=Clock())
    backlog.admit(1000, max_wait_s=0.0)
    assert backlog.wait_s() is None
    assert backlog.admit(500, max_wait_s=60.0) == (False, None)
    assert backlog.admit(500, max_wait_s=None) == (True, None)  # no bound: it queues


def test_the_wait_is_the_pending_tokens_at_the_busy_rate() -> None:
    clock = Clock()
    backlog = ScorerBacklog(clock=clock)
    backlog.admit(1000, None)
    clock.now += 2.0
    backlog.finish(1000)  # 500 tokens per busy second
    assert backlog.rate() == pytest.approx(500.0)
    clock.now += 30.0  # idle time is not busy time
    backlog.admit(1500, None)
    assert backlog.wait_s() == pytest.approx(3.0)
    assert backlog.admit(400, max_wait_s=2.5) == (False, pytest.approx(3.0))
    assert backlog.admit(400, max_wait_s=3.0) == (True, pytest.approx(3.0))
    assert backlog.wait_s() == pytest.approx(3.8)


def test_overlapping_jobs_measure_the_scorers_rate_not_one_jobs() -> None:
    clock = Clock()
    backlog = ScorerBacklog(memory=1.0, clock=clock)
    backlog.admit(1000, None)
    backlog.admit(1000, None)  # both share the scorer: 2,000 tokens in 4 busy seconds
    clock.now += 4.0
    backlog.finish(1000)
    backlog.finish(1000)
    assert backlog.rate() == pytest.approx(500.0)
    assert backlog.wait_s() == 0.0


def test_recent_compressions_weigh_more() -> None:
    clock = Clock()
    backlog = ScorerBacklog(memory=0.5, clock=clock)
    for seconds in (1.0, 1.0, 4.0):  # 1000 tokens each: the scorer became four times slower
        backlog.admit(1000, None)
        clock.now += seconds
        backlog.finish(1000)
    # tokens 0.25*1000 + 0.5*1000 + 1000, busy 0.25*1 + 0.5*1 + 4
    assert backlog.rate() == pytest.approx(1750 / 4.75)
