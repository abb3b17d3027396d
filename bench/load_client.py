"""The load generator of ``bench/load.py``: N streaming chat clients for a fixed time, one process.

It runs in its own process (started by ``bench/load.py``), so its event loop and CPU time are
not the proxy's: the proxy is a real ``tokenlean serve`` process and this is its client, as an
application would be. Each of ``--concurrency`` workers (started spread over ``--ramp``
seconds) sends streamed chat completions back to back until ``--duration`` seconds have passed
(a request started before the deadline runs to its end, so the run is bounded by duration + one
request). Every request is checked: HTTP 200, an SSE stream with no ``error`` event and a final
``data: [DONE]``; anything else is an error, counted by type. Writes one JSON summary to ``--out``:

    python -m bench.load_client --url http://127.0.0.1:8000/v1 --concurrency 16 --duration 60 \
        --model fake-model --max-tokens 32 --out /tmp/level.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import median, percentile

TOPICS = ("rivers", "owls", "copper", "tea", "bridges", "comets", "maps", "bees")


class StreamError(Exception):
    """The answer was not a complete, error-free SSE stream (the message says how)."""


@dataclass
class Tally:
    """What the workers saw: per-request timings of good requests, errors by type, per second."""

    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    per_second: Counter[int] = field(default_factory=Counter)

    def error(self, exc: BaseException) -> None:
        """Count one failed request under its exception type; keep the first message of each."""
        kind = type(exc).__name__
        self.errors[kind] += 1
        self.examples.setdefault(kind, str(exc)[:300])


def body_for(args: argparse.Namespace, worker: int, k: int) -> dict[str, Any]:
    """One streamed chat request; the prompt is unique, so no server can answer from a cache."""
    prompt = f"[{worker}-{k}-{time.perf_counter_ns()}] Write one sentence about {TOPICS[(worker + k) % 8]}."
    body: dict[str, Any] = {
        "model": args.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": args.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if args.vllm:  # fixed-length answers: every request decodes max_tokens tokens
        body.update(temperature=0, ignore_eos=True)
    return body


async def stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[float, float, int]:
    """One streamed request: (seconds to the first text, seconds to the end, text chunks)."""
    started = time.perf_counter()
    first, tokens, done = None, 0, False
    async with client.stream("POST", url + "/chat/completions", json=body) as answer:
        if answer.status_code != 200:
            raise StreamError(f"HTTP {answer.status_code}: {(await answer.aread())[:200]!r}")
        async for line in answer.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: {"):
                data = json.loads(line[6:])
                if "error" in data:
                    raise StreamError(f"error event: {json.dumps(data['error'])[:200]}")
                if any((c.get("delta") or {}).get("content") for c in data.get("choices") or ()):
                    tokens += 1
                    first = first if first is not None else time.perf_counter() - started
    if not done:
        raise StreamError("stream ended without data: [DONE]")
    if not tokens:
        raise StreamError("stream carried no text")
    return first or 0.0, time.perf_counter() - started, tokens


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """All workers until the deadline; the summary the parent process reads.

    Each worker has its own client with one connection, as N separate applications would. One
    shared client would put every stream in one httpcore pool, whose bookkeeping grows with the
    square of its connections and whose idle connections are handed to several waiting requests
    at once (encode/httpcore#822): the load generator would then measure itself.
    """
    tally = Tally()
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(timeout=timeout, limits=limits) for _ in range(args.concurrency)]
    print("go", flush=True)  # the parent starts watching the proxy now
    started = time.perf_counter()
    deadline = started + args.duration

    async def worker(index: int) -> None:
        k = 0
        await asyncio.sleep(args.ramp * index / args.concurrency)  # arrivals spread, not one burst
        async with clients[index] as client:
            while time.perf_counter() < deadline:
                try:
                    ttft, total, tokens = await stream_once(client, args.url, body_for(args, index, k))
                except (httpx.HTTPError, StreamError, ValueError) as exc:
                    tally.error(exc)
                else:
                    tally.ttft.append(ttft * 1000)
                    tally.total.append(total * 1000)
                    tally.tokens += tokens
                    tally.per_second[int(time.perf_counter() - started)] += 1
                k += 1

    await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
    return summary(tally, time.perf_counter() - started, args)


def summary(tally: Tally, wall: float, args: argparse.Namespace) -> dict[str, Any]:
    """Latency percentiles (ms), throughput and errors of one run."""
    done = len(tally.ttft)
    return {
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "wall_s": round(wall, 2),
        "completed": done,
        "errors": sum(tally.errors.values()),
        "error_types": dict(tally.errors),
        "error_examples": tally.examples,
        "ttft_p50_ms": median(tally.ttft),
        "ttft_p99_ms": percentile(tally.ttft, 99),
        "total_p50_ms": median(tally.total),
        "total_p99_ms": percentile(tally.total, 99),
        "total_max_ms": max(tally.total, default=float("nan")),
        "requests_per_s": done / wall,
        "tokens_per_s": tally.tokens / wall,
        "completed_per_second": [tally.per_second.get(s, 0) for s in range(int(wall) + 1)],
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, run the clients (on uvloop where installed), write the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the proxy's /v1 URL")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True, help="seconds to keep sending")
    parser.add_argument("--model", required=True)
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--vllm", action="store_true", help="add temperature=0 and ignore_eos")
    parser.add_argument("--timeout", type=float, default=180.0, help="per-request read timeout (s)")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which workers start")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        from uvloop import run as runner  # the loop uvicorn gives the proxy, where installed
    except ImportError:
        from asyncio import run as runner  # type: ignore[assignment]
    args.out.write_text(json.dumps(runner(run(args)), default=str))


if __name__ == "__main__":
    main()
