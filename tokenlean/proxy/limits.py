"""Per-tenant request rate and token budget, as token buckets (429 with Retry-After when spent).

A bucket refills continuously at ``per_minute / 60`` per second up to ``per_minute``. Requests are
charged one unit up front; tokens are charged after the answer (prompt + completion), so a
tenant may overdraw its token bucket by one request's worth and then waits it off.

These buckets live in one process: N proxy processes would allow N times the limit. Several
processes share one set of buckets through Redis with ``RedisLimits`` (tokenlean.proxy.shared_limits),
the same algorithm run atomically inside Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from tokenlean.errors import RateLimitError

__all__ = ["Limits", "TenantLimits"]


class Limits(Protocol):
    """What the proxy asks of a limiter: in-process (``TenantLimits``) or shared (``RedisLimits``)."""

    async def aadmit(self, tenant: str | None) -> None:
        """Charge one request or raise ``RateLimitError``."""
        ...

    async def acharge_tokens(self, tenant: str | None, tokens: int) -> None:
        """Charge a finished request's tokens."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(slots=True)
class _Bucket:
    capacity: float
    level: float
    updated: float = field(default_factory=time.monotonic)

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60)
        self.updated = now

    def seconds_until(self, amount: float) -> float:
        return max(0.0, (amount - self.level) * 60 / self.capacity)


class TenantLimits:
    """Requests per minute and tokens per minute per tenant; ``None`` disables either."""

    def __init__(
        self, *, requests_per_minute: float | None = None, tokens_per_minute: float | None = None
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._requests: dict[str | None, _Bucket] = {}
        self._tokens: dict[str | None, _Bucket] = {}

    def admit(self, tenant: str | None) -> None:
        """Charge one request; ``RateLimitError`` if the tenant's request or token bucket is empty."""
        now = time.monotonic()
        if self.tokens_per_minute:
            bucket = self._bucket(self._tokens, tenant, self.tokens_per_minute, now)
            if bucket.level <= 0:
                raise RateLimitError(
                    f"token budget of {self.tokens_per_minute:g} tokens per minute spent",
                    retry_after=bucket.seconds_until(1),
                )
        if self.requests_per_minute:
            bucket = self._bucket(self._requests, tenant, self.requests_per_minute, now)
            if bucket.level < 1:
                raise RateLimitError(
                    f"rate limit of {self.requests_per_minute:g} requests per minute reached",
                    retry_after=bucket.seconds_until(1),
                )
            bucket.level -= 1

    def charge_tokens(self, tenant: str | None, tokens: int) -> None:
        """Charge the tokens a finished request used against the tenant's budget."""
        if self.tokens_per_minute:
            bucket = self._bucket(self._tokens, tenant, self.tokens_per_minute, time.monotonic())
            bucket.level -= tokens

    async def aadmit(self, tenant: str | None) -> None:
        """``admit``, awaitable: the proxy's interface, shared with ``RedisLimits``."""
        self.admit(tenant)

    async def acharge_tokens(self, tenant: str | None, tokens: int) -> None:
        """``charge_tokens``, awaitable: the proxy's interface, shared with ``RedisLimits``."""
        self.charge_tokens(tenant, tokens)

    async def aclose(self) -> None:
        """Nothing to release: the buckets live in this process."""

    @staticmethod
    def _bucket(table: dict[str | None, _Bucket], tenant: str | None, capacity: float, now: float) -> _Bucket:
        bucket = table.get(tenant)
        if bucket is None:
            bucket = table[tenant] = _Bucket(capacity, capacity, now)
        bucket.refill(now)
        return bucket
