"""The embedded backend under steady load: does a running batch carry the padding of rows that left?

A batch kept fed by new requests never ends. Before 2026-12-07 its cache only grew: each step
added a column and each newcomer was padded to the batch's width, so every row paid, in attention
and in the cache copy each step makes, for the longest prompt the batch ever held and every step
it ever ran. ``RunningBatch`` now cuts the columns that are padding for every row still running
(``tokenlean/backends/local/running.py``).

One run (``python -m bench.batch_width``): ``LocalBackend`` with the plain engine's options (no
drafting, no prefix reuse: ``--profile off``'s), the e2e workload's GSM8K 8-shot prompts (about
900 tokens, 96 new) followed by its MT-Bench questions (short prompts, 160 new), sent 4 at a time
so the batch never drains. Twice on one backend: first ``uncut``, with the cut switched off
(the old behaviour) and ``cut`` as shipped. Per run: wall time, completion tokens per second,
latency p50 of the MT-Bench requests, the cache width at every step (mean, max), the share of
the cache cells the steps ran that were padding, and whether every greedy answer is the same in
both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from bench.common import RESULTS, environment, goal, median, print_table, write_results
from bench.e2e_workload import build_workload
from tokenlean.backends.local import LocalBackend
from tokenlean.backends.local.running import RunningBatch
from tokenlean.wire import parse_request

NAME = "batch_width"
CONCURRENCY = 4


def workload(per_slice: int) -> list[tuple[str, dict[str, Any]]]:
    """GSM8K's long prompts first, then the short list questions that decode after them."""
    items = build_workload(per_slice)
    chosen = [i for i in items if i.slice == "gsm8k"][: per_slice // 4] + [
        i for i in items if i.slice == "list"
    ]
    return [(item.slice, {"model": "local", **item.body}) for item in chosen]


@contextlib.contextmanager
def logged_widths() -> Iterator[list[tuple[int, int, int]]]:
    """At every step of a running batch: its cache width, its rows, and the cells rows attend to."""
    steps: list[tuple[int, int, int]] = []
    advance = RunningBatch.advance

    def logged(batch: RunningBatch, forward: Any) -> Any:
        rows, width = batch.mask.shape
        steps.append((int(width), int(rows), int(batch.mask.sum())))
        return advance(batch, forward)

    RunningBatch.advance = logged  # type: ignore[method-assign]
    try:
        yield steps
    finally:
        RunningBatch.advance = advance  # type: ignore[method-assign]


async def replay(backend: LocalBackend, requests: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(body: dict[str, Any]) -> tuple[float, str, int]:
        async with gate:
            started = time.perf_counter()
            response = await backend.complete(parse_request(body))
            elapsed = time.perf_counter() - started
        return elapsed, response.choices[0].text, response.usage.completion_tokens

    started = time.perf_counter()
    with logged_widths() as widths:
        results = await asyncio.gather(*(one(body) for _, body in requests))
    wall = time.perf_counter() - started
    list_latency = [r[0] for (kind, _), r in zip(requests, results, strict=True) if kind == "list"]
    tokens = sum(r[2] for r in results)
    return {
        "wall_s": round(wall, 2),
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 2),
        "list_p50_s": round(median(list_latency), 2),
        "steps": len(widths),
        "width_mean": round(sum(w for w, _, _ in widths) / len(widths), 1),
        "width_max": max(w for w, _, _ in widths),
        # of all cache cells the steps ran (rows x width), the share that was left padding
        "padding_share": round(1 - sum(c for _, _, c in widths) / sum(w * r for w, r, _ in widths), 3),
        "answers": [r[1] for r in results],
        "load_before": os.getloadavg(),
    }


def run(backend: LocalBackend, requests: list[tuple[str, dict[str, Any]]], cut: bool) -> dict[str, Any]:
    original = RunningBatch._drop_shared_padding
    if not cut:
        RunningBatch._drop_shared_padding = lambda self: None  # type: ignore[method-assign]
    try:
        return asyncio.run(replay(backend, requests))
    finally:
        RunningBatch._drop_shared_padding = original  # type: ignore[method-assign]


def plot(runs: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    names = list(runs)
    axes[0].bar(names, [runs[n]["tokens_per_s"] for n in names], color=["#999999", "#2a7ab9"])
    axes[0].set_ylabel("completion tokens / s")
    axes[1].bar(names, [runs[n]["width_mean"] for n in names], color=["#999999", "#2a7ab9"])
    axes[1].set_ylabel("cache width per step (mean)")
    fig.suptitle(f"embedded SmolLM2, {CONCURRENCY} concurrent, batch kept fed")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-slice", type=int, default=24)
    args = parser.parse_args(argv)
    requests = workload(args.per_slice)
    backend = LocalBackend(draft="off", prefix_cache_entries=0)
    asyncio.run(backend.complete(parse_request(requests[0][1])))  # warm-up: first passes are slower
    runs = {"uncut": run(backend, requests, cut=False), "cut": run(backend, requests, cut=True)}
    same = sum(a == b for a, b in zip(runs["uncut"]["answers"], runs["cut"]["answers"], strict=True))
    table = print_table(
        ["batch", "wall s", "tokens/s", "list p50 s", "width mean", "width max", "padding share"],
        [
            [
                n,
                r["wall_s"],
                r["tokens_per_s"],
                r["list_p50_s"],
                r["width_mean"],
                r["width_max"],
                r["padding_share"],
            ]
            for n, r in runs.items()
        ],
    )
    speedup = round(runs["cut"]["tokens_per_s"] / runs["uncut"]["tokens_per_s"], 3)
    goals = [
        goal(
            "greedy answers identical, cut vs uncut",
            f"{len(requests)}/{len(requests)}",
            same,
            same == len(requests),
        ),
        goal("completion tokens per second, cut / uncut", ">= 1.2", speedup, speedup >= 1.2),
    ]
    write_results(
        NAME,
        {
            "environment": environment(),
            "command": "python -m bench.batch_width " + " ".join(argv or []),
            "requests": len(requests),
            "concurrency": CONCURRENCY,
            "runs": {n: {k: v for k, v in r.items() if k != "answers"} for n, r in runs.items()},
            "answers_identical": same,
            "table": table,
            "goals": goals,
        },
    )
    plot(runs)
    for row in goals:
        print(row)
    asyncio.run(backend.aclose())


if __name__ == "__main__":
    main()
