"""Faults around the proxy: dead, dying, slow and abandoned upstreams, shutdown, failing stages.

Real servers on loopback sockets throughout (tests/proxy/conftest.py): the upstream is the
OpenAI-compatible fake, in a thread or in its own process (so it can be SIGKILLed mid-stream),
the proxy runs under uvicorn, and the shutdown test drives a real ``tokenlean serve`` process.
Already covered elsewhere and not repeated here: a non-streamed request to a closed port is a
503, a slow non-streamed answer a 504, upstream error statuses (tests/backends/test_openai_proxy.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.backends.conftest import WORDS, FakeUpstream
from tests.proxy.conftest import ROOT, RecordingUpstream, free_port, sse_payloads, streamed_text
from tokenlean.backends.fake import FakeBackend
from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.types import Chunk, Request, Response
from tokenlean.proxy.app import create_app

CHAT = "/v1/chat/completions"
HI = [{"role": "user", "content": "Capital of France?"}]
SENTENCE = "".join(WORDS)


def _asgi(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy", timeout=30)


def _openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text and 'File "' not in response.text
    return error


async def _lines_until(lines: AsyncIterator[str], count: int) -> list[str]:
    """Read SSE lines until ``count`` content chunks have arrived."""
    seen: list[str] = []
    async for line in lines:
        seen.append(line)
        if _content_chunks(seen) >= count:
            return seen
    raise AssertionError(f"the stream ended before {count} content chunks: {seen}")


def _content_chunks(lines: list[str]) -> int:
    return sum(1 for payload in sse_payloads(lines) if streamed_text([payload]))


# --- 1. upstream down ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT, "/v1/completions"])
async def test_stream_to_a_dead_upstream_is_503_before_any_event(free_port_url: str, path: str) -> None:
    backend = OpenAIBackend([free_port_url], model="fake-model", max_retries=1, connect_timeout=1)
    body: dict[str, Any] = {"model": "fake-model", "stream": True}
    body.update({"messages": HI} if path == CHAT else {"prompt": "Capital of France?"})
    async with _asgi(create_app(Pipeline(backend))) as client:
        response = await client.post(path, json=body)
        error = _openai_error(response, 503)
        health = await client.get("/health")
    await backend.aclose()
    assert error["code"] == "backend_unavailable" and error["type"] == "upstream_error"
    assert not response.headers["content-type"].startswith("text/event-stream")
    assert health.status_code == 200 and health.json()["backend"]["status"] == "unavailable"


# --- 2. upstream killed mid-stream ----------------------------------------------------------------


@pytest.mark.slow
async def test_upstream_killed_mid_stream(upstream_processes, serve) -> None:  # type: ignore[no-untyped-def]
    first, second = upstream_processes(), upstream_processes()
    backend = OpenAIBackend(
        [first.url, second.url], model="fake-model", routing="least_loaded", max_retries=1, health_interval=60
    )
    proxy = serve(create_app(Pipeline(backend)))
    replicas = {r.url: r for r in backend.replicas.replicas}
    slow = {"model": "fake-model", "messages": HI, "stream": True, "drip_s": 0.1, "repeat": 10}
    other = {**slow, "drip_s": 0.05, "repeat": 6, "messages": [{"role": "user", "content": "Another client"}]}
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
        async with client.stream("POST", CHAT, json=slow) as victim_stream:
            lines = victim_stream.aiter_lines()
            seen = await _lines_until(lines, 2)
            victim_url = next(url for url, r in replicas.items() if r.inflight == 1)
            victim, survivor = (first, second) if f":{first.port}/" in victim_url else (second, first)
            bystander = asyncio.create_task(_collect(client, other))
            survivor_replica = next(r for url, r in replicas.items() if f":{survivor.port}/" in url)
            await _until(
                lambda: survivor_replica.inflight == 1, "the second stream never reached its replica"
            )
            victim.kill()
            seen += [line async for line in lines]
        after = await client.post(CHAT, json={"model": "fake-model", "messages": HI})
        health = await client.get("/health")
        bystander_payloads = await bystander
    await backend.aclose()
    payloads = sse_payloads(seen)
    errors = [p["error"] for p in payloads if isinstance(p, dict) and "error" in p]
    assert payloads[-1] == "[DONE]" and len(errors) == 1, payloads[-3:]
    assert errors[0]["code"] == "backend_error" and errors[0]["type"] == "upstream_error"
    assert 0 < len(streamed_text(payloads)) < len(SENTENCE * 10)  # it was cut, not replayed or padded
    assert bystander_payloads[-1] == "[DONE]" and streamed_text(bystander_payloads) == SENTENCE * 6
    assert not any(isinstance(p, dict) and "error" in p for p in bystander_payloads)
    assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"] == SENTENCE
    assert health.status_code == 200 and proxy.thread.is_alive()


async def _collect(client: httpx.AsyncClient, body: dict[str, Any]) -> list[Any]:
    async with client.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200
        return sse_payloads([line async for line in response.aiter_lines()])


async def _until(condition: Any, message: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.02)


# --- 3. upstream slow -----------------------------------------------------------------------------


async def test_slow_before_the_first_chunk_is_504_after_the_timeout(serve) -> None:  # type: ignore[no-untyped-def]
    upstream = serve(RecordingUpstream().app)
    backend = OpenAIBackend([upstream.url], model="fake-model", read_timeout=0.5, max_retries=0)
    body = {"model": "fake-model", "messages": HI, "stream": True, "scenario": "slow", "sleep_s": 8}
    async with _asgi(create_app(Pipeline(backend))) as client:
        started = time.monotonic()
        response = await client.post(CHAT, json=body)
        elapsed = time.monotonic() - started
    await backend.aclose()
    assert _openai_error(response, 504)["code"] == "backend_timeout"
    assert 0.5 <= elapsed < 6, elapsed  # the configured timeout, not the upstream's 8 s


async def test_stall_mid_stream_ends_with_a_timeout_event(serve) -> None:  # type: ignore[no-untyped-def]
    fake = RecordingUpstream()
    upstream = serve(fake.app)
    backend = OpenAIBackend([upstream.url], model="fake-model", read_timeout=0.5, max_retries=0)
    body = {"model": "fake-model", "messages": HI, "stream": True, "stall_after": 3, "stall_s": 3.0}
    async with _asgi(create_app(Pipeline(backend))) as client:
        response = await client.post(CHAT, json=body)
    await backend.aclose()
    payloads = sse_payloads(response.text.splitlines())
    assert response.status_code == 200 and payloads[-1] == "[DONE]"
    assert streamed_text(payloads) == "".join(WORDS[:2])  # what came before the stall was delivered
    assert payloads[-2]["error"]["code"] == "backend_timeout"


# --- 4. client disconnects mid-stream -----------------------------------------------------------


@pytest.mark.parametrize("reader", ["reading", "stopped reading"])
async def test_client_disconnect_cancels_the_upstream_stream(serve, reader: str) -> None:  # type: ignore[no-untyped-def]
    fake = RecordingUpstream()
    upstream = serve(fake.app)
    backend = OpenAIBackend([upstream.url], model="fake-model", max_retries=0, health_interval=60)
    proxy = serve(create_app(Pipeline(backend)))
    # reading: a slow drip (~14 s in all); stopped reading: a flood that fills the socket buffers,
    # so the proxy is blocked writing to the client when it leaves
    repeat, drip = (40, 0.05) if reader == "reading" else (50_000, 0.0)
    body = {"model": "fake-model", "messages": HI, "stream": True, "drip_s": drip, "repeat": repeat}
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
        async with client.stream("POST", CHAT, json=body) as response:
            lines = response.aiter_lines()
            await _lines_until(lines, 3)
            if reader == "stopped reading":
                await asyncio.sleep(1.0)

        await _until(lambda: fake.streams and fake.streams[0].ended_at, "the upstream stream never ended", 5)
    await backend.aclose()
    record = fake.streams[0]
    assert record.closed and not record.finished
    assert record.sent < len(WORDS) * repeat / 2  # stopped early: the whole drip takes ~14 s


@pytest.mark.slow
async def test_client_disconnect_stops_the_embedded_model(  # type: ignore[no-untyped-def]
    local_backend, shared_backend, model_name, serve, monkeypatch
) -> None:
    tokens: list[int] = []
    closed: list[tuple[str | None, int]] = []
    import tokenlean.backends.local.backend as engine

    send, close_row = engine.send_token, local_backend._close_row

    def counting_send(job: Any, index: int, row: Any, token: int) -> None:
        tokens.append(token)
        send(job, index, row, token)

    def recording_close(job: Any, index: int, row: Any) -> None:
        closed.append((row.finish_reason, len(row.token_ids)))
        close_row(job, index, row)

    monkeypatch.setattr(engine, "send_token", counting_send)
    monkeypatch.setattr(local_backend, "_close_row", recording_close)
    proxy = serve(create_app(Pipeline(shared_backend)))
    story = [{"role": "user", "content": "Tell me a long story about a dragon and a knight."}]
    body = {"model": model_name, "messages": story, "max_tokens": 300, "temperature": 0, "stream": True}
    async with httpx.AsyncClient(base_url=proxy.url, timeout=120) as client:
        async with client.stream("POST", CHAT, json=body) as response:
            await _lines_until(response.aiter_lines(), 3)
        await _until(lambda: bool(closed), "the row was never closed after the client left", 30)
        settled = len(tokens)
        await asyncio.sleep(1.0)
    assert closed[0][0] == "cancelled" and closed[0][1] < 300, closed
    assert len(tokens) == settled  # nothing decoded after the row was dropped


# --- 5. graceful shutdown -----------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_drains_in_flight_streams_then_exits_0(serve) -> None:  # type: ignore[no-untyped-def]
    upstream = serve(FakeUpstream().app)
    port, health_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "tokenlean.cli",
        "serve",
        "--upstream",
        upstream.url,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--max-messages",
        "2",
        "--health-port",
        str(health_port),
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    body = {"model": "fake-model", "messages": HI, "stream": True, "drip_s": 0.1, "repeat": 4}  # ~3 s
    refused_while_streaming = False
    try:
        deadline = time.monotonic() + 60
        while not _healthy(base, process):
            assert time.monotonic() < deadline, "tokenlean serve did not become healthy within 60 s"
            time.sleep(0.1)
        too_long = httpx.post(base + CHAT, json={"model": "fake-model", "messages": HI * 3}, timeout=30)
        assert (
            too_long.status_code == 413 and "limit of 2" in too_long.json()["error"]["message"]
        )  # --max-messages
        liveness = httpx.get(f"http://127.0.0.1:{health_port}/health", timeout=5)  # --health-port
        assert liveness.status_code == 200 and liveness.json()["status"] == "ok"
        with (
            httpx.Client(base_url=base, timeout=30) as client,
            client.stream("POST", CHAT, json=body) as response,
        ):
            seen: list[str] = []
            signalled: float | None = None
            for line in response.iter_lines():
                seen.append(line)
                if signalled is None and _content_chunks(seen) == 1:
                    process.send_signal(signal.SIGTERM)  # mid-stream
                    signalled = time.monotonic()
                elif signalled and not refused_while_streaming and time.monotonic() - signalled > 0.5:
                    refused_while_streaming = _refused(port)
                    assert refused_while_streaming, "a new connection was accepted during shutdown"
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    payloads = sse_payloads(seen)
    assert payloads[-1] == "[DONE]" and streamed_text(payloads) == SENTENCE * 4
    assert not any(isinstance(p, dict) and "error" in p for p in payloads)
    assert refused_while_streaming, "the stream ended before the shutdown was half a second old"
    assert code == 0, process.stdout.read() if process.stdout else code


def _healthy(base: str, process: subprocess.Popen[str]) -> bool:
    assert process.poll() is None, process.stdout.read() if process.stdout else process.returncode
    try:
        return httpx.get(base + "/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


# --- 6. a stage that raises -----------------------------------------------------------------------


class Exploding:
    """A stage that fails before calling the rest of the pipeline."""

    name = "exploding"

    async def __call__(self, request: Request, call_next: Any) -> Response:
        raise RuntimeError("exploded while optimising")


class ExplodingMidStream:
    """A stage whose stream wrapper fails after the first chunk (too late for any policy)."""

    name = "exploding_mid_stream"

    async def __call__(self, request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        if response.stream is None:
            return response

        async def broken(stream: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
            async for chunk in stream:
                yield chunk
                raise RuntimeError("exploded mid-stream")

        return response.replace(stream=broken(response.stream))


@pytest.mark.parametrize("stream", [False, True])
async def test_failing_stage_is_bypassed_by_default_and_the_answer_arrives(stream: bool) -> None:
    backend = FakeBackend()
    app = create_app(Pipeline(backend, [Exploding()]))
    body = {
        "model": "fake",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": stream,
        "stream_options": {"include_usage": True},
    }
    async with _asgi(app) as client:
        response = await client.post(CHAT, json=body)
    assert response.status_code == 200 and response.headers["x-tokenlean-exploding"] == "bypassed"
    if stream:
        payloads = sse_payloads(response.text.splitlines())
        assert payloads[-1] == "[DONE]" and streamed_text(payloads) == "hello there"
        events = payloads[-2]["tokenlean"]["events"]
    else:
        assert response.json()["choices"][0]["message"]["content"] == "hello there"
        events = response.json()["tokenlean"]["events"]
    bypassed = [e for e in events if e["stage"] == "exploding"]
    assert bypassed == [
        {
            "stage": "exploding",
            "action": "bypassed",
            "ms": 0.0,
            "error": "RuntimeError: exploded while optimising",
        }
    ]
    assert len(backend.requests) == 1


async def test_failing_stage_with_policy_raise_is_a_5xx_without_a_trace() -> None:
    backend = FakeBackend()
    app = create_app(Pipeline(backend, [Exploding()], policies={"exploding": "raise"}))
    async with _asgi(app) as client:
        response = await client.post(CHAT, json={"model": "fake", "messages": HI})
    error = _openai_error(response, 500)
    assert error["code"] == "stage_failed" and "exploding" in error["message"]
    assert backend.requests == []  # raise means no answer: the backend was never asked


async def test_stage_failing_mid_stream_ends_the_stream_cleanly() -> None:
    app = create_app(Pipeline(FakeBackend(), [ExplodingMidStream()]))
    body = {"model": "fake", "messages": [{"role": "user", "content": "one two three"}], "stream": True}
    async with _asgi(app) as client:
        response = await client.post(CHAT, json=body)
        health = await client.get("/health")
    payloads = sse_payloads(response.text.splitlines())
    assert response.status_code == 200 and payloads[-1] == "[DONE]"
    assert streamed_text(payloads) == "one"
    assert payloads[-2]["error"]["code"] == "internal_error" and "Traceback" not in response.text
    assert health.status_code == 200
