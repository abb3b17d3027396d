"""Spine figures: cold start of ``tokenlean serve``, and first-token latency and decode speed
through the proxy (HTTP, streaming) against calling LocalBackend directly, same model, one run.

    python -m bench.spine [--requests 6] [--max-tokens 48]
    python -m bench.spine --detokenise     # decode tokens/s at 32/256/1024 tokens, before vs after

``--detokenise`` measures what incremental detokenisation bought: decode speed of LocalBackend at
32, 256 and 1,024 output tokens with the current linear-time detokeniser against the previous
one (re-decoding the whole sequence at every step, reproduced here by patching
``RowDecoder._text`` for the "before" rows), interleaved in one run. To make every request
produce exactly that many tokens the backend's end-of-sequence ids are cleared (bench only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx

from bench.common import RESULTS, environment, goal, median, print_table, write_results

PROMPTS = [
    "Explain why the sky is blue.",
    "Give three tips for learning a language.",
    "Describe a cat to someone who has never seen one.",
    "What makes a good cup of coffee?",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> tuple[subprocess.Popen[str], float]:
    """Start ``tokenlean serve`` and return it with the seconds until /health answered."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenlean.cli", "serve", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, time.perf_counter() - started
        except httpx.TransportError:
            time.sleep(0.2)
        if process.poll() is not None:
            raise RuntimeError("tokenlean serve exited during startup")


async def through_proxy(port: int, model: str, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """(first-token s, total s, completion tokens) for one streamed request over HTTP."""
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started, first, tokens = time.perf_counter(), None, 0
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=300) as client, client.stream("POST", url, json=payload) as response:
        async for line in response.aiter_lines():
            if first is None and '"content"' in line:
                first = time.perf_counter() - started
            if '"usage"' in line and '"completion_tokens"' in line:
                import json

                tokens = json.loads(line[len("data: ") :])["usage"]["completion_tokens"]
    return first or float("nan"), time.perf_counter() - started, tokens


async def direct(backend: Any, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """(first-token s, total s, completion tokens) for one streamed call to LocalBackend."""
    from tokenlean.middleware.types import Message, Request

    request = Request(messages=(Message("user", prompt),), max_tokens=max_tokens, temperature=0, stream=True)
    started, first, tokens = time.perf_counter(), None, 0
    response = await backend.complete(request)
    async for chunk in response.stream:
        if first is None and chunk.text:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return first or float("nan"), time.perf_counter() - started, tokens


def _rate(first: float, total: float, tokens: int) -> float:
    return (tokens - 1) / (total - first) if tokens > 1 and total > first else float("nan")


async def measure(port: int, requests: int, max_tokens: int) -> dict[str, list[float]]:
    from tokenlean.backends.local import LocalBackend

    backend = LocalBackend()
    model = backend.models()[0]
    rows: dict[str, list[float]] = {k: [] for k in ("direct_ttft", "direct_tps", "proxy_ttft", "proxy_tps")}
    await direct(backend, "warm up", 4)
    await through_proxy(port, model, "warm up", 4)
    for i in range(requests):  # interleaved, so machine noise hits both sides alike
        prompt = PROMPTS[i % len(PROMPTS)]
        first, total, tokens = await direct(backend, prompt, max_tokens)
        rows["direct_ttft"].append(first * 1000)
        rows["direct_tps"].append(_rate(first, total, tokens))
        first, total, tokens = await through_proxy(port, model, prompt, max_tokens)
        rows["proxy_ttft"].append(first * 1000)
        rows["proxy_tps"].append(_rate(first, total, tokens))
    await backend.aclose()
    return rows


DETOK_LENGTHS = (32, 256, 1024)


def _full_redecode(row: Any) -> str:
    """The detokeniser before incremental decoding: the whole sequence, every step."""
    return str(row.tokenizer.decode(row.token_ids, skip_special_tokens=True))


async def measure_detokenise(repeats: int) -> dict[str, dict[int, list[float]]]:
    """Decode tokens/s per output length, "before" (full re-decode) and "after" (incremental)."""
    from tokenlean.backends.local import LocalBackend
    from tokenlean.backends.local.decoding import RowDecoder

    backend = LocalBackend(prefix_cache_entries=0, draft="off")
    backend.eos_ids = frozenset()  # every request runs to max_tokens
    incremental = RowDecoder._text
    rows: dict[str, dict[int, list[float]]] = {"before": {}, "after": {}}
    await direct(backend, "warm up", 4)
    for _ in range(repeats):
        for length in DETOK_LENGTHS:
            for variant in ("before", "after"):  # interleaved: machine noise hits both alike
                RowDecoder._text = _full_redecode if variant == "before" else incremental  # type: ignore[method-assign]
                first, total, tokens = await direct(
                    backend, "Tell me a long story about a lighthouse.", length
                )
                rows[variant].setdefault(length, []).append(_rate(first, total, tokens))
    RowDecoder._text = incremental  # type: ignore[method-assign]
    await backend.aclose()
    return rows


def detokenise_main(repeats: int) -> None:
    """Run ``measure_detokenise`` and merge its figures and goals into spine.json."""
    import json

    rows = asyncio.run(measure_detokenise(repeats))
    medians = {v: {n: median(rows[v][n]) for n in DETOK_LENGTHS} for v in rows}
    print_table(
        ["output tokens", "before: full re-decode (tok/s)", "after: incremental (tok/s)", "after / before"],
        [
            [n, medians["before"][n], medians["after"][n], medians["after"][n] / medians["before"][n]]
            for n in DETOK_LENGTHS
        ],
    )
    path = RESULTS / "spine.json"
    results = json.loads(path.read_text()) if path.exists() else {"goals": []}
    flat = medians["after"][1024] / medians["after"][32]
    results["detokenise"] = {"environment": environment(), "samples": rows, "medians": medians}
    results["goals"] = [g for g in results.get("goals", []) if not g["name"].startswith("detokenise")] + [
        goal("detokenise: decode speed at 1,024 tokens vs 32 (linear: flat)", ">= 0.9", flat, flat >= 0.9),
        goal(
            "detokenise: decode speed at 1,024 tokens, incremental vs full re-decode",
            ">= 1.0",
            medians["after"][1024] / medians["before"][1024],
            medians["after"][1024] >= medians["before"][1024],
        ),
    ]
    write_results("spine", results)


def plot(rows: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].boxplot([rows["direct_ttft"], rows["proxy_ttft"]], tick_labels=["direct", "proxy"])
    axes[0].set_ylabel("first token (ms)")
    axes[1].boxplot([rows["direct_tps"], rows["proxy_tps"]], tick_labels=["direct", "proxy"])
    axes[1].set_ylabel("decode tokens/s")
    fig.suptitle("LocalBackend direct vs through tokenlean serve (SmolLM2-135M, CPU)")
    fig.tight_layout()
    fig.savefig(RESULTS / "spine.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--detokenise", action="store_true", help="only the detokenisation before/after rows")
    parser.add_argument("--repeats", type=int, default=2, help="--detokenise: runs per length and variant")
    args = parser.parse_args()
    if args.detokenise:
        detokenise_main(args.repeats)
        return
    port = _free_port()
    process, cold_start = start_server(port)
    try:
        rows = asyncio.run(measure(port, args.requests, args.max_tokens))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    summary = {k: median(v) for k, v in rows.items()}
    summary["cold_start_s"] = cold_start
    print_table(
        ["path", "first token p50 (ms)", "decode tokens/s p50"],
        [
            ["LocalBackend direct", summary["direct_ttft"], summary["direct_tps"]],
            ["through tokenlean serve (HTTP SSE)", summary["proxy_ttft"], summary["proxy_tps"]],
        ],
    )
    print(f"cold start of tokenlean serve (model already converted): {cold_start:.1f} s")
    write_results(
        "spine",
        {"environment": environment(), "args": vars(args), "samples": rows, "medians": summary, "goals": []},
    )
    plot(rows)


if __name__ == "__main__":
    main()
