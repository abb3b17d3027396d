"""Worked examples at the start of a prompt: compressed once without the question, against per request.

The compress stage compresses leading worked examples by perplexity alone and reuses the text
(``tokenlean/compressors/examples.py``). One run (``python -m bench.compress_examples``) measures
the three things that decision rests on:

1. **Which blocks count as examples** (the label test): every HotpotQA distractor context of the
   public file (documents: should never count) and the two GSM8K 8-shot chain-of-thought prompts
   (examples: should).
2. **Why documents are left alone**: answer survival at 2x on the fixed HotpotQA subset of
   ``bench/compression.py`` (30 contexts), compressed with the question and without it.
3. **The saving on a template**: the 8-shot GSM8K prompt (``prompt_original.txt``) with
   ``--requests`` test questions, one request at a time through the stage as the lean profile
   configures it (rate 0.5, 800-token floor), with reuse on and off (off: each request compressed
   with its own question, as documents are). Per request: the stage's own time (its event),
   tokens before and after, whether the text before the question is byte-identical to the
   previous request's (what an upstream prefix cache needs), and the share of the examples'
   solution numbers that survive (``bench.compression.solution_numbers``: a proxy for how much of
   the worked reasoning is left; a 135M reader cannot score GSM8K).

The backend is ``FakeBackend``: only the stage is timed here; bench/e2e.py measures the same
stage in front of the embedded model and vLLM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

from bench.common import DATA, environment, goal, median, print_table, write_results
from bench.compress_overload import lean_compress_options
from bench.compression import _numbers, contains, documents, hotpot_subset, solution_numbers
from tokenlean.backends.fake import FakeBackend
from tokenlean.compressors.examples import leading_examples
from tokenlean.compressors.lingua import LinguaCompressor
from tokenlean.compressors.stage import CompressionStage
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.types import Message, Request

NAME = "compress_examples"
SHOTS = DATA / "gsm8k" / "prompt_original.txt"


def label_test() -> dict[str, Any]:
    """How many documents and how many example prompts the label test takes for examples."""
    contexts = [
        documents(s)
        for s in json.loads((DATA / "multidoc_qa/hipporag_v1_samples/hotpotqa_train.json").read_text())
    ]
    prompts = [p.read_text().strip().split("\n\n") for p in sorted((DATA / "gsm8k").glob("prompt_*.txt"))]
    return {
        "hotpot_contexts": len(contexts),
        "hotpot_taken_for_examples": sum(leading_examples(c) > 0 for c in contexts),
        "gsm8k_prompts": len(prompts),
        "gsm8k_taken_for_examples": sum(leading_examples(p) == len(p) for p in prompts),
    }


def survival(samples: list[dict[str, Any]], rate: float) -> dict[str, float]:
    """Answer survival with and without the question, on the same contexts at ``rate``."""
    compressor = LinguaCompressor()
    kept = Counter[str]()
    for sample in samples:
        blocks, question = documents(sample), sample["question"]
        with_q = compressor.compress(blocks, question=question, rate=rate, mode="question")
        without = compressor.compress(blocks, rate=rate, mode="plain")
        kept["question"] += contains(sample["answer"], "\n\n".join(with_q.blocks))
        kept["plain"] += contains(sample["answer"], "\n\n".join(without.blocks))
    return {mode: kept[mode] / len(samples) for mode in ("question", "plain")}


def gsm8k_requests(count: int) -> list[Request]:
    """The 8-shot prompt followed by ``count`` fixed-seed GSM8K test questions."""
    shots = SHOTS.read_text().strip()
    rows = [json.loads(line) for line in (DATA / "gsm8k/test.jsonl").read_text().splitlines()]
    return [
        Request(
            messages=(Message("user", f"{shots}\n\nQuestion: {row['question']}\nLet's think step by step"),),
            model="fake",
        )
        for row in random.Random(0).sample(rows, count)
    ]


async def template_run(requests: list[Request], reuse: bool) -> list[dict[str, Any]]:
    """Each request through the lean compress stage, one at a time; per-request figures."""
    stage = CompressionStage(**lean_compress_options(), reuse_examples=reuse)
    backend = FakeBackend()
    pipeline = Pipeline(backend, [stage], policies={"compress": "raise"})
    wanted = solution_numbers(SHOTS.read_text().strip())
    rows, previous = [], None
    for request in requests:
        started = time.perf_counter()
        response = await pipeline(request)
        wall = time.perf_counter() - started
        event = next(e for e in response.events if e.stage == "compress" and e.action != "timing")
        head = backend.requests[-1].messages[0].content.rsplit("\n\nQuestion:", 1)[0]
        kept = Counter(_numbers(head))
        rows.append(
            {
                "stage_ms": event.ms,
                "wall_s": round(wall, 3),
                "tokens_before": event.data["tokens_before"],
                "tokens_after": event.data["tokens_after"],
                "examples_memo": event.data.get("examples_memo"),
                "same_prefix_as_previous": head == previous,
                "numbers_kept": sum(min(n, kept[x]) for x, n in wanted.items()) / sum(wanted.values()),
            }
        )
        previous = head
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over the requests after the first (the first one pays the scorer either way)."""
    later = rows[1:]
    return {
        "first_stage_ms": rows[0]["stage_ms"],
        "later_stage_ms_p50": median([r["stage_ms"] for r in later]),
        "tokens_ratio": sum(r["tokens_after"] for r in rows) / sum(r["tokens_before"] for r in rows),
        "later_same_prefix": sum(r["same_prefix_as_previous"] for r in later) / len(later),
        "numbers_kept_p50": median([r["numbers_kept"] for r in later]),
    }


def plot(template: dict[str, list[dict[str, Any]]], kept: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.common import RESULTS

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in template.items():
        a.plot(range(1, len(rows) + 1), [r["stage_ms"] / 1000 for r in rows], marker="o", label=name)
    a.set_xlabel("request (same 8-shot prompt, new question)")
    a.set_ylabel("compress stage time (s)")
    a.set_title("GSM8K template, one request at a time")
    a.legend()
    b.bar(["with the question", "without"], [kept["question"], kept["plain"]], color=["#4c72b0", "#dd8452"])
    b.set_ylim(0, 1)
    b.set_title("HotpotQA answer survival at 2x (30 contexts)")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{NAME}.png", dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--contexts", type=int, default=30)
    args = parser.parse_args(argv)
    labels = label_test()
    kept = survival(hotpot_subset(args.contexts), 0.5)
    requests = gsm8k_requests(args.requests)
    template = {
        "reuse": asyncio.run(template_run(requests, reuse=True)),
        "per request": asyncio.run(template_run(requests, reuse=False)),
    }
    sums = {name: summary(rows) for name, rows in template.items()}
    reuse, each = sums["reuse"], sums["per request"]
    table = print_table(
        [
            "compress stage",
            "first request ms",
            "later requests ms p50",
            "tokens after/before",
            "later prefixes identical",
            "solution numbers kept p50",
        ],
        [
            [
                n,
                s["first_stage_ms"],
                s["later_stage_ms_p50"],
                s["tokens_ratio"],
                s["later_same_prefix"],
                s["numbers_kept_p50"],
            ]
            for n, s in sums.items()
        ],
    )
    goals = [
        goal(
            "HotpotQA contexts taken for examples", "0", labels["hotpot_taken_for_examples"], lambda v: v == 0
        ),
        goal(
            "GSM8K 8-shot prompts taken for examples",
            f"{labels['gsm8k_prompts']}",
            labels["gsm8k_taken_for_examples"],
            lambda v: v == labels["gsm8k_prompts"],
        ),
        goal(
            "later requests' stage time, reuse / per request",
            "<= 0.1",
            round(reuse["later_stage_ms_p50"] / each["later_stage_ms_p50"], 4),
            lambda v: v <= 0.1,
        ),
        goal(
            "later requests sending the same compressed examples",
            "1.0",
            reuse["later_same_prefix"],
            lambda v: v == 1.0,
        ),
        goal(
            "solution numbers kept p50, reuse >= per request",
            f">= {each['numbers_kept_p50']:.3f}",
            round(reuse["numbers_kept_p50"], 3),
            lambda v: v >= round(each["numbers_kept_p50"], 3),
        ),
        goal(
            "tokens sent, reuse / per request",
            "<= 1.05",
            round(reuse["tokens_ratio"] / each["tokens_ratio"], 3),
            lambda v: v <= 1.05,
        ),
    ]
    write_results(
        NAME,
        {
            "environment": environment(),
            "command": "python -m bench.compress_examples"
            + (f" --requests {args.requests}" if args.requests != 12 else ""),
            "label_test": labels,
            "hotpot_survival_at_2x": kept,
            "template": template,
            "summary": sums,
            "table": table,
            "goals": goals,
        },
    )
    plot(template, kept)
    for row in goals:
        print(row)


if __name__ == "__main__":
    main()
