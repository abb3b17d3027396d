"""``/metrics``' stage counters: why a stage stepped aside is a label, so busy skips can be told apart."""

from __future__ import annotations

from tokenlean.middleware.types import Event
from tokenlean.proxy.metrics import ProxyMetrics


def test_stage_events_are_counted_by_reason() -> None:
    metrics = ProxyMetrics()
    metrics.observe_events(
        (
            Event("compress", "skipped", 0.0, {"reason": "busy", "tokens_before": 900}),
            Event("compress", "skipped", 0.0, {"reason": "busy", "tokens_before": 1200}),
            Event("compress", "skipped", 0.0, {"reason": "short", "tokens_before": 40}),
            Event("cache", "hit", 0.0, {}),
            Event("demos", "skipped", 0.0, {"reason": 3}),  # not a string: no label value from it
        )
    )
    text = metrics.render().decode()
    assert 'tokenlean_stage_events_total{action="skipped",reason="busy",stage="compress"} 2.0' in text
    assert 'tokenlean_stage_events_total{action="skipped",reason="short",stage="compress"} 1.0' in text
    assert 'tokenlean_stage_events_total{action="hit",reason="",stage="cache"} 1.0' in text
    assert 'tokenlean_stage_events_total{action="skipped",reason="",stage="demos"} 1.0' in text
    assert 'tokenlean_stage_value_total{field="tokens_before",stage="compress"} 2140.0' in text
