"""The one retry policy for upstream calls: what is retried, and how long to wait.

Retried: failures where the upstream cannot have produced an answer the client would lose — a
refused or dropped connection, a timeout before the first byte of the answer, and the statuses
that mean "busy, try again" (429, 502, 503, 504). Never retried: any other 4xx (the same request
gets the same answer), a failure after the first byte or the first streamed chunk (the client has
part of an answer), and the request's total deadline. Waits are exponential with full jitter
(AWS Architecture Blog, "Exponential Backoff and Jitter", 2015: concurrent clients that back off
in lockstep hit the upstream again together), at least what ``Retry-After`` asks for, and never
past the deadline. Stages never retry what fails below them (DESIGN.md): this is the only loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tokenlean.errors import BackendError, BackendTimeoutError, BackendUnavailableError, UpstreamStatusError

__all__ = ["RETRY_STATUSES", "RetryPolicy"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry one upstream call.

    ``attempts`` counts the first try. ``base_delay`` doubles per attempt up to ``max_delay``;
    the wait is drawn uniformly below that cap (full jitter), then raised to ``Retry-After``.
    """

    attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 2.0

    def retryable(
        self, error: BackendError, *, after_first_byte: bool, connection_failed: bool = False
    ) -> bool:
        """Whether ``error`` may be retried: see the module docstring for the rule.

        ``connection_failed``: the connection broke (refused, reset, closed before an answer).
        """
        if isinstance(error, UpstreamStatusError):  # an error status is the whole answer
            return error.upstream_status in RETRY_STATUSES
        if after_first_byte:
            return False
        if isinstance(error, BackendTimeoutError):
            return not error.deadline_passed
        return connection_failed or isinstance(error, BackendUnavailableError)

    def delay(self, attempt: int, *, retry_after: float | None = None, remaining: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; ``None`` when the deadline forbids it."""
        cap = min(self.max_delay, self.base_delay * 2**attempt)
        wait = max(random.uniform(0.0, cap), retry_after or 0.0)
        return wait if wait < remaining else None
