"""What ``bench/load.py`` watches while the clients run: ``/health`` latency and process CPU/memory.

Two threads in the parent process, which is otherwise idle (the clients and the proxy are other
processes), so a slow probe is the proxy's delay and not the prober's:

- the prober opens a fresh loopback connection every ``probe_every`` seconds (as a load
  balancer's or Kubernetes' HTTP probe does), sends ``GET /health`` and times it to the last
  byte of the body; a non-200, a body whose ``status`` is not ``ok``, or no answer within 5 s
  are counted separately;
- the sampler reads each watched process with psutil every ``sample_every`` seconds: CPU in %
  of one core (over the interval; may exceed 100 when a process runs threads on both cores) and,
  for the proxy, its resident memory (RSS).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.common import median, percentile

MB = 1024 * 1024


class Monitor:
    """Probe ``/health`` and sample ``pids`` (``{"proxy": pid, ...}``) from ``start`` to ``stop``."""

    def __init__(
        self, port: int, pids: dict[str, int], probe_every: float = 0.2, sample_every: float = 1.0,
        health_port: int | None = None,
    ) -> None:  # fmt: skip
        self.port = port
        self.health_port = health_port  # ``tokenlean serve --health-port``: probed beside the main port
        self.side_ms: list[float] = []
        self.side_failures: dict[str, int] = {}
        self.probe_every = probe_every
        self.sample_every = sample_every
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.health_ms: list[float] = []
        self.slow_probes: list[tuple[float, float]] = []  # (seconds into the level, ms) when >= 50 ms
        self.health_failures: dict[str, int] = {}
        self.health_status: dict[str, int] = {}
        self.series: list[dict[str, float]] = []  # t_s, rss_mb, and cpu_<name> per sample
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cpu_before: dict[str, float] = {}
        self._cpu_last: dict[str, float] = {}
        self._started = self._last_at = 0.0

    def start(self) -> Monitor:
        """Record the starting CPU times and launch both threads."""
        self._started = time.perf_counter()
        for name, process in self.processes.items():
            self._cpu_before[name] = self._cpu_last[name] = _cpu_seconds(process)
        self._last_at = self._started
        for target in (self._probe_loop, self._sample_loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> dict[str, Any]:
        """Stop the threads (after one last sample) and return the summary."""
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._sample(cpu=False)  # the end RSS; a CPU figure over a few ms would be noise
        return self.summary()

    def _probe_loop(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            self._probe()
            if self.health_port is not None:
                self._probe_side(self.health_port)
            next_at += self.probe_every
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def _probe(self) -> None:
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/health")
            answer = connection.getresponse()
            body = answer.read()
            elapsed = (time.perf_counter() - started) * 1000
        except OSError as exc:  # includes socket timeouts
            kind = type(exc).__name__
            self.health_failures[kind] = self.health_failures.get(kind, 0) + 1
            return
        finally:
            connection.close()
        self.health_ms.append(elapsed)
        if elapsed >= 50:
            self.slow_probes.append((round(started - self._started, 2), round(elapsed, 1)))
        status = f"HTTP {answer.status}"
        if answer.status == 200:
            try:
                detail = json.loads(body)
                status = str((detail.get("backend") or {}).get("status") or detail.get("status"))
            except ValueError:
                status = "unparsable body"
        self.health_status[status] = self.health_status.get(status, 0) + 1

    def _probe_side(self, port: int) -> None:
        """``GET /health`` on the separate liveness port: latency and failures only."""
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/health")
            connection.getresponse().read()
        except OSError as exc:
            self.side_failures[type(exc).__name__] = self.side_failures.get(type(exc).__name__, 0) + 1
            return
        finally:
            connection.close()
        self.side_ms.append((time.perf_counter() - started) * 1000)

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.sample_every):
            self._sample()

    def _sample(self, cpu: bool = True) -> None:
        now = time.perf_counter()
        row = {"t_s": round(now - self._started, 2)}
        interval, self._last_at = max(now - self._last_at, 1e-6), now
        for name, process in self.processes.items():
            try:
                if cpu:
                    used = _cpu_seconds(process)
                    row[f"cpu_{name}"] = 100 * (used - self._cpu_last[name]) / interval
                    self._cpu_last[name] = used
                if name == "proxy":
                    row["rss_mb"] = process.memory_info().rss / MB
            except psutil.Error:
                continue
        self.series.append(row)

    def summary(self) -> dict[str, Any]:
        """``/health`` percentiles and failures; CPU average/peak and proxy RSS start/peak/end."""
        wall = time.perf_counter() - self._started
        ms = self.health_ms
        out: dict[str, Any] = {
            "health_probes": len(ms) + sum(self.health_failures.values()),
            "health_p50_ms": median(ms),
            "health_p99_ms": percentile(ms, 99),
            "health_max_ms": max(ms, default=float("nan")),
            "health_over_50ms": len(self.slow_probes),
            "health_slow_probes": self.slow_probes[:50],
            "health_failures": self.health_failures,
            "health_status": self.health_status,
        }
        if self.health_port is not None:
            side = self.side_ms
            out.update(health_port_p50_ms=median(side), health_port_p99_ms=percentile(side, 99))
            out.update(
                health_port_max_ms=max(side, default=float("nan")), health_port_failures=self.side_failures
            )
        for name, process in self.processes.items():
            try:
                used, span = _cpu_seconds(process) - self._cpu_before[name], wall
            except psutil.Error:  # it ended (the load generator does): up to its last sample
                used, span = self._cpu_last[name] - self._cpu_before[name], self._last_at - self._started
            out[f"cpu_{name}_avg_pct"] = 100 * used / max(span, 1e-6)
            peaks = [row[f"cpu_{name}"] for row in self.series if f"cpu_{name}" in row]
            out[f"cpu_{name}_peak_pct"] = max(peaks, default=float("nan"))
        rss = [row["rss_mb"] for row in self.series if "rss_mb" in row]
        if rss:
            out.update(rss_start_mb=rss[0], rss_peak_mb=max(rss), rss_end_mb=rss[-1])
        out["series"] = [{k: round(v, 2) for k, v in row.items()} for row in self.series]
        return out


def _cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of ``process`` and of its children (vLLM's engine is a child)."""
    total = sum(process.cpu_times()[:2])
    for child in process.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return total
