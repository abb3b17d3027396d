"""The one retry policy (tokenlean/backends/retry.py): what is retried and how long it waits."""

from __future__ import annotations

import pytest

from tokenlean.backends.retry import RetryPolicy
from tokenlean.errors import BackendError, BackendTimeoutError, BackendUnavailableError, UpstreamStatusError

POLICY = RetryPolicy(attempts=3, base_delay=0.1, max_delay=1.0)


def status(code: int, retry_after: float | None = None) -> UpstreamStatusError:
    return UpstreamStatusError(f"HTTP {code}", upstream_status=code, retry_after=retry_after)


@pytest.mark.parametrize("code", [429, 502, 503, 504])
def test_busy_statuses_are_retried(code: int) -> None:
    assert POLICY.retryable(status(code), after_first_byte=True)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422, 500])
def test_other_statuses_are_not(code: int) -> None:
    assert not POLICY.retryable(status(code), after_first_byte=False)


def test_connection_failures_and_early_timeouts_are_retried_only_before_the_first_byte() -> None:
    refused = BackendUnavailableError("refused")
    timeout = BackendTimeoutError("ReadTimeout")
    dropped = BackendError("RemoteProtocolError")
    assert POLICY.retryable(refused, after_first_byte=False)
    assert POLICY.retryable(timeout, after_first_byte=False)
    assert POLICY.retryable(dropped, after_first_byte=False, connection_failed=True)
    assert not POLICY.retryable(dropped, after_first_byte=False)  # an unknown failure is not guessed safe
    for error in (refused, timeout, dropped):
        assert not POLICY.retryable(error, after_first_byte=True, connection_failed=True)


def test_a_spent_deadline_is_never_retried() -> None:
    assert not POLICY.retryable(BackendTimeoutError("total", deadline_passed=True), after_first_byte=False)


def test_waits_are_jittered_below_the_exponential_cap() -> None:
    for attempt, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (5, 1.0)]:
        waits = {POLICY.delay(attempt, remaining=60.0) for _ in range(200)}
        assert all(w is not None and 0.0 <= w <= cap for w in waits)
        assert len(waits) > 150  # drawn, not fixed: clients that failed together spread out


def test_retry_after_is_a_floor_and_the_deadline_a_ceiling() -> None:
    assert POLICY.delay(0, retry_after=2.5, remaining=60.0) == 2.5
    assert POLICY.delay(0, retry_after=2.5, remaining=2.0) is None  # would end past the deadline
    assert POLICY.delay(3, remaining=0.0) is None
