"""A small real OpenAI-compatible server on loopback for OpenAIBackend's protocol tests.

It speaks the wire format vLLM speaks (JSON answers, SSE chunks ending in ``[DONE]``, error
bodies ``{"error": {...}}``) and misbehaves on request: the ``model`` field picks the scenario
(an error status, a slow answer, a connection dropped before or after the first chunk, ...).
It runs under uvicorn in a thread, on a real socket, so connection failures, timeouts and
chunk timing are the real ones. Error mapping, retries and streaming are pure protocol logic;
the real vLLM is exercised in tests/backends/test_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

WORDS = ["The", " capital", " of", " France", " is", " Paris", "."]


class FakeUpstream:
    """The scenarios, and every request body it received (``calls``).

    ``/metrics`` serves ``metrics_text`` (404 while it is ``None``) after ``metrics_delay_s``.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.seen: dict[str, int] = {}
        self.metrics_text: str | None = None
        self.metrics_delay_s = 0.0
        self.sent_at: list[float] = []  # when each streamed word left the upstream (monotonic)
        self.app = Starlette(
            routes=[
                Route("/metrics", self.metrics_route, methods=["GET"]),
                Route("/v1/models", self.models_route, methods=["GET"]),
                Route("/v1/chat/completions", self.complete_route, methods=["POST"]),
                Route("/v1/completions", self.complete_route, methods=["POST"]),
            ]
        )

    async def metrics_route(self, request: HTTPRequest) -> Response:
        await asyncio.sleep(self.metrics_delay_s)
        if self.metrics_text is None:
            return PlainTextResponse("not found", status_code=404)
        return PlainTextResponse(self.metrics_text, media_type="text/plain; version=0.0.4")

    async def models_route(self, request: HTTPRequest) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def complete_route(self, request: HTTPRequest) -> Response:
        body = await request.json()
        body["_path"] = request.url.path
        body["_peer_port"] = request.client.port if request.client else None  # one per TCP connection
        body["_received_at"] = time.monotonic()
        body["_authorization"] = request.headers.get("authorization")
        self.calls.append(body)
        scenario = str(body.get("scenario") or body.get("model", "echo"))
        attempt = self.seen[scenario] = self.seen.get(scenario, 0) + 1
        if scenario.startswith("status-"):
            return _error(int(scenario.split("-")[1]))
        if scenario == "echo-auth":  # a careless upstream that quotes the credentials it was sent
            message = f"rejected credentials {request.headers.get('authorization')}"
            return JSONResponse({"error": {"message": message, "type": "BadRequestError", "code": 400}}, 400)
        if scenario.startswith("flaky-") and attempt == 1:
            return _error(int(scenario.split("-")[1]))
        if scenario == "busy-429" and attempt == 1:  # asks the client to wait before retrying
            return _error(429, {"retry-after": str(body.get("retry_after_s", 0.3))})
        if scenario == "slow":
            await asyncio.sleep(float(body.get("sleep_s", 2.0)))
        if body.get("stream"):
            return StreamingResponse(self.stream(body, scenario, attempt), media_type="text/event-stream")
        return JSONResponse(_answer(body, scenario))

    async def stream(self, body: dict[str, Any], scenario: str, attempt: int) -> AsyncIterator[str]:
        if scenario == "drop-before-first" and attempt == 1:
            raise ConnectionAbortedError("dropped before the first chunk")  # headers already sent
        yield _sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        words = WORDS * int(body.get("repeat", 1))
        for position, word in enumerate(words):
            await asyncio.sleep(float(body.get("drip_s", 0.0)))
            delta: dict[str, Any] = {"index": 0, "delta": {"content": word}, "finish_reason": None}
            if body.get("logprobs"):
                delta["logprobs"] = {"content": [{"token": word, "logprob": -0.5, "top_logprobs": []}]}
            self.sent_at.append(time.monotonic())
            yield _sse({"choices": [delta]})
            if scenario == "drop-after-first":
                raise ConnectionAbortedError("dropped after the first chunk")
            if scenario == "stream-error" and position == 1:
                yield _sse({"error": {"message": "engine died", "type": "InternalServerError", "code": 500}})
                return
        yield _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            yield _sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(words)}})
        yield "data: [DONE]\n\n"


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps({'object': 'chat.completion.chunk', 'model': 'fake-model', **data})}\n\n"


def _error(status: int, headers: dict[str, str] | None = None) -> Response:
    body = {
        "error": {
            "message": f"scripted {status}",
            "type": "BadRequestError",
            "param": "max_tokens",
            "code": status,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _answer(body: dict[str, Any], scenario: str) -> dict[str, Any]:
    text = json.dumps(body) if scenario == "echo" else "".join(WORDS)
    if "prompt" in body:
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": "stop"}
        if body.get("logprobs") is not None:
            choice["logprobs"] = {
                "tokens": ["a", "b"],
                "token_logprobs": [-0.1, -0.2],
                "top_logprobs": [{"a": -0.1, "c": -2.0}, {"b": -0.2}],
                "text_offset": [0, 1],
            }
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [{"token": "The", "logprob": -0.25, "top_logprobs": []}]}
    usage = {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
    return {
        "id": "cmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake-model",
        "choices": [choice],
        "usage": usage,
    }


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread; ``port=0`` picks a free port."""

    def __init__(self, app: Any, port: int = 0) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = port

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop now: handlers still sleeping in a slow scenario are not waited for."""
        self.server.should_exit = self.server.force_exit = True
        self.thread.join(10)


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    """A fresh fake upstream (its own scenario counters) and its URL."""
    fake = FakeUpstream()
    server = ServerThread(fake.app).start()
    yield fake, server.url
    server.stop()


@pytest.fixture
def start_upstream() -> Iterator[Any]:
    """A factory: ``start(port=0)`` starts another fake upstream, stopped after the test."""
    servers: list[ServerThread] = []

    def start(port: int = 0) -> tuple[FakeUpstream, ServerThread]:
        fake = FakeUpstream()
        servers.append(ServerThread(fake.app, port).start())
        return fake, servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def free_port_url() -> str:
    """A loopback URL nothing listens on (a closed port)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
