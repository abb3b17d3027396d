"""Per-key request rates and token budgets shared by every proxy process, kept in Redis.

The same token buckets as ``TenantLimits`` (refill ``per_minute / 60`` per second up to
``per_minute``; one request unit charged up front, tokens charged after the answer), but each
check-and-charge is one Lua script run inside Redis, so it is atomic across processes and hosts:
two proxies in front of one Redis admit R requests per minute for a key limited to R, not 2R.
The clock is Redis's own (``TIME``), so proxies with skewed clocks still agree.

When Redis cannot be reached the limits fail open (the request is admitted, a warning is logged
at most once per ``warn_every_s``): an outage of the limiter should not take the API down.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tokenlean.errors import RateLimitError
from tokenlean.extras import require

__all__ = ["RedisLimits"]

log = logging.getLogger("tokenlean.proxy")

# KEYS: request bucket, token bucket. ARGV: requests per minute, tokens per minute (0: off).
# Returns {0, "0"} when admitted, {1, wait} for a spent token budget, {2, wait} for the rate.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function level(key, cap)
  local v = redis.call('HMGET', key, 'level', 'updated')
  local lvl, upd = tonumber(v[1]), tonumber(v[2])
  if lvl == nil then return cap end
  return math.min(cap, lvl + (now - upd) * cap / 60)
end
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 then
  local tl = level(KEYS[2], tpm)
  if tl <= 0 then return {1, tostring((1 - tl) * 60 / tpm)} end
end
if rpm > 0 then
  local rl = level(KEYS[1], rpm)
  if rl < 1 then return {2, tostring((1 - rl) * 60 / rpm)} end
  redis.call('HSET', KEYS[1], 'level', tostring(rl - 1), 'updated', tostring(now))
  redis.call('EXPIRE', KEYS[1], 120)
end
return {0, '0'}
"""

# KEYS: token bucket. ARGV: tokens per minute, tokens used.
_CHARGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap = tonumber(ARGV[1])
local v = redis.call('HMGET', KEYS[1], 'level', 'updated')
local lvl, upd = tonumber(v[1]), tonumber(v[2])
if lvl == nil then lvl = cap else lvl = math.min(cap, lvl + (now - upd) * cap / 60) end
redis.call('HSET', KEYS[1], 'level', tostring(lvl - tonumber(ARGV[2])), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], 120)
return 0
"""


class RedisLimits:
    """Requests and tokens per minute per tenant, enforced across processes through Redis."""

    def __init__(
        self,
        url: str,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        prefix: str = "tokenlean:limits",
        timeout_s: float = 0.5,
        warn_every_s: float = 30.0,
    ) -> None:
        require("redis", "limits shared through Redis (--redis-url)", models=False)
        import redis.asyncio as aioredis

        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.prefix = prefix
        self._client: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._admit = self._client.register_script(_ADMIT)
        self._charge = self._client.register_script(_CHARGE)
        self._warn_every_s = warn_every_s
        self._warned_at = -warn_every_s

    def _keys(self, tenant: str | None) -> list[str]:
        who = tenant or "anonymous"
        return [f"{self.prefix}:{who}:requests", f"{self.prefix}:{who}:tokens"]

    async def aadmit(self, tenant: str | None) -> None:
        """Charge one request; ``RateLimitError`` if the tenant's request or token bucket is empty."""
        if not (self.requests_per_minute or self.tokens_per_minute):
            return
        args = [self.requests_per_minute or 0, self.tokens_per_minute or 0]
        try:
            verdict, wait = await self._admit(keys=self._keys(tenant), args=args)
        except Exception as exc:  # noqa: BLE001 - any Redis failure: fail open, say so in the log
            self._warn(exc)
            return
        if int(verdict) == 1:
            raise RateLimitError(
                f"token budget of {self.tokens_per_minute:g} tokens per minute spent",
                retry_after=float(wait),
            )
        if int(verdict) == 2:
            raise RateLimitError(
                f"rate limit of {self.requests_per_minute:g} requests per minute reached",
                retry_after=float(wait),
            )

    async def acharge_tokens(self, tenant: str | None, tokens: int) -> None:
        """Charge the tokens a finished request used against the tenant's budget."""
        if not self.tokens_per_minute or tokens <= 0:
            return
        try:
            await self._charge(keys=self._keys(tenant)[1:], args=[self.tokens_per_minute, tokens])
        except Exception as exc:  # noqa: BLE001 - the answer is already sent: log and go on
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= self._warn_every_s:
            self._warned_at = now
            log.warning("rate limits not enforced: Redis unreachable (%s: %s)", type(exc).__name__, exc)

    async def aclose(self) -> None:
        """Close the Redis connections."""
        await self._client.aclose()
