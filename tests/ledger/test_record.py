"""What a ledger row says for each kind of stage decision (pure accounting over events)."""

from __future__ import annotations

from tokenlean.ledger import LedgerRecord, PriceTable, record_exchange
from tokenlean.ledger.summary import latency_split, parse_since, summarize
from tokenlean.middleware.types import Choice, Event, Message, Request, Response, Usage

USAGE = Usage(100, 20)
REQUEST = Request(messages=(Message("user", "a secret question"),), model="gpt-4o-mini", tenant="key-1")


def _response(*events: Event, usage: Usage = USAGE) -> Response:
    return Response(
        model="gpt-4o-mini", choices=(Choice(0, "a secret answer", "stop"),), usage=usage, events=events
    )


def test_a_plain_request_spends_what_it_costs() -> None:
    row = record_exchange(REQUEST, _response(Event("cache", "miss")), 0.5)
    assert (row.prompt_tokens, row.completion_tokens) == (100, 20)
    assert (row.baseline_prompt_tokens, row.baseline_completion_tokens) == (100, 20)
    assert row.stages == () and not row.estimated and not row.cache_hit
    assert row.latency_ms == 500.0 and row.tenant == "key-1"


def test_a_cache_hit_spends_nothing_and_its_baseline_is_the_stored_answer() -> None:
    hit = Event("cache", "hit", data={"saved_prompt_tokens": 90, "saved_completion_tokens": 30})
    row = record_exchange(REQUEST, _response(hit), 0.01)
    assert (row.prompt_tokens, row.completion_tokens) == (0, 0)
    assert (row.baseline_prompt_tokens, row.baseline_completion_tokens) == (90, 30)
    assert row.cache_hit and row.estimated and row.saved == {"cache": 120}


def test_compression_adds_back_what_it_removed_and_demos_take_away_what_they_added() -> None:
    compressed = Event("compress", "compressed", data={"tokens_saved": 400})
    demos = Event("demos", "inserted", data={"tokens_added": 60})
    row = record_exchange(REQUEST, _response(demos, compressed), 1.0)
    assert row.baseline_prompt_tokens == 100 + 400 - 60
    assert row.saved == {"compress": 400, "demos": -60}
    assert row.stages == ("demos", "compress") and not row.estimated
    assert row.tokens_saved == 340


def test_sot_baseline_is_the_counted_original_prompt_and_marked_estimated() -> None:
    expanded = Event("sot", "expanded", data={"points": 3})
    row = record_exchange(
        REQUEST, _response(expanded, usage=Usage(400, 150)), 2.0, prompt_counter=lambda r: 30
    )
    assert row.baseline_prompt_tokens == 30 and row.baseline_completion_tokens == 150
    assert row.estimated and row.saved == {"sot": -370}


def test_drafting_and_prefix_reuse_are_compute_not_tokens() -> None:
    events = (
        Event("prefix", "hit", data={"reused_tokens": 50}),
        Event("draft", "drafted", data={"accepted": 7}),
        Event("prefix", "miss", data={"reused_tokens": 0}),
    )
    row = record_exchange(REQUEST, _response(*events), 0.2)
    assert row.stages == ("prefix", "draft")
    assert row.compute == {"prefix_reused": 50, "draft_accepted": 7}
    assert row.tokens_saved == 0


def test_a_row_holds_no_text() -> None:
    row = record_exchange(REQUEST, _response(Event("cache", "miss")), 0.1)
    assert "secret" not in repr(row.as_dict())


def test_prices_longest_prefix_and_fallback() -> None:
    prices = PriceTable({"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6), "*": (1.0, 1.0)})
    assert prices.rates("gpt-4o-mini-2024-07-18") == (0.15, 0.6)
    assert prices.cost("gpt-4o", 1_000_000, 100_000) == 3.5
    assert prices.source("my-local-model") == "fallback"


def _row(tenant: str, stages: tuple[str, ...], spent: int, baseline: int, ms: float) -> LedgerRecord:
    return LedgerRecord(
        ts=1.0, request_id="r", tenant=tenant, model="m", endpoint="chat", stages=stages,
        prompt_tokens=spent, completion_tokens=0, baseline_prompt_tokens=baseline,
        baseline_completion_tokens=0, estimated=False, latency_ms=ms, cost=spent / 1e6,
        baseline_cost=baseline / 1e6, cache_hit="cache" in stages,
        saved={"cache": baseline} if "cache" in stages else {},
    )  # fmt: skip


def test_summaries_by_tenant_and_latency_split() -> None:
    rows = [_row("a", ("cache",), 0, 100, 10), _row("a", (), 100, 100, 300), _row("b", (), 50, 50, 200)]
    table = {r["key"]: r for r in summarize(rows, "tenant")}
    assert table["a"]["tokens_saved"] == 100 and table["a"]["cache_hit_rate"] == 0.5
    assert table["total"]["tokens_spent"] == 150 and table["total"]["tokens_baseline"] == 250
    split = latency_split(rows)
    assert split["optimised"]["p50_ms"] == 10 and split["untouched"]["n"] == 2
    stages = {r["key"]: r for r in summarize(rows, "stage")}
    assert stages["cache"]["tokens_saved"] == 100 and stages["none"]["requests"] == 2


def test_since_windows() -> None:
    assert parse_since("90s") == 90 and parse_since("1h") == 3600 and parse_since(None) is None
