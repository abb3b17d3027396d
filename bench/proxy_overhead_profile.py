"""Where the proxy's CPU goes on a pass-through stream: cProfile of ``tokenlean serve`` under load.

The upstream is bench/proxy_overhead_upstream.py with no pacing (every chunk at once), so the
proxy's own work dominates; the proxy runs under ``cProfile`` with no stages (``--profile off``)
and serves ``--requests`` streamed chat requests, ``--concurrency`` at a time. Prints the proxy's
CPU milliseconds per request (from /proc, profiler overhead excluded by a second, unprofiled run)
and the top functions by own time. Run: ``python -m bench.proxy_overhead_profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import started_process
from bench.proxy_overhead import cpu_seconds
from tokenlean.testing import free_port


async def drive(url: str, requests: int, concurrency: int, tokens: int) -> None:
    """``requests`` streamed chat completions, ``concurrency`` at a time, each read to the end."""
    body: dict[str, Any] = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "say something"}],
        "max_tokens": tokens,
        "stream": True,
    }
    queue = list(range(requests))
    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            while queue:
                queue.pop()
                async with client.stream("POST", url + "/chat/completions", json=body) as answer:
                    assert answer.status_code == 200, await answer.aread()
                    async for _ in answer.aiter_bytes():
                        pass

        await asyncio.gather(*(worker() for _ in range(concurrency)))


LEDGER = False  # --with-ledger: keep the default savings ledger (a SQLite write per request)
NO_RELAY = False  # --no-relay: every chunk parsed and re-encoded (the path streams with stages take)


def proxy_argv(port: int, upstream: str, profile_to: Path | None) -> list[str]:
    """``tokenlean serve`` with no stages, under cProfile when ``profile_to`` is given."""
    prefix = [sys.executable]
    if profile_to is not None:
        prefix += ["-m", "cProfile", "-o", str(profile_to)]
    serve = [
        "-m",
        "tokenlean.cli",
        "serve",
        "--profile",
        "off",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *([] if LEDGER else ["--ledger", "off"]),
        *(["--no-relay"] if NO_RELAY else []),
    ]
    if profile_to is not None:
        serve[0:2] = [str(Path(sys.executable).parent / "tokenlean")]
    return prefix + serve + ["--upstream", upstream]


def measure(upstream: str, args: argparse.Namespace, profile_to: Path | None) -> float:
    """Proxy CPU ms per request for one run (profiled or not)."""
    port = free_port()
    with started_process(proxy_argv(port, upstream, profile_to), f"http://127.0.0.1:{port}/health") as proc:
        url = f"http://127.0.0.1:{port}/v1"
        asyncio.run(drive(url, 5, 1, args.tokens))  # warm
        before = cpu_seconds(proc.pid)
        asyncio.run(drive(url, args.requests, args.concurrency, args.tokens))
        used = cpu_seconds(proc.pid) - before
        proc.send_signal(signal.SIGINT)  # a clean exit writes the profile
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return used * 1000 / args.requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--no-relay", action="store_true", help="serve with --no-relay (for comparison)")
    parser.add_argument("--with-ledger", action="store_true", help="keep the savings ledger on (the default)")
    args = parser.parse_args(argv)
    global LEDGER, NO_RELAY
    LEDGER, NO_RELAY = args.with_ledger, args.no_relay
    port = free_port()
    upstream_argv = [sys.executable, "-m", "bench.proxy_overhead_upstream", "--port", str(port)]
    upstream_argv += ["--prefill-ms", "0", "--interval-ms", "0"]
    upstream = f"http://127.0.0.1:{port}/v1"
    out = Path(tempfile.mkdtemp(prefix="tokenlean-profile-")) / "proxy.prof"
    with started_process(upstream_argv, upstream + "/models"):
        plain = measure(upstream, args, None)
        measure(upstream, args, out)
    print(f"proxy CPU per streamed request ({args.tokens} tokens, unprofiled): {plain:.2f} ms", flush=True)
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if out.exists():
        stats = pstats.Stats(str(out))
        stats.sort_stats("tottime").print_stats(args.top)
        print(f"profile: {out} (pid {os.getpid()})")


if __name__ == "__main__":
    main()
