"""Aggregates of ledger rows: the savings table by tenant, model or stage, a time series, latency percentiles.

One module feeds both ``tokenlean report`` and ``/dashboard``, so the two always agree. Money per
stage: a cache hit saves the whole baseline cost of the request; compression, demonstrations and
SoT change prompt tokens, priced at the model's prompt rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from tokenlean.errors import BadRequestError
from tokenlean.ledger.prices import PriceTable
from tokenlean.ledger.record import LedgerRecord

__all__ = ["BY", "latency_split", "overview", "parse_since", "percentile", "summarize", "timeline"]

BY = ("tenant", "model", "stage")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None) -> float | None:
    """Seconds in ``"90s"``/``"15m"``/``"1h"``/``"7d"`` (None for none); ``BadRequestError`` otherwise."""
    if not text:
        return None
    number, unit = text[:-1], text[-1:].lower()
    if unit not in _UNITS or not number.replace(".", "", 1).isdigit():
        raise BadRequestError(f"since must look like 90s, 15m, 1h or 7d, got {text!r}", param="since")
    return float(number) * _UNITS[unit]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _group(rows: Iterable[LedgerRecord], key: str) -> dict[str, list[LedgerRecord]]:
    groups: dict[str, list[LedgerRecord]] = {}
    for row in rows:
        groups.setdefault(str(getattr(row, key)), []).append(row)
    return groups


def _totals(name: str, rows: Sequence[LedgerRecord]) -> dict[str, Any]:
    spent = sum(r.prompt_tokens + r.completion_tokens for r in rows)
    baseline = sum(r.baseline_prompt_tokens + r.baseline_completion_tokens for r in rows)
    cost, baseline_cost = sum(r.cost for r in rows), sum(r.baseline_cost for r in rows)
    latencies = [r.latency_ms for r in rows]
    return {
        "key": name,
        "requests": len(rows),
        "tokens_spent": spent,
        "tokens_baseline": baseline,
        "tokens_saved": baseline - spent,
        "saved_pct": round(100 * (baseline - spent) / baseline, 1) if baseline else 0.0,
        "cost": round(cost, 6),
        "cost_baseline": round(baseline_cost, 6),
        "cost_saved": round(baseline_cost - cost, 6),
        "cache_hit_rate": round(sum(r.cache_hit for r in rows) / len(rows), 4) if rows else 0.0,
        "estimated": sum(r.estimated for r in rows),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
    }


def _stage_rows(rows: Sequence[LedgerRecord], prices: PriceTable) -> list[dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = {}
    for row in rows:
        for stage in row.stages or ("none",):
            entry = stages.setdefault(
                stage, {"key": stage, "requests": 0, "tokens_saved": 0, "cost_saved": 0.0}
            )
            entry["requests"] += 1
        for stage, tokens in row.saved.items():
            entry = stages.setdefault(
                stage, {"key": stage, "requests": 0, "tokens_saved": 0, "cost_saved": 0.0}
            )
            entry["tokens_saved"] += tokens
            if stage == "cache":
                entry["cost_saved"] += row.baseline_cost
            else:
                entry["cost_saved"] += tokens * prices.rates(row.model)[0] / 1_000_000
        for name, count in row.compute.items():
            entry = stages.setdefault(
                name.split("_")[0],
                {"key": name.split("_")[0], "requests": 0, "tokens_saved": 0, "cost_saved": 0.0},
            )
            entry[name] = entry.get(name, 0) + count
    for entry in stages.values():
        entry["cost_saved"] = round(entry["cost_saved"], 6)
    return sorted(stages.values(), key=lambda e: -e["tokens_saved"])


def summarize(
    rows: Sequence[LedgerRecord], by: str, prices: PriceTable | None = None
) -> list[dict[str, Any]]:
    """One row per tenant / model / stage, plus a ``total`` row (not for ``stage``)."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}")
    if by == "stage":
        return _stage_rows(rows, prices or PriceTable())
    table = [_totals(name, group) for name, group in sorted(_group(rows, by).items())]
    return [*table, _totals("total", rows)]


def latency_split(rows: Sequence[LedgerRecord]) -> dict[str, dict[str, float]]:
    """Latency percentiles of requests a stage acted on vs requests passed through untouched."""
    acted = [r.latency_ms for r in rows if r.stages]
    plain = [r.latency_ms for r in rows if not r.stages]
    return {
        name: {"n": len(v), "p50_ms": round(percentile(v, 50), 1), "p95_ms": round(percentile(v, 95), 1)}
        for name, v in (("optimised", acted), ("untouched", plain), ("all", acted + plain))
    }


def timeline(rows: Sequence[LedgerRecord], buckets: int = 24) -> list[dict[str, Any]]:
    """Tokens and money spent and saved per time bucket (``buckets`` equal slices of the span)."""
    if not rows:
        return []
    start, end = min(r.ts for r in rows), max(r.ts for r in rows)
    width = max((end - start) / buckets, 1e-9)
    series = [
        {"start": start + i * width, "tokens_spent": 0, "tokens_saved": 0, "cost_saved": 0.0, "requests": 0}
        for i in range(buckets)
    ]
    for r in rows:
        slot = series[min(int((r.ts - start) / width), buckets - 1)]
        slot["requests"] += 1
        slot["tokens_spent"] += r.prompt_tokens + r.completion_tokens
        slot["tokens_saved"] += r.tokens_saved
        slot["cost_saved"] += r.baseline_cost - r.cost
    return series


def overview(rows: Sequence[LedgerRecord], prices: PriceTable) -> dict[str, Any]:
    """Everything the dashboard shows, as one JSON-ready mapping."""
    total = _totals("total", rows)
    return {
        "total": total,
        "by_stage": _stage_rows(rows, prices),
        "by_model": summarize(rows, "model", prices)[:-1],
        "by_tenant": summarize(rows, "tenant", prices)[:-1],
        "latency": latency_split(rows),
        "timeline": timeline(rows),
        "prices_date": prices.date,
    }
