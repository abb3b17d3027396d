"""Fixtures for the proxy's fault tests: real servers on loopback, in threads and in processes.

The upstream is the OpenAI-compatible fake of tests/backends/conftest.py (its ``model`` or
``scenario`` field picks a behaviour: ``drip_s`` seconds between words, ``repeat`` copies of the
sentence). ``RecordingUpstream`` adds what the cancellation tests need to see: how each of its
streams ended. ``upstream_process`` runs the fake in a child process, so a test can SIGKILL it
while a stream is half sent; ``serve`` runs any ASGI app (the proxy) under uvicorn in a thread, so
clients talk to it over a real socket and can hang up on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends.conftest import FakeUpstream, ServerThread
from tokenlean.testing import free_port

ROOT = Path(__file__).resolve().parents[2]

# The child: bind a free port itself (no race), say which, serve the fake until killed.
_UPSTREAM_CHILD = """
import socket, sys, uvicorn
from tests.backends.conftest import FakeUpstream
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(FakeUpstream().app, log_level="error", lifespan="off")
uvicorn.Server(config).run(sockets=[sock])
"""


@dataclass
class StreamRecord:
    """How one upstream stream went: SSE events sent, and whether it ran to its end."""

    sent: int = 0
    finished: bool = False
    closed: bool = False  # the generator was closed or cancelled (the client went away)
    ended_at: float | None = None


class RecordingUpstream(FakeUpstream):
    """The fake upstream, recording each stream's fate (``streams``, in arrival order).

    ``stall_after``/``stall_s`` in the body: after that many SSE events, go silent that long.
    """

    def __init__(self) -> None:
        super().__init__()
        self.streams: list[StreamRecord] = []

    async def stream(self, body: dict[str, Any], scenario: str, attempt: int) -> AsyncIterator[str]:
        record = StreamRecord()
        self.streams.append(record)
        try:
            async for event in super().stream(body, scenario, attempt):
                yield event
                record.sent += 1
                if record.sent == body.get("stall_after"):  # stop talking, connection kept open
                    await asyncio.sleep(float(body.get("stall_s", 0)))
            record.finished = True
        except (GeneratorExit, asyncio.CancelledError):
            record.closed = True
            raise
        finally:
            record.ended_at = time.monotonic()


@dataclass
class UpstreamProcess:
    """A fake upstream in its own process (``kill()`` is SIGKILL: no goodbye on the socket)."""

    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_upstream_process() -> UpstreamProcess:
    """Start the fake upstream in a child process and wait until it answers ``/v1/models``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", _UPSTREAM_CHILD], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    port = int(process.stdout.readline() or 0)
    upstream = UpstreamProcess(process, port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"upstream process exited with {process.returncode}")
        try:
            if httpx.get(upstream.url + "/v1/models", timeout=1).status_code == 200:
                return upstream
        except httpx.TransportError:
            time.sleep(0.05)
    upstream.stop()
    raise RuntimeError("upstream process did not answer within 30 s")


@pytest.fixture
def upstream_processes() -> Iterator[Callable[[], UpstreamProcess]]:
    """A factory of fake upstream processes, all stopped after the test."""
    started: list[UpstreamProcess] = []

    def start() -> UpstreamProcess:
        started.append(start_upstream_process())
        return started[-1]

    yield start
    for upstream in started:
        upstream.stop()


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ServerThread]]:
    """A factory: ``serve(app)`` runs ``app`` under uvicorn on a free loopback port (a thread)."""
    servers: list[ServerThread] = []

    def start(app: Any) -> ServerThread:
        servers.append(ServerThread(app).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def free_port_url() -> str:
    """A loopback URL nothing listens on (a dead upstream)."""
    return f"http://127.0.0.1:{free_port()}"


def sse_payloads(lines: list[str]) -> list[Any]:
    """The ``data:`` payloads of an SSE body's lines: parsed JSON, or the string ``[DONE]``."""
    out: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def streamed_text(payloads: list[Any]) -> str:
    """The content deltas of chat chunks, joined."""
    return "".join(
        choice["delta"].get("content") or ""
        for p in payloads
        if isinstance(p, dict)
        for choice in p.get("choices", [])
    )
