"""MiniLM passes per chat request in the lean pipeline, with and without the embedder's recent-text memo.

For one chat request the lean profile embeds the same text up to three times: the cache its
query, the demonstration gate and the SoT router the last user turn (with pools configured, as in
bench/e2e.py). ``SentenceTransformerEmbedder`` keeps the last ``RECENT_TEXTS`` single-text vectors
(tokenlean/embeddings.py), so the later stages reuse the first one's pass.

One run (``python -m bench.stage_embeddings``): the lean profile plus the e2e workload's three
pools, in front of ``FakeBackend`` (only the stages are timed), 48 ShareGPT first turns of the e2e
chat slice sent one at a time, once with the memo off (``RECENT_TEXTS = 0``) and once on, each on
its own freshly built pipeline. Per request: the model's encode calls (counted at
``_model.encode``) and the pipeline's own time (request in to response out).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from bench.common import environment, goal, median, print_table, write_results
from bench.e2e import WORK, _spec
from bench.e2e_workload import SEED, _chat_slice
from tokenlean import embeddings
from tokenlean.backends.fake import FakeBackend
from tokenlean.embeddings import shared_embedder
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.wire import parse_request

NAME = "stage_embeddings"


def chat_bodies(count: int) -> list[dict[str, Any]]:
    """The e2e chat slice's ShareGPT first turns (no repeats or pairs: every text is new)."""
    items = _chat_slice(random.Random(SEED), count)
    return [item.body for item in items if item.kind == "sharegpt"][:count]


async def run(bodies: list[dict[str, Any]], recent: int, spec: Path) -> list[dict[str, float]]:
    """Each body through a fresh lean pipeline with the memo at ``recent`` texts."""
    embeddings.RECENT_TEXTS = recent
    embedder = shared_embedder()
    embedder._recent.clear()
    encode, calls = embedder._model.encode, []

    def counted(texts: list[str], **kwargs: Any) -> Any:
        calls.append(len(texts))
        return encode(texts, **kwargs)

    embedder._model.encode = counted
    pipeline = PipelineSpec.from_file(spec).build(FakeBackend(lambda r: "An answer."))
    rows = []
    try:
        for body in bodies:
            request = parse_request({**body, "model": "fake"})
            before, started = len(calls), time.perf_counter()
            await pipeline(request)
            rows.append({"encode_calls": len(calls) - before, "ms": (time.perf_counter() - started) * 1000})
    finally:
        embedder._model.encode = encode
    return rows


def plot(runs: dict[str, list[dict[str, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.common import RESULTS

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.boxplot([[r["ms"] for r in rows] for rows in runs.values()], tick_labels=list(runs))
    ax.set_ylabel("lean pipeline time per chat request (ms)")
    ax.set_title("48 ShareGPT first turns, FakeBackend")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)


def main() -> None:
    default = embeddings.RECENT_TEXTS
    bodies = chat_bodies(48)
    spec = _spec(WORK / "lean.yaml")
    warm = asyncio.run(run(bodies[:2], 0, spec))  # loads MiniLM, the router and the pools once
    runs = {
        "memo off": asyncio.run(run(bodies, 0, spec)),
        "memo on": asyncio.run(run(bodies, default, spec)),
    }
    summary = {
        name: {
            "encode_calls_per_request": sum(r["encode_calls"] for r in rows) / len(rows),
            "ms_p50": median([r["ms"] for r in rows]),
        }
        for name, rows in runs.items()
    }
    table = print_table(
        ["memo", "MiniLM passes per request", "pipeline ms p50"],
        [[name, s["encode_calls_per_request"], s["ms_p50"]] for name, s in summary.items()],
    )
    off, on = summary["memo off"], summary["memo on"]
    goals = [
        goal(
            "MiniLM passes of the busiest chat request with the memo (a request needing no vector runs none)",
            "<= 1",
            max(r["encode_calls"] for r in runs["memo on"]),
            lambda v: v <= 1,
        ),
        goal(
            "pipeline time per chat request, memo on / off (p50)",
            "<= 0.7",
            round(on["ms_p50"] / off["ms_p50"], 3),
            lambda v: v <= 0.7,
        ),
    ]
    write_results(
        NAME,
        {
            "environment": environment(),
            "command": "python -m bench.stage_embeddings",
            "requests": len(bodies),
            "warm_up_requests": len(warm),
            "summary": summary,
            "runs": runs,
            "table": table,
            "goals": goals,
        },
    )
    plot(runs)
    for row in goals:
        print(row)


if __name__ == "__main__":
    main()
