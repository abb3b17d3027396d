"""A liveness endpoint on its own port and thread, answering while the event loop is saturated.

Why: every stream the proxy relays runs on one asyncio event loop, and ``GET /health`` on the
main port queues behind them. Measured by bench/load.py with 200 streaming clients on the 2-core
dev machine: main-port ``/health`` p99 766 ms (max 4.2 s), while a load balancer or Kubernetes
probe wants an answer in tens of milliseconds, and a probe that times out gets a healthy but busy
proxy restarted. This listener runs in a thread of its own (a plain ``ThreadingHTTPServer``: it
needs the GIL only for the few microseconds it works), so it answers while the loop is busy.

It does not simply say "ok": a heartbeat task on the main loop stamps the time every 100 ms and
the answer carries the loop's lag. A loop stalled for longer than ``stall_after_s`` (a deadlock,
a blocking call on the loop) turns the answer into 503, which is what a liveness probe is for.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HealthListener"]

BEAT_S = 0.1


class HealthListener:
    """``GET /health`` on ``host:port`` from a daemon thread; ``beat()`` runs on the main loop."""

    def __init__(self, host: str, port: int, *, stall_after_s: float = 10.0) -> None:
        self.stall_after_s = stall_after_s
        self.last_beat = time.monotonic()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tokenlean-health", daemon=True
        )

    def start(self) -> None:
        """Serve from now on (in the background thread)."""
        self._thread.start()

    async def beat(self) -> None:
        """Stamp the time every ``BEAT_S`` on the loop this runs on, until cancelled."""
        while True:
            self.last_beat = time.monotonic()
            await asyncio.sleep(BEAT_S)

    def report(self) -> tuple[int, dict[str, Any]]:
        """The status code and body: 503 once the loop has missed beats for ``stall_after_s``."""
        lag = max(0.0, time.monotonic() - self.last_beat - BEAT_S)
        stalled = lag > self.stall_after_s
        body = {"status": "stalled" if stalled else "ok", "loop_lag_ms": round(lag * 1000, 1)}
        return (503 if stalled else 200), body

    def stop(self) -> None:
        """Stop serving (if it started: ``shutdown`` waits for a serve loop) and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def _handler(listener: HealthListener) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server dispatches GET to
            found = self.path.split("?")[0] == "/health"
            status, body = listener.report() if found else (404, {"error": "not found"})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes are not worth a log line each

    return Handler
