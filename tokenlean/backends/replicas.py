"""Routing across replicas of one model: prefix affinity with bounded loads, and health.

Technique: consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent
Hashing with Bounded Loads", SODA 2018), keyed on a prefix of the rendered prompt. vLLM's
automatic prefix caching (Kwon et al., SOSP 2023, PagedAttention; "automatic prefix caching" in
vLLM's docs) reuses the KV blocks of a prompt prefix it has already seen, but only on the replica
that saw it; sending requests that share a system prompt, demonstrations or a document to the
same replica turns a full prefill into a cache hit there. The bounded-load rule (no replica takes
more than ``load_factor`` times the mean in-flight load) keeps one hot prefix from pinning all
traffic to one replica.

Known failure modes: the key is the first ``prefix_chars`` characters of the rendered prompt, so
two prompts that share a shorter prefix than that (a short system prompt followed by different
questions) hash apart and get no affinity, and a prefix shared by *most* traffic overflows its
replica and spills (by design) onto others, where it is a cache miss once per replica. Affinity
only pays when the upstream keeps a prefix cache (vLLM: on by default in V1).

Health: a replica is marked down on a connection failure (passively) or a failed probe (the
backend's monitor), skipped while down, and marked up again by the first probe that succeeds.
When every replica is down, routing still hands out the one down longest, so a single-upstream
deployment recovers on its own without waiting for the next probe.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from tokenlean.errors import ConfigError
from tokenlean.middleware.types import Request

__all__ = ["Replica", "ReplicaSet", "Routing", "prefix_key", "public_url", "url_secrets"]


def public_url(url: str) -> str:
    """``url`` without ``user:password@``: what /health, /metrics and error messages may show."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def url_secrets(url: str) -> list[str]:
    """The credentials written into ``url`` (its ``user:password`` and the password alone)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return []
    userinfo = parts.netloc.rsplit("@", 1)[0]
    return [userinfo, *(p for p in userinfo.split(":", 1)[1:] if p)]


Routing = Literal["affinity", "round_robin", "least_loaded"]
_ROUTINGS = ("affinity", "round_robin", "least_loaded")


def prefix_key(request: Request, prefix_chars: int) -> str:
    """The first ``prefix_chars`` characters of the prompt as the upstream will render it.

    Roles are part of the key because the chat template renders them into the token stream: the
    same text as system prompt or as user turn is a different token prefix to vLLM.
    """
    if request.prompt is not None:
        return request.prompt[:prefix_chars]
    parts: list[str] = []
    size = 0
    for message in request.messages:
        part = f"<{message.role}>{message.content}\n"
        parts.append(part)
        size += len(part)
        if size >= prefix_chars:
            break
    return "".join(parts)[:prefix_chars]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(eq=False)
class Replica:
    """One upstream URL, its in-flight count and health, and counters for ``/health``."""

    url: str
    healthy: bool = True
    inflight: int = 0
    routed: int = 0
    failures: int = 0
    down_since: float | None = None
    last_error: str | None = None
    probe_ms: float | None = None
    models: list[str] = field(default_factory=list)

    def mark_down(self, reason: str) -> None:
        """Skip this replica until a probe succeeds."""
        self.failures += 1
        self.last_error = reason
        if self.healthy:
            self.healthy, self.down_since = False, time.monotonic()

    def mark_up(self) -> None:
        """A probe (or a request) succeeded: route here again."""
        self.healthy, self.down_since, self.last_error = True, None, None


class ReplicaSet:
    """Picks the replica for a request; tracks in-flight load and health.

    ``routing="affinity"`` walks a hash ring (``vnodes`` points per replica) clockwise from the
    hash of the prompt prefix to the first healthy replica under the load bound
    ``ceil(load_factor * (in_flight + 1) / healthy)``; ``"round_robin"`` and ``"least_loaded"``
    are the baselines it is measured against.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        routing: Routing = "affinity",
        prefix_chars: int = 256,
        load_factor: float = 1.25,
        vnodes: int = 64,
    ) -> None:
        if not urls:
            raise ConfigError("at least one upstream URL is needed", param="upstreams")
        if len(set(urls)) != len(urls):
            raise ConfigError(f"upstream URLs repeat: {list(urls)}", param="upstreams")
        if routing not in _ROUTINGS:
            raise ConfigError(
                f"routing must be one of {', '.join(_ROUTINGS)}, not {routing!r}", param="routing"
            )
        if load_factor < 1.0:
            raise ConfigError("load_factor must be >= 1.0 (1.0 = perfectly even)", param="load_factor")
        if prefix_chars < 1:
            raise ConfigError("prefix_chars must be positive", param="prefix_chars")
        self.replicas = [Replica(url) for url in urls]
        self.routing: Routing = routing
        self.prefix_chars = prefix_chars
        self.load_factor = load_factor
        points = sorted(
            (_hash(f"{r.url}#{v}"), i) for i, r in enumerate(self.replicas) for v in range(vnodes)
        )
        self._ring_hashes = [h for h, _ in points]
        self._ring_owners = [i for _, i in points]
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self.replicas)

    def pick(self, request: Request, *, exclude: Iterable[Replica] = ()) -> Replica | None:
        """The replica for ``request``, avoiding ``exclude`` (replicas already tried); ``None`` if none left."""
        excluded = set(map(id, exclude))
        candidates = [r for r in self.replicas if id(r) not in excluded]
        if not candidates:
            return None
        healthy = [r for r in candidates if r.healthy]
        if not healthy:  # last resort: the one down longest may be back
            return min(candidates, key=lambda r: r.down_since or 0.0)
        if len(healthy) == 1:
            return healthy[0]
        if self.routing == "round_robin":
            return healthy[next(self._counter) % len(healthy)]
        if self.routing == "least_loaded":
            return min(healthy, key=lambda r: (r.inflight, r.routed))
        return self._ring_pick(prefix_key(request, self.prefix_chars), healthy)

    def _ring_pick(self, key: str, healthy: list[Replica]) -> Replica:
        """Clockwise from ``hash(key)``: the first healthy replica under the load bound."""
        allowed = {id(r) for r in healthy}
        total = sum(r.inflight for r in healthy)
        bound = math.ceil(self.load_factor * (total + 1) / len(healthy))
        start = bisect.bisect(self._ring_hashes, _hash(key))
        size = len(self._ring_owners)
        seen: set[int] = set()
        for step in range(size):
            replica = self.replicas[self._ring_owners[(start + step) % size]]
            if id(replica) not in allowed or id(replica) in seen:
                continue
            if replica.inflight < bound:
                return replica
            seen.add(id(replica))
            if len(seen) == len(allowed):
                break
        return min(healthy, key=lambda r: r.inflight)

    def acquire(self, replica: Replica) -> None:
        """Count a request as in flight on ``replica`` (call ``release`` when it ends)."""
        replica.inflight += 1
        replica.routed += 1

    def release(self, replica: Replica) -> None:
        """The request on ``replica`` finished (answered, failed or was abandoned)."""
        replica.inflight = max(0, replica.inflight - 1)

    def snapshot(self) -> list[dict[str, object]]:
        """Per-replica state for ``/health``."""
        return [
            {
                "url": public_url(r.url),
                "healthy": r.healthy,
                "inflight": r.inflight,
                "routed": r.routed,
                "failures": r.failures,
                "last_error": r.last_error,
                "probe_ms": r.probe_ms,
                "models": list(r.models),
            }
            for r in self.replicas
        ]
