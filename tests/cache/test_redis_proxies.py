"""Two real ``tokenlean serve`` processes sharing one real redis-server through the cache stage.

What a deployment with replicas relies on: an answer stored by one proxy is an exact hit on the
other, and a semantic hit too once the other's faiss index has caught up from the Redis stream;
another API key never sees it; and a Redis that goes away turns the cache into a bypass, never
into a failed request. The backend is the scripted ``fake`` (it echoes the question), so what is
measured is the cache's behaviour across processes, not a model's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

QUESTION = "How do I learn Python?"
PARAPHRASE = "How can I learn Python?"
KEYS = ("sk-alice", "sk-bob")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """``python -m tokenlean.cli serve`` with a pipeline spec, on a free loopback port."""

    def __init__(self, config: Path, log: Path) -> None:
        self.base = f"http://127.0.0.1:{_free_port()}"
        port = self.base.rsplit(":", 1)[1]
        command = [
            sys.executable,
            "-m",
            "tokenlean.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            port,
            "--log-level",
            "warning",
            *(arg for key in KEYS for arg in ("--api-key", key)),
        ]
        self.log = log
        self.process = subprocess.Popen(
            command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log.open("w"), stderr=subprocess.STDOUT
        )

    def wait_healthy(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        pytest.fail(
            f"tokenlean serve did not become healthy in {timeout_s} s:\n{self.log.read_text()[-3000:]}"
        )

    def ask(self, question: str, key: str = KEYS[0]) -> httpx.Response:
        body = {"model": "fake", "temperature": 0, "messages": [{"role": "user", "content": question}]}
        return httpx.post(
            self.base + "/v1/chat/completions",
            json=body,
            timeout=60,
            headers={"authorization": f"Bearer {key}"},
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def proxies(own_redis: Any, tmp_path: Path) -> Iterator[tuple[ServeProcess, ServeProcess]]:
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
    pair = (ServeProcess(config, tmp_path / "proxy1.log"), ServeProcess(config, tmp_path / "proxy2.log"))
    try:
        for proxy in pair:
            proxy.wait_healthy()
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
    proxies: tuple[ServeProcess, ServeProcess], own_redis: Any
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
