"""The liveness listener on its own port: it answers while the event loop is blocked, and says so."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import httpx

from tokenlean.backends.fake import FakeBackend
from tokenlean.middleware import Pipeline
from tokenlean.proxy.app import create_app
from tokenlean.proxy.health_port import HealthListener


def probe(port: int, path: str = "/health") -> tuple[int, dict, float]:  # type: ignore[type-arg]
    started = time.perf_counter()
    answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    return answer.status_code, answer.json(), (time.perf_counter() - started) * 1000


async def test_answers_while_the_loop_is_blocked_and_reports_the_lag() -> None:
    listener = HealthListener("127.0.0.1", 0, stall_after_s=2.0)
    app = create_app(Pipeline(FakeBackend()), health=listener)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.25)  # a few beats
        status, body, _ = await asyncio.to_thread(probe, listener.port)
        assert status == 200 and body["status"] == "ok" and body["loop_lag_ms"] >= 0

        def probe_at(delay: float) -> tuple[int, dict, float]:  # type: ignore[type-arg]
            time.sleep(delay)
            answer = probe(listener.port)
            return answer[0], answer[1], time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            early, late = pool.submit(probe_at, 0.1), pool.submit(probe_at, 3.5)
            time.sleep(6.0)  # noqa: ASYNC251 - blocking the loop on purpose: the listener must still answer
            unblocked = time.monotonic()
            answers = [early.result(timeout=5), late.result(timeout=5)]
        assert all(at < unblocked for _, _, at in answers), answers  # answered during the block, not after
        assert answers[0][0] == 200 and answers[0][1]["status"] == "ok"  # blocked < stall_after_s so far
        assert answers[1][0] == 503 and answers[1][1]["status"] == "stalled"  # lag passed stall_after_s
        assert answers[1][1]["loop_lag_ms"] >= 2000

        await asyncio.sleep(0.25)  # the loop beats again
        status, body, _ = await asyncio.to_thread(probe, listener.port)
        assert status == 200 and body["status"] == "ok"
        assert (await asyncio.to_thread(probe, listener.port, "/v1/models"))[0] == 404  # liveness only


def test_stops_and_frees_its_port() -> None:
    listener = HealthListener("127.0.0.1", 0)
    listener.start()
    assert probe(listener.port)[0] == 200
    listener.stop()
    again = HealthListener("127.0.0.1", listener.port)  # the port can be bound again
    again.stop()
