"""Prometheus metrics for one proxy app: requests, latency, tokens, and what every stage did.

Each app owns its own registry (tests build many apps in one process); with several worker
processes the counters are summed across them (``render``, prometheus_client's multiprocess
mode). Stage events are counted by (stage, action, reason), where ``reason`` is the event's own
``reason`` field when it has one (why a stage stepped aside: ``short``, ``busy``, ``uses tools``,
...: a fixed vocabulary per stage, so the label stays bounded) and empty otherwise. Their time is
observed per stage, and every numeric field in an event's data (tokens_saved, drafted, accepted,
cost_saved, ...) is summed per (stage, field): a new stage gets its savings on /metrics without
touching this module.

A backend that measures its upstreams (``OpenAIBackend.upstream_metrics``: latency, errors,
vLLM's drafting counters) keeps those collectors itself; ``scrape`` refreshes them (bounded in
time, never raising) and adds them to this registry, so they render with the proxy's own.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from tokenlean.middleware.types import Event, Usage

__all__ = ["ProxyMetrics"]

log = logging.getLogger("tokenlean.proxy")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


_REASON_CHARS = 60  # a guard on the label's size; every reason a stage gives today is shorter


def _reason(event: Event) -> str:
    """The event's ``reason`` as a label value ("" when it gives none)."""
    reason = event.data.get("reason")
    return reason[:_REASON_CHARS] if isinstance(reason, str) else ""


class ProxyMetrics:
    """The proxy's counters and histograms, rendered at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._sources: dict[int, Any] = {}  # backend collectors registered here, by id (kept alive)
        r = self.registry
        self.requests = Counter(
            "tokenlean_requests", "Requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.errors = Counter("tokenlean_errors", "Error responses by error code", ["code"], registry=r)
        self.latency = Histogram(
            "tokenlean_request_seconds",
            "Time to full response",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "tokenlean_first_token_seconds",
            "Time to first streamed token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "tokenlean_prompt_tokens", "Prompt tokens sent to the backend", registry=r
        )
        self.completion_tokens = Counter(
            "tokenlean_completion_tokens", "Completion tokens generated", registry=r
        )
        self.stage_events = Counter(
            "tokenlean_stage_events",
            "Stage events by why, when given",
            ["stage", "action", "reason"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "tokenlean_stage_seconds", "A stage's own time", ["stage"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.stage_values = Counter(
            "tokenlean_stage_value",
            "Sum of numeric event fields (tokens saved, drafted, ...)",
            ["stage", "field"],
            registry=r,
        )

    def observe_usage(self, usage: Usage) -> None:
        """Count tokens in and out."""
        self.prompt_tokens.inc(usage.prompt_tokens)
        self.completion_tokens.inc(usage.completion_tokens)

    def observe_events(self, events: tuple[Event, ...]) -> None:
        """Count each stage event and sum its numeric fields."""
        for event in events:
            if event.action == "timing":
                self.stage_seconds.labels(event.stage).observe(event.ms / 1000)
                continue
            self.stage_events.labels(event.stage, event.action, _reason(event)).inc()
            for name, value in event.data.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                    self.stage_values.labels(event.stage, name).inc(value)

    def render(self) -> bytes:
        """The Prometheus text exposition.

        Under ``PROMETHEUS_MULTIPROC_DIR`` (set by ``tokenlean serve --workers N``) every worker
        writes its counters to files there, and whichever worker answers the scrape reports the
        sum over all of them; the upstream collectors are this worker's own view.
        """
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not folder:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
        own = getattr(self.registry, "_collector_to_names", {})  # the ledger and upstream collectors
        for source in [c for c in own if not isinstance(c, MetricWrapperBase)]:
            registry.register(source)
        return generate_latest(registry)

    async def scrape(self, backend: Any) -> bytes:
        """``render``, with ``backend``'s upstream figures refreshed and included (when it has any).

        The refresh is bounded by the backend's own scrape timeout; should it fail anyway, the
        page renders without fresh upstream figures rather than failing.
        """
        upstream = getattr(backend, "upstream_metrics", None)
        if upstream is not None and callable(getattr(upstream, "collect", None)):
            if id(upstream) not in self._sources:
                self.registry.register(upstream)
                self._sources[id(upstream)] = upstream
            refresh = getattr(upstream, "refresh", None)
            if refresh is not None:
                try:
                    await refresh()
                except Exception:  # metrics must answer even when an upstream misbehaves
                    log.warning("could not refresh upstream metrics", exc_info=True)
        return self.render()
