"""Compression under a steady stream of long-context requests: an unbounded scorer queue vs ``max_wait_s``.

The compress stage's scorer is one model shared by every request; on a CPU one HotpotQA-sized
prompt takes seconds to compress. When long-context requests arrive faster than that, an
unbounded queue makes every request wait for every compression ahead of it, and the wait grows
for as long as the traffic lasts. ``max_wait_s`` sends a request on uncompressed when its
estimated wait is over the bound (``tokenlean/compressors/backlog.py``).

One run (``python -m bench.compress_overload``): three real ``tokenlean serve`` processes in front
of the fast paced upstream of ``bench/proxy_overhead_upstream.py`` (30 ms to the first token, 16
tokens at 20 ms: an upstream much faster than the scorer, as a GPU vLLM is), one at a time:
``--profile off``; the lean profile's compress stage alone (as the lean profile ships it: no
bound); and the same with ``max_wait_s`` (``--max-wait-s``, default 4 s). Each gets the same
HotpotQA distractor questions with their ten paragraphs (about 1,400 tokens, built as in the e2e
workload's RAG slice) at the same Poisson arrival times, open loop, at rates set relative to the
scorer's capacity on the machine at hand: first the median time of three compressions one at a
time is measured, then the rates are ``--load`` multiples (default 0.5 and 2) of one over it.
Figures: end-to-end latency p50/p95 as the client sees it, and the context tokens sent upstream
as a fraction of the original (from the stage's events).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bench.common import environment, goal, median, percentile, print_table, started_process, write_results
from bench.e2e_workload import _rag_slice
from tokenlean.middleware.profiles import load_profile
from tokenlean.testing import free_port

NAME = "compress_overload"
WORK = Path("/tmp/tokenlean-bench-compress-overload")


def lean_compress_options() -> dict[str, Any]:
    """The lean profile's compress options, as shipped."""
    stages = load_profile("lean")["stages"]
    return dict(next(s for s in stages if s["type"] == "compress")["options"])


def spec_file(name: str, options: dict[str, Any]) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"stages": [{"type": "compress", "options": options}]}))
    return path


def arrivals(rate: float, count: int, seed: int = 5) -> list[float]:
    """Poisson arrival times (seconds from the start) at ``rate`` requests per second.

    One pattern of exponential gaps, rescaled so that their mean is exactly ``1 / rate``: every
    rate replays the same pattern at its own speed (16 raw draws can be far from their mean).
    """
    rng = random.Random(seed)
    gaps = [rng.expovariate(1.0) for _ in range(count - 1)]
    scale = (count - 1) / rate / sum(gaps)
    times, now = [0.0], 0.0
    for gap in gaps:
        now += gap * scale
        times.append(now)
    return times


async def send(client: Any, body: dict[str, Any], at: float, start: float) -> dict[str, Any]:
    await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
    sent = time.perf_counter()
    answer = await client.post("/v1/chat/completions", json=body)
    latency = time.perf_counter() - sent
    if answer.status_code != 200:
        raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:300]}")
    events = answer.json().get("tokenlean", {}).get("events", [])
    compress = next((e for e in events if e["stage"] == "compress" and e["action"] != "timing"), None)
    return {"arrival_s": round(at, 3), "latency_s": latency, "compress": compress}


async def replay(
    url: str, bodies: list[dict[str, Any]], times: list[float], warm: dict[str, Any]
) -> list[dict[str, Any]]:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        await client.post("/v1/chat/completions", json=warm)  # loads the scorer (and measures its speed once)
        start = time.perf_counter()
        return list(await asyncio.gather(*(send(client, b, t, start) for b, t in zip(bodies, times))))


@contextlib.contextmanager
def serving(upstream_port: int, flags: list[str]) -> Iterator[str]:
    """A ``tokenlean serve`` with ``flags`` in front of the paced upstream; yields its URL."""
    port = free_port()
    argv = [sys.executable, "-m", "tokenlean.cli", "serve", "--port", str(port), "--ledger", "off"]
    argv += ["--log-level", "warning", "--upstream", f"http://127.0.0.1:{upstream_port}/v1", *flags]
    url = f"http://127.0.0.1:{port}"
    with started_process(argv, url + "/health", timeout=300):
        yield url


async def solo_compression_s(url: str, bodies: list[dict[str, Any]]) -> float:
    """The median seconds the stage spent compressing one request at a time (the first loads the scorer)."""
    import httpx

    seconds = []
    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        for body in bodies:
            events = (await client.post("/v1/chat/completions", json=body)).json()["tokenlean"]["events"]
            seconds += [
                e["ms"] / 1000 for e in events if e["stage"] == "compress" and e["action"] == "compressed"
            ]
    return median(seconds[1:])


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [r["latency_s"] for r in results]
    events = [r["compress"] for r in results if r["compress"] is not None]
    before = sum(e["tokens_before"] for e in events)
    after = sum(e["tokens_after"] for e in events)
    reasons: dict[str, int] = {}
    for e in events:
        key = e["action"] if e["action"] == "compressed" else f"skipped:{e.get('reason')}"
        reasons[key] = reasons.get(key, 0) + 1
    return {
        "requests": len(results),
        "p50_s": round(median(latencies), 3),
        "p95_s": round(percentile(latencies, 95), 3),
        "max_s": round(max(latencies), 3),
        "context_tokens_before": before,
        "context_tokens_sent": after,
        "token_ratio": round(after / before, 3) if before else 1.0,
        "decisions": reasons,
        "per_request": [
            {
                "arrival_s": r["arrival_s"],
                "latency_s": round(r["latency_s"], 3),
                "decision": None
                if r["compress"] is None
                else r["compress"].get("reason", r["compress"]["action"]),
                "compress_ms": None if r["compress"] is None else r["compress"]["ms"],
                "wait_s_estimate": None if r["compress"] is None else r["compress"].get("wait_s"),
            }
            for r in results
        ],
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = sorted({r["rate"] for r in rows})
    configs = list(dict.fromkeys(r["config"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(configs)
    for k, config in enumerate(configs):
        mine = [next(r for r in rows if r["rate"] == rate and r["config"] == config) for rate in rates]
        xs = [i + k * width for i in range(len(rates))]
        axes[0].bar(xs, [r["p95_s"] for r in mine], width, label=f"{config} p95")
        axes[0].scatter(xs, [r["p50_s"] for r in mine], color="black", zorder=3, s=12)
        axes[1].bar(xs, [r["token_ratio"] for r in mine], width, label=config)
    for ax, title in zip(axes, ("latency p95 (bars), p50 (dots), s", "context tokens sent / original")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rates))], [f"{r} req/s" for r in rates])
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="requests per rate and configuration")
    parser.add_argument(
        "--load",
        default="0.5,2",
        help="arrival rates as multiples of the scorer's capacity (1 / its median solo compression time)",
    )
    parser.add_argument(
        "--max-wait-s", type=float, default=4.0, help="the bound of the bounded configuration"
    )
    args = parser.parse_args(argv)
    items = [i for i in _rag_slice(random.Random(11), 2 * args.requests + 2) if i.kind == "hotpotqa"]
    bodies = [{"model": "fake-model", **item.body} for item in items]
    warm, bodies = bodies[0], bodies[1:]
    lean = lean_compress_options()
    bounded = {**lean, "max_wait_s": args.max_wait_s}
    configs: dict[str, list[str]] = {
        "off": ["--profile", "off"],
        "compress, no bound": ["--config", str(spec_file("unbounded", lean))],
        f"compress, max_wait_s {args.max_wait_s:g}": ["--config", str(spec_file("bounded", bounded))],
    }
    port = free_port()
    upstream = [sys.executable, "-m", "bench.proxy_overhead_upstream", "--port", str(port)]
    upstream += ["--prefill-ms", "30", "--interval-ms", "20"]
    rows = []
    with started_process(upstream, f"http://127.0.0.1:{port}/v1/models"):
        with serving(port, configs["compress, no bound"]) as url:
            solo_s = asyncio.run(solo_compression_s(url, [warm, *bodies[:3]]))
        rates = [round(float(f) / solo_s, 3) for f in args.load.split(",")]
        print(f"median solo compression {solo_s:.2f} s: rates {rates} req/s", flush=True)
        for name, flags in configs.items():
            with serving(port, flags) as url:
                for rate in rates:
                    times = arrivals(rate, len(bodies))
                    results = asyncio.run(replay(url, bodies, times, warm))
                    row = {"config": name, "rate": rate, **summarise(results)}
                    print({k: v for k, v in row.items() if k != "per_request"}, flush=True)
                    rows.append(row)
    table = print_table(
        ["configuration", "req/s", "n", "p50 s", "p95 s", "max s", "context tokens sent", "decisions"],
        [
            [
                r["config"],
                r["rate"],
                r["requests"],
                r["p50_s"],
                r["p95_s"],
                r["max_s"],
                r["token_ratio"],
                r["decisions"],
            ]
            for r in rows
        ],
    )
    by = {(r["config"], r["rate"]): r for r in rows}
    with_bound, free = list(configs)[2], list(configs)[1]
    high, low = max(rates), min(rates)
    p95_ratio = round(by[(with_bound, high)]["p95_s"] / by[(free, high)]["p95_s"], 3)
    saved_free = 1 - by[(free, low)]["token_ratio"]
    kept = round((1 - by[(with_bound, low)]["token_ratio"]) / saved_free, 3) if saved_free > 0 else None
    goals = [
        goal(f"p95 latency at {high} req/s: bounded / no bound", "<= 0.5", p95_ratio, lambda v: v <= 0.5),
        goal(
            f"token savings kept by the bound at {low} req/s (vs no bound)",
            ">= 0.8",
            kept,
            lambda v: v is not None and v >= 0.8,
        ),
    ]
    for g in goals:
        print(f"goal {g['name']}: {g['achieved']} (target {g['target']}) {'met' if g['met'] else 'NOT met'}")
    write_results(
        NAME,
        {
            "environment": environment(),
            "command": "python -m bench.compress_overload " + " ".join(argv or sys.argv[1:]),
            "setup": {
                "upstream": "bench.proxy_overhead_upstream, 30 ms prefill, 16 tokens x 20 ms",
                "requests": args.requests,
                "solo_compression_s": round(solo_s, 3),
                "load_multiples_of_capacity": args.load,
                "rates": rates,
                "lean_compress_options": lean,
            },
            "rows": rows,
            "table": table,
            "goals": goals,
        },
    )
    plot(rows, Path(__file__).resolve().parent / "results" / f"{NAME}.png")


if __name__ == "__main__":
    main()
