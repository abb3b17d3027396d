"""What ``OpenAIBackend`` measures about its upstreams, for a Prometheus ``/metrics``.

Per upstream (label ``upstream``: the replica's base URL, credentials removed): time to response
headers, time to the first streamed chunk, total time of a request, failed attempts by type and
status, health and in-flight load, and the speculative-decoding counters the upstream (vLLM)
exports on its own ``/metrics``.

The figures live with the backend, not the proxy: the backend records them whoever serves it, in
its own ``CollectorRegistry`` (never the process-wide default one, which would collide when one
process builds many backends, as the tests do). A renderer, such as the proxy's ``/metrics``,
registers this object as a collector in its registry and calls ``refresh()`` before rendering.

Known failure modes: the drafting counters are at most ``scrape_interval`` seconds old; an
upstream that does not answer its ``/metrics`` within ``scrape_timeout`` shows no drafting series
until it does (absent, never a stale or made-up value); vLLM's counters restart at zero when the
server restarts (Prometheus' ``rate()`` treats that as a counter reset).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tokenlean.backends.replicas import ReplicaSet, public_url
from tokenlean.backends.vllm_speculative import SpecDecodeMetrics, afetch_spec_decode_metrics
from tokenlean.errors import BackendError, BackendTimeoutError, BackendUnavailableError, UpstreamStatusError

__all__ = ["UpstreamMetrics", "UpstreamTimer"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def error_type(error: BackendError) -> tuple[str, str]:
    """``(type, status)`` labels of a failed attempt: status, timeout, connect or dropped."""
    if isinstance(error, UpstreamStatusError):
        return "status", str(error.upstream_status)
    if isinstance(error, BackendTimeoutError):
        return "timeout", "none"
    if isinstance(error, BackendUnavailableError):
        return "connect", "none"
    return "dropped", "none"


class UpstreamTimer:
    """One attempt on one upstream: call ``headers``, ``first_chunk`` (streams) and ``done``."""

    __slots__ = ("_first_seen", "_label", "_metrics", "_started", "_stream")

    def __init__(self, metrics: UpstreamMetrics, label: str, stream: bool) -> None:
        self._metrics, self._label, self._stream = metrics, label, stream
        self._started = time.perf_counter()
        self._first_seen = False

    def headers(self) -> None:
        """The upstream's response headers arrived."""
        self._metrics.headers.labels(self._label).observe(time.perf_counter() - self._started)

    def first_chunk(self) -> None:
        """The first chunk of a stream was parsed (later calls are ignored)."""
        if not self._first_seen:
            self._first_seen = True
            self._metrics.first_chunk.labels(self._label).observe(time.perf_counter() - self._started)

    def done(self) -> None:
        """The answer was read to its end."""
        elapsed = time.perf_counter() - self._started
        self._metrics.total.labels(self._label, "true" if self._stream else "false").observe(elapsed)


class UpstreamMetrics:
    """The collectors of one backend's upstreams (a Prometheus custom collector itself).

    ``scrape_interval`` bounds how often ``refresh`` reads the upstreams' ``/metrics`` (results are
    reused in between); ``scrape_timeout`` bounds each read, so a renderer never waits longer.
    """

    def __init__(
        self, replicas: ReplicaSet, *, scrape_interval: float = 5.0, scrape_timeout: float = 1.0
    ) -> None:
        self.replicas = replicas
        self.scrape_interval = scrape_interval
        self.scrape_timeout = scrape_timeout
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ["upstream"]
        self.headers = Histogram(
            "tokenlean_upstream_headers_seconds", "Time from sending a request upstream to its response headers",
            labels, buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.first_chunk = Histogram(
            "tokenlean_upstream_first_chunk_seconds", "Time from sending a streamed request to its first chunk",
            labels, buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.total = Histogram(
            "tokenlean_upstream_request_seconds", "Time from sending a request upstream to the end of its answer",
            ["upstream", "stream"], buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "tokenlean_upstream_errors", "Failed upstream attempts (retried ones too) by type and HTTP status",
            ["upstream", "type", "status"], registry=r,
        )  # fmt: skip
        self._labels = {rep.url: public_url(rep.url) for rep in replicas.replicas}
        self._spec: dict[str, SpecDecodeMetrics | None] = {}
        self._refreshed = float("-inf")
        self._client: httpx.AsyncClient | None = None  # built once (≈20 ms of SSL set-up), per loop
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def start(self, url: str, *, stream: bool) -> UpstreamTimer:
        """Time one attempt on the upstream ``url``."""
        return UpstreamTimer(self, self._labels.get(url) or public_url(url), stream)

    def error(self, url: str, error: BackendError) -> None:
        """Count one failed attempt on ``url``."""
        kind, status = error_type(error)
        self.errors.labels(self._labels.get(url) or public_url(url), kind, status).inc()

    async def refresh(self) -> None:
        """Re-read every upstream's drafting counters unless the last read is recent.

        Concurrent callers within the interval reuse the last result instead of piling reads
        onto the upstreams. A failed or slow read leaves that upstream without drafting series.
        """
        now = time.monotonic()
        if now - self._refreshed < self.scrape_interval:
            return
        self._refreshed = now
        urls = list(self._labels)
        client = self._scrape_client()
        found = await asyncio.gather(*(self._read(client, url) for url in urls))
        self._spec = dict(zip(urls, found))

    def _scrape_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=self.scrape_timeout)
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the connections used to read the upstreams' ``/metrics``."""
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()

    async def _read(self, client: httpx.AsyncClient, url: str) -> SpecDecodeMetrics | None:
        try:
            return await asyncio.wait_for(
                afetch_spec_decode_metrics(url, timeout=self.scrape_timeout, client=client),
                self.scrape_timeout,
            )
        except (httpx.HTTPError, asyncio.TimeoutError, ValueError, UnicodeDecodeError):
            return None

    def collect(self) -> Iterator[Metric]:
        """Latency and errors, replica health and load, then the upstreams' drafting counters."""
        yield from self.registry.collect()
        healthy = GaugeMetricFamily(
            "tokenlean_upstream_healthy", "1 while the upstream is routed to", labels=["upstream"]
        )
        inflight = GaugeMetricFamily(
            "tokenlean_upstream_inflight", "Requests in flight on the upstream", labels=["upstream"]
        )
        for replica in self.replicas.replicas:
            healthy.add_metric([self._labels[replica.url]], 1.0 if replica.healthy else 0.0)
            inflight.add_metric([self._labels[replica.url]], float(replica.inflight))
        yield healthy
        yield inflight
        yield from self._spec_families()

    def _spec_families(self) -> Iterator[Metric]:
        prefix = "tokenlean_upstream_spec_decode_"
        drafts = CounterMetricFamily(
            prefix + "drafts", "vLLM drafting steps (from the upstream's /metrics)", labels=["upstream"]
        )
        tokens = CounterMetricFamily(prefix + "draft_tokens", "Tokens vLLM drafted", labels=["upstream"])
        accepted = CounterMetricFamily(
            prefix + "accepted_tokens", "Drafted tokens vLLM accepted", labels=["upstream"]
        )
        rate = GaugeMetricFamily(
            prefix + "acceptance_rate",
            "Accepted / drafted tokens since the upstream started",
            labels=["upstream"],
        )
        for url, figures in self._spec.items():
            if figures is None:
                continue
            label = [self._labels[url]]
            drafts.add_metric(label, figures.drafts)
            tokens.add_metric(label, figures.draft_tokens)
            accepted.add_metric(label, figures.accepted_tokens)
            rate.add_metric(label, figures.acceptance_rate)
        for family in (drafts, tokens, accepted, rate):
            if family.samples:
                yield family
