"""Two real ``tokenlean serve`` processes sharing one real redis-server through the cache stage.

What a deployment with replicas relies on: an answer stored by one proxy is an exact hit on the
other, and a semantic hit too once the other's faiss index has caught up from the Redis stream;
another API key never sees it; and a Redis that goes away turns the cache into a bypass, never
into a failed request. The backend is the scripted ``fake`` (it echoes the question), so what is
measured is the cache's behaviour across processes, not a model's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tokenlean.testing import ServeProcess

pytestmark = pytest.mark.slow

QUESTION = "How do I learn Python?"
PARAPHRASE = "How can I learn Python?"
KEYS = ("sk-alice", "sk-bob")


class Proxy(ServeProcess):
    """``tokenlean serve`` with a pipeline spec and both tenants' keys, on a free loopback port."""

    def __init__(self, config: Path, log: Path) -> None:
        keys = (arg for key in KEYS for arg in ("--api-key", key))
        flags = ("--config", str(config), "--log-level", "warning", *keys)
        super().__init__(*flags, env={"HF_HUB_OFFLINE": "1"}, log=log, ready_timeout=180)

    def ask(self, question: str, key: str = KEYS[0]) -> httpx.Response:
        body = {"model": "fake", "temperature": 0, "messages": [{"role": "user", "content": question}]}
        return httpx.post(
            self.base + "/v1/chat/completions",
            json=body,
            timeout=60,
            headers={"authorization": f"Bearer {key}"},
        )


@pytest.fixture
def proxies(own_redis: Any, tmp_path: Path) -> Iterator[tuple[Proxy, Proxy]]:
    cache = {
        "store": "redis",
        "url": own_redis.url,
        "prefix": f"e2e:{uuid.uuid4().hex}",
        "store_timeout_s": 5,
    }
    config = tmp_path / "pipeline.json"
    config.write_text(
        json.dumps({"backend": {"type": "fake"}, "stages": [{"type": "cache", "options": cache}]})
    )
    pair = (Proxy(config, tmp_path / "proxy1.log"), Proxy(config, tmp_path / "proxy2.log"))
    try:
        for proxy in pair:
            proxy.start()
        for proxy in pair:
            proxy.wait_ready()
        yield pair
    finally:
        for proxy in pair:
            proxy.stop()


def cache_event(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    events = reply.json()["tokenlean"]["events"]
    return next(e for e in events if e["stage"] == "cache" and e["action"] != "timing")


def answer(reply: httpx.Response) -> str:
    return str(reply.json()["choices"][0]["message"]["content"])


def test_replicas_share_answers_through_redis_and_survive_its_loss(
    proxies: tuple[Proxy, Proxy], own_redis: Any
) -> None:
    first, second = proxies
    stored = first.ask(QUESTION)
    assert cache_event(stored)["action"] == "miss" and cache_event(stored)["stored"] is True

    exact = second.ask(QUESTION)
    assert exact.headers["x-tokenlean-cache"] == "hit"
    assert cache_event(exact)["kind"] == "exact" and answer(exact) == QUESTION

    semantic = second.ask(PARAPHRASE)  # proxy 2's faiss index catches up from the Redis stream
    event = cache_event(semantic)
    assert event["action"] == "hit" and event["kind"] == "semantic", event
    assert answer(semantic) == QUESTION  # proxy 1's stored answer, not an echo of the paraphrase

    other_tenant = second.ask(QUESTION, key=KEYS[1])
    assert (
        cache_event(other_tenant)["action"] == "miss" and other_tenant.headers["x-tokenlean-cache"] == "miss"
    )

    own_redis.stop()
    for proxy in proxies:
        down = proxy.ask("Is the cache still there?")
        assert down.status_code == 200 and down.headers["x-tokenlean-cache"] == "bypassed"
        assert answer(down) == "Is the cache still there?"
