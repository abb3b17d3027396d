"""``tokenlean.testing.ServerProcess``: a real server comes up and is stopped; one that dies says why."""

from __future__ import annotations

import sys

import pytest

from tokenlean.testing import ServerProcess, free_port


def test_a_server_is_ready_inside_the_block_and_stopped_after() -> None:
    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], f"http://127.0.0.1:{port}/"
    )
    with server:
        assert server.process is not None and server.process.poll() is None
    assert server.process.poll() is not None


def test_a_server_that_exits_raises_with_its_output() -> None:
    command = [sys.executable, "-c", "print('bad flag --prot'); raise SystemExit(2)"]
    with pytest.raises(RuntimeError, match="bad flag --prot"):
        ServerProcess(command, f"http://127.0.0.1:{free_port()}/", ready_timeout=30).start().wait_ready()
