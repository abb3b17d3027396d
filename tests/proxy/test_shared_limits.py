"""Several proxy processes, one set of limits: real ``tokenlean serve`` processes and a real redis-server.

A key limited to R requests per minute gets R across two proxies that share a Redis (not 2R, as
two in-process limiters would give), a token budget spent through one proxy is spent on the
other, and ``--workers 2`` serves one port from two processes whose Prometheus counters add up.
The backend is the scripted ``fake``: what is checked is the limiter, not a model.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cache.conftest import RedisServer
from tokenlean.testing import ServeProcess

pytestmark = pytest.mark.slow

KEY = "sk-team"
R = 5  # requests per minute: the bucket refills one request every 12 s


class Proxy(ServeProcess):
    """``tokenlean serve --config CONFIG`` with the team key and the given extra flags, started."""

    def __init__(self, config: Path, log: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        flags = ("--config", str(config), "--api-key", KEY, "--log-level", "warning", *flags)
        super().__init__(*flags, env=env, log=log, ready_timeout=120)
        self.start().wait_ready()

    def ask(self, text: str = "hello there") -> httpx.Response:
        body = {"model": "fake", "messages": [{"role": "user", "content": text}]}
        headers = {"authorization": f"Bearer {KEY}"}
        return httpx.post(self.base + "/v1/chat/completions", json=body, headers=headers, timeout=30)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps({"backend": {"type": "fake"}}))
    return path


def test_two_proxies_share_one_request_rate(redis: RedisServer, config: Path, tmp_path: Path) -> None:
    flags = ("--redis-url", redis.url, "--requests-per-minute", str(R))
    pair = [Proxy(config, tmp_path / f"proxy{i}.log", *flags) for i in (1, 2)]
    try:
        started = time.monotonic()
        replies = [pair[i % 2].ask() for i in range(2 * R)]
        elapsed = time.monotonic() - started
    finally:
        for proxy in pair:
            proxy.stop()
    statuses = [r.status_code for r in replies]
    admitted = statuses.count(200)
    refilled = int(elapsed * R / 60)  # what the bucket legitimately regained while the test ran
    assert set(statuses) <= {200, 429}, statuses
    assert R <= admitted <= R + refilled, (statuses, elapsed)
    assert admitted < 2 * R
    refused = next(r for r in replies if r.status_code == 429)
    assert float(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_token_budget_spent_on_one_proxy_is_spent_on_the_other(
    redis: RedisServer, config: Path, tmp_path: Path
) -> None:
    flags = ("--redis-url", redis.url, "--tokens-per-minute", "3")
    first = Proxy(config, tmp_path / "proxy1.log", *flags)
    second = Proxy(config, tmp_path / "proxy2.log", *flags)
    try:
        spent = first.ask("one two three four five six")  # charged after the answer: > 3 tokens
        refused = second.ask()
    finally:
        first.stop()
        second.stop()
    assert spent.status_code == 200 and spent.json()["usage"]["total_tokens"] > 3
    assert refused.status_code == 429, refused.text
    assert "token budget" in refused.json()["error"]["message"]


def test_workers_share_limits_and_add_up_their_metrics(
    redis: RedisServer, config: Path, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "prometheus"
    flags = ("--workers", "2", "--redis-url", redis.url, "--requests-per-minute", "1000")
    proxy = Proxy(
        config, tmp_path / "workers.log", *flags, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    )
    try:
        answered = sum(proxy.ask().status_code == 200 for _ in range(20))
        pages = [httpx.get(proxy.base + "/metrics", timeout=10).text for _ in range(6)]
    finally:
        proxy.stop()
    assert answered == 20
    writers = {m.group(1) for f in metrics_dir.glob("*.db") if (m := re.search(r"_(\d+)\.db$", f.name))}
    assert len(writers) >= 2, sorted(p.name for p in metrics_dir.glob("*"))  # two processes counted
    for page in pages:  # whichever worker answers the scrape reports the sum over both
        found = re.search(r'tokenlean_requests_total\{endpoint="chat",status="200"\} (\S+)', page)
        assert found is not None and float(found.group(1)) == 20.0, page[:2000]
