"""``Ledger``: prices each request's row, appends it to a store, and keeps running totals for ``/metrics``.

The proxy calls ``observe`` once per answered request. A store failure is logged and counted
(``tokenlean_ledger_errors``), never raised: the ledger reports savings, it must not cost an answer.
Totals are this process's since it started, plus what the store held when it opened; with a shared
Redis store, ``tokenlean report`` (which reads the store) is the fleet-wide figure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from tokenlean.ledger.prices import PriceTable
from tokenlean.ledger.record import LedgerRecord, record_exchange
from tokenlean.ledger.stores import LedgerStore
from tokenlean.middleware.types import Request, Response

__all__ = ["TOTAL_FIELDS", "Ledger"]

log = logging.getLogger("tokenlean.ledger")

TOTAL_FIELDS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "baseline_prompt_tokens",
    "baseline_completion_tokens",
    "cost",
    "baseline_cost",
    "cache_hits",
)


class Ledger:
    """The savings ledger of one proxy (or of several sharing a Redis store)."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        prices: PriceTable | None = None,
        prompt_counter: Callable[[Request], int] | None = None,
    ) -> None:
        self.store = store
        self.prices = prices or PriceTable()
        self.prompt_counter = prompt_counter
        self.errors = 0
        self._lock = threading.Lock()
        self.totals: dict[str, float] = dict.fromkeys(TOTAL_FIELDS, 0.0)
        try:
            for record in store.since(0.0):
                self._count(record)
        except Exception:
            log.warning("could not read the ledger's existing rows", exc_info=True)

    def price(self, record: LedgerRecord, response: Response | None = None) -> LedgerRecord:
        """``record`` with ``cost`` and ``baseline_cost`` from the price table (a cascade's own figures win)."""
        cost = self.prices.cost(record.model, record.prompt_tokens, record.completion_tokens)
        baseline = self.prices.cost(
            record.model, record.baseline_prompt_tokens, record.baseline_completion_tokens
        )
        for event in response.events if response is not None else ():
            if event.stage == "cascade" and "baseline_cost" in event.data:
                cost, baseline = float(event.data["cost"]), float(event.data["baseline_cost"])
        return replace(record, cost=round(cost, 9), baseline_cost=round(baseline, 9))

    def observe(
        self, request: Request, response: Response, latency_s: float, *, endpoint: str = "chat"
    ) -> None:
        """Record one answered request; never raises."""
        try:
            counter = self.prompt_counter
            record = record_exchange(request, response, latency_s, endpoint=endpoint, prompt_counter=counter)
            self.add(self.price(record, response))
        except Exception:
            self.errors += 1
            log.warning("could not record request %s in the ledger", request.request_id, exc_info=True)

    def add(self, record: LedgerRecord) -> None:
        """Append a priced row and count it in the totals."""
        self.store.append(record)
        self._count(record)

    def _count(self, record: LedgerRecord) -> None:
        with self._lock:
            t = self.totals
            t["requests"] += 1
            t["prompt_tokens"] += record.prompt_tokens
            t["completion_tokens"] += record.completion_tokens
            t["baseline_prompt_tokens"] += record.baseline_prompt_tokens
            t["baseline_completion_tokens"] += record.baseline_completion_tokens
            t["cost"] += record.cost
            t["baseline_cost"] += record.baseline_cost
            t["cache_hits"] += int(record.cache_hit)

    def records(self, since_s: float | None = None) -> list[LedgerRecord]:
        """Rows of the last ``since_s`` seconds (all when None), oldest first."""
        return self.store.since(0.0 if since_s is None else time.time() - since_s)

    def collect(self) -> Iterator[Any]:
        """Prometheus collector: the totals as counters (registered on the proxy's registry)."""
        from prometheus_client.core import CounterMetricFamily

        with self._lock:
            totals = dict(self.totals)
        tokens = CounterMetricFamily(
            "tokenlean_ledger_tokens",
            "Ledger tokens: spent upstream and unoptimised baseline",
            labels=["kind", "part"],
        )
        for part in ("prompt", "completion"):
            tokens.add_metric(["spent", part], totals[f"{part}_tokens"])
            tokens.add_metric(["baseline", part], totals[f"baseline_{part}_tokens"])
        yield tokens
        money = CounterMetricFamily("tokenlean_ledger_dollars", "Ledger money (price table)", labels=["kind"])
        money.add_metric(["spent"], totals["cost"])
        money.add_metric(["baseline"], totals["baseline_cost"])
        yield money
        yield CounterMetricFamily(
            "tokenlean_ledger_requests", "Requests in the ledger", value=totals["requests"]
        )
        yield CounterMetricFamily(
            "tokenlean_ledger_cache_hits", "Ledger cache hits", value=totals["cache_hits"]
        )
        yield CounterMetricFamily("tokenlean_ledger_errors", "Rows the store refused", value=self.errors)

    def close(self) -> None:
        """Close the store."""
        self.store.close()
