"""Skeleton-of-Thought on Vicuna-80: latency, first-token latency, answer length and a quality
proxy for normal generation vs SoT on the same embedded model in the same run, plus the router
on labelled data it was not tuned on (``bench/sot_router.py``: train on LIMA, test on Vicuna-80,
and the reverse).

    python -m bench.sot                 # default: fixed-seed 40 % of Vicuna-80 (32 questions), by category
    python -m bench.sot --full          # all 80 questions (about 2.5 times as long)
    python -m bench.sot --max-tokens 160 320 --fraction 0.4 --seed 0
    python -m bench.sot --router-only   # the router alone (a few minutes): merged into sot.json, the
                                        # last full run's speed rows kept and re-cut for its selection

Every chosen question is answered twice, streamed, through one Pipeline([SkeletonStage]) around
LocalBackend, at each ``max_tokens`` given (default 160 and 320: SoT's gain depends on answer
length): once with ``{"sot": "off"}`` (normal generation) and once with ``{"sot": "on"}``
(SoT forced, so every category is measured); which mode goes first alternates per question, to
spread the drift of a shared machine over both. The router-selected subset is the chosen
questions the router (``mode: auto``) would send to SoT. Quality proxy: MiniLM cosine similarity
of each answer to GPT-3.5's answer to the same question (FastChat's legacy answers). Both modes
share ``max_tokens``, which caps normal generation's length and SoT's whole answer.
The backend's speculative drafting is off (``LocalBackend(draft="off")``): its retrieval drafter
reuses earlier outputs, so whichever mode ran second on a question would copy the first's answer
at drafting speed; prefix reuse stays on (it serves both modes alike).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import defaultdict
from typing import Any

from bench import sot_router
from bench.common import DATA, RESULTS, environment, median, print_table, write_results

SOT = DATA / "sot_questions"
QUESTIONS = SOT / "fastchat" / "vicuna80_question_legacy.jsonl"
REFERENCES = SOT / "fastchat" / "legacy_answers" / "answer_gpt35.jsonl"
LABELS = SOT / "sot" / "vicuna" / "router.csv"


def load_questions() -> list[dict[str, Any]]:
    """Vicuna-80 with its category, GPT-3.5 reference answer and SoT router label."""
    from tokenlean.reasoning.sot import read_router_csv

    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    references = {
        row["question_id"]: row["text"] for row in map(json.loads, REFERENCES.read_text().splitlines())
    }
    texts, labels = read_router_csv(LABELS)
    for question, text, label in zip(questions, texts, labels, strict=True):
        if text.strip() != question["text"].strip():
            raise ValueError(f"router.csv and the questions disagree at {question['question_id']}")
        question.update(reference=references[question["question_id"]], label=label)
    return questions


def pick(questions: list[dict[str, Any]], fraction: float, seed: int) -> list[dict[str, Any]]:
    """A fixed-seed sample, ``fraction`` of every category (at least one), in question order."""
    rng = random.Random(seed)
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for question in questions:
        by_category[question["category"]].append(question)
    chosen: list[dict[str, Any]] = []
    for items in by_category.values():
        chosen += rng.sample(items, max(1, round(len(items) * fraction)))
    return sorted(chosen, key=lambda q: q["question_id"])


async def measure(pipeline: Any, text: str, mode: str, max_tokens: int) -> dict[str, Any]:
    """One streamed request: end-to-end and first-token seconds, the answer, tokens, SoT's event."""
    from tokenlean.middleware.types import Message, Request

    request = Request(
        messages=(Message("user", text),),
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        options={"sot": mode},
    )
    started = time.perf_counter()
    response = await pipeline(request)
    first: float | None = None
    pieces, events, usage = [], list(response.events), None
    async for chunk in response.stream:
        if chunk.text and first is None:
            first = time.perf_counter() - started
        pieces.append(chunk.text)
        events += chunk.events
        usage = chunk.usage or usage
    total = time.perf_counter() - started
    sot = [e for e in events if e.stage == "sot" and e.action not in {"timing", "skeleton"}]
    return {
        "e2e_s": round(total, 3),
        "ttft_s": round(first if first is not None else total, 3),
        "answer": "".join(pieces),
        "generated_tokens": usage.completion_tokens if usage else None,
        "sot_action": sot[-1].action if sot else None,
        "sot": {k: v for k, v in dict(sot[-1].data).items() if k != "titles"} if sot else {},
    }


async def run(questions: list[dict[str, Any]], budgets: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Both modes for every question at every ``max_tokens``, alternating which mode goes first."""
    from tokenlean.backends.local import LocalBackend
    from tokenlean.middleware.pipeline import Pipeline
    from tokenlean.reasoning.sot import SkeletonStage

    # speculative drafting off: its retrieval drafter reuses earlier outputs, so the second mode on
    # a question would draft from the first mode's answer (and batched rows never draft anyway)
    backend = LocalBackend(draft="off")
    pipeline = Pipeline(backend, [SkeletonStage(mode="auto")], policies={"sot": "raise"})
    await measure(pipeline, "Say hello.", "off", 8)  # warm-up: first batch, kernels, tokenizer
    rows: dict[int, list[dict[str, Any]]] = {budget: [] for budget in budgets}
    for position, question in enumerate(questions):
        for budget in budgets:
            order = ("off", "on") if position % 2 == 0 else ("on", "off")
            results = {}
            for mode in order:
                batches = backend.batches_run
                results[mode] = await measure(pipeline, question["text"], mode, budget)
                await asyncio.sleep(0.05)
                results[mode]["batches"] = backend.batches_run - batches
            keys = ("question_id", "category", "label")
            rows[budget].append(
                {**{k: question[k] for k in keys}, "normal": results["off"], "sot": results["on"]}
            )
            n, s = results["off"], results["on"]
            print(
                f"[{position + 1}/{len(questions)}] max_tokens={budget} {question['category']:<14} "
                f"normal {n['e2e_s']:5.1f}s  sot {s['e2e_s']:5.1f}s ({s['sot_action']}, "
                f"{s['sot'].get('points', '-')} points)",
                flush=True,
            )
    await backend.aclose()
    return rows


_STOP_WORDS = (
    "about also because been being between both could does each from have here into just like make many "
    "more most much must only other over same should some such than that their them then there these they "
    "this those through very what when where which while will with would your you're it's can't don't"
)
_STOP = frozenset(_STOP_WORDS.split())


def key_terms(text: str) -> set[str]:
    """Content words of four letters or more: a crude stand-in for a reference's key terms."""
    import re

    return {word for word in re.findall(r"[a-z][a-z'-]{3,}", text.lower()) if word not in _STOP}


def add_quality_and_length(rows: list[dict[str, Any]], questions: list[dict[str, Any]]) -> None:
    """MiniLM cosine to GPT-3.5's answer, recall of its key terms, the answer's length in tokens."""
    from tokenlean.embeddings import shared_embedder
    from tokenlean.tokens import shared_token_counter

    references = {q["question_id"]: q["reference"] for q in questions}
    texts = {q["question_id"]: q["text"] for q in questions}
    embedder, counter = shared_embedder(), shared_token_counter()
    # how much of the proxy is topicality: the question alone, compared with the same references
    alone = (
        embedder.embed([texts[r["question_id"]] for r in rows])
        * embedder.embed([references[r["question_id"]] for r in rows])
    ).sum(axis=1)
    for row, value in zip(rows, alone, strict=True):
        row["question_alone_similarity"] = round(float(value), 4)
    for mode in ("normal", "sot"):
        answers = [row[mode]["answer"] for row in rows]
        refs = [references[row["question_id"]] for row in rows]
        similarity = (embedder.embed(answers) * embedder.embed(refs)).sum(axis=1)
        for row, value, answer, ref in zip(rows, similarity, answers, refs, strict=True):
            row[mode]["similarity"] = round(float(value), 4)
            terms = key_terms(ref)
            row[mode]["term_recall"] = round(len(terms & key_terms(answer)) / max(1, len(terms)), 4)
            row[mode]["answer_tokens"] = counter.count(answer)


def route_all(questions: list[dict[str, Any]]) -> dict[str, Any]:
    """The shipped router's decision for all 80 questions against SoT's labels (in-sample: Vicuna-80
    is part of its training data; ``sot_router`` has the figures for unseen data)."""
    from tokenlean.reasoning.sot import SkeletonRouter

    router, texts = SkeletonRouter(), [q["text"] for q in questions]
    router.probability("warm-up: load the weights and the encoder before timing")
    started = time.perf_counter()
    routes = router.routes(texts)
    ms = (time.perf_counter() - started) * 1000 / len(questions)
    correct = [route.suits == bool(q["label"]) for route, q in zip(routes, questions, strict=True)]
    by_category: dict[str, list[bool]] = defaultdict(list)
    for route, question in zip(routes, questions, strict=True):
        by_category[question["category"]].append(route.suits)
        question["routed"] = route.suits
    weights = router.weights
    unguarded = router.probabilities(texts) >= router.threshold
    said_yes = [bool(q["label"]) for route, q in zip(routes, questions, strict=True) if route.suits]
    return {
        "in_sample": "Vicuna-80 is part of the router's training data",
        "accuracy": round(sum(correct) / len(correct), 4),
        "precision": round(sum(said_yes) / max(1, len(said_yes)), 4),
        "accuracy_without_guard": round(
            sum(p == bool(q["label"]) for p, q in zip(unguarded, questions, strict=True)) / len(questions), 4
        ),
        "routed_share_by_category": {c: round(sum(v) / len(v), 3) for c, v in by_category.items()},
        "ms_per_request": round(ms, 2),
        "routed": sum(r.suits for r in routes),
        "labelled_suitable": sum(q["label"] for q in questions),
        "model": {
            "features": weights.meta.get("features", "all-MiniLM-L6-v2"),
            "classifier": weights.meta.get("model"),
            "C": weights.meta.get("C"),
            "calibration": list(weights.calibration),
            "threshold": router.threshold,
            "chosen_by": weights.meta.get("chosen_by"),
            "trained_on": weights.meta.get("trained_on"),
            "held_out_in_training": weights.meta.get("cv", {}).get("at_threshold"),
        },
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and ratios for one group of rows."""
    if not rows:
        return {"questions": 0}
    speedups = [row["normal"]["e2e_s"] / row["sot"]["e2e_s"] for row in rows]
    normal_total = sum(row["normal"]["e2e_s"] for row in rows)
    sot_total = sum(row["sot"]["e2e_s"] for row in rows)
    out: dict[str, Any] = {
        "questions": len(rows),
        "median_speedup": round(median(speedups), 3),
        "total_time_ratio": round(normal_total / sot_total, 3),
    }
    for mode in ("normal", "sot"):
        for key in ("e2e_s", "ttft_s", "answer_tokens", "similarity", "term_recall"):
            out[f"{mode}_{key}"] = round(median([row[mode][key] for row in rows]), 4)
        out[f"{mode}_mean_similarity"] = round(sum(row[mode]["similarity"] for row in rows) / len(rows), 4)
    out["sot_fallbacks"] = sum(row["sot"]["sot_action"] != "expanded" for row in rows)
    out["question_alone_mean_similarity"] = round(
        sum(r["question_alone_similarity"] for r in rows) / len(rows), 4
    )
    expanded = [row["sot"]["sot"] for row in rows if row["sot"]["sot_action"] == "expanded"]
    for key in ("skeleton_ms", "skeleton_tokens", "expansion_ms", "expansion_tokens", "points"):
        out[f"sot_median_{key}"] = median([e[key] for e in expanded]) if expanded else None
    out["sot_with_opening_line"] = sum(bool(e.get("lead")) for e in expanded)
    return out


def plot(settings: dict[int, dict[str, dict[str, Any]]], path: Any) -> None:
    """Per max_tokens (columns): median end-to-end, first-token latency and quality per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (
        ("e2e_s", "median end-to-end (s)"),
        ("ttft_s", "median first token (s)"),
        ("mean_similarity", "mean cosine to GPT-3.5"),
    )
    fig, axes = plt.subplots(3, len(settings), figsize=(8 * len(settings), 10), squeeze=False)
    for column, (budget, groups) in enumerate(settings.items()):
        names = [name for name, group in groups.items() if group.get("questions")]
        x = range(len(names))
        for row, (key, label) in enumerate(rows):
            axis = axes[row][column]
            field = key if key != "mean_similarity" else None
            normal = [
                groups[n][f"normal_{field}"] if field else groups[n]["normal_mean_similarity"] for n in names
            ]
            sot = [groups[n][f"sot_{field}"] if field else groups[n]["sot_mean_similarity"] for n in names]
            axis.bar([i - 0.2 for i in x], normal, 0.4, label="normal")
            axis.bar([i + 0.2 for i in x], sot, 0.4, label="SoT")
            axis.set_ylabel(label)
            axis.set_xticks(
                list(x), [f"{n}\n({groups[n]['questions']})" for n in names], rotation=30, fontsize=8
            )
        axes[0][column].set_title(f"SoT vs normal, SmolLM2-135M on CPU, Vicuna-80, max_tokens={budget}")
        axes[0][column].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    """Run, print the tables, write bench/results/sot.json and sot.png."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[160, 320])
    parser.add_argument("--fraction", type=float, default=0.4, help="share of each category (default 0.4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="all 80 questions")
    parser.add_argument("--router-only", action="store_true", help="the router alone, merged into sot.json")
    args = parser.parse_args()
    questions = load_questions()
    router = route_all(questions)
    unseen = sot_router.cross_dataset_report()
    sot_router.plot(unseen, RESULTS / "sot.router.png")
    if args.router_only:
        return write_router_only(questions, router, unseen)
    chosen = questions if args.full else pick(questions, args.fraction, args.seed)
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = asyncio.run(run(chosen, args.max_tokens))
    routed_ids = {q["question_id"] for q in questions if q["routed"]}
    settings: dict[int, dict[str, Any]] = {}
    for budget, budget_rows in rows.items():
        add_quality_and_length(budget_rows, questions)
        groups = {"all": summarise(budget_rows)}
        groups["router-selected"] = summarise([r for r in budget_rows if r["question_id"] in routed_ids])
        for category in sorted({row["category"] for row in budget_rows}):
            groups[category] = summarise([row for row in budget_rows if row["category"] == category])
        settings[budget] = groups
    report(args, (router, unseen), settings, rows, time.perf_counter() - started, load_before)


_COLUMN_NAMES = (
    "normal_e2e_s sot_e2e_s median_speedup normal_ttft_s sot_ttft_s normal_answer_tokens sot_answer_tokens "
    "normal_mean_similarity sot_mean_similarity normal_term_recall sot_term_recall sot_fallbacks"
)
_COLUMNS = _COLUMN_NAMES.split()


def _table(groups: dict[str, Any]) -> str:
    body = [
        [name, g["questions"], *(g[c] for c in _COLUMNS)] for name, g in groups.items() if g.get("questions")
    ]
    return print_table(["group", "n", *_COLUMNS], body)


def write_router_only(
    questions: list[dict[str, Any]], router: dict[str, Any], unseen: dict[str, Any]
) -> None:
    """The router's figures merged into sot.json; the last full run's rows re-cut, tables and plot redone."""
    routed_ids = {q["question_id"] for q in questions if q["routed"]}
    results = sot_router.merge(unseen, router, routed_ids, summarise)
    results["router_environment"] = environment(("scikit-learn", "matplotlib"))
    if "by_max_tokens" in results:
        results["tables"] = {budget: _table(groups) for budget, groups in results["by_max_tokens"].items()}
        plot(results["by_max_tokens"], RESULTS / "sot.png")
    write_results("sot", results)
    print(json.dumps(results["goals"], indent=1))


def report(
    args: Any,
    routers: tuple[dict[str, Any], dict[str, Any]],
    settings: dict[int, dict[str, Any]],
    rows: dict[int, Any],
    seconds: float,
    load_before: tuple[float, float, float],
) -> None:
    """Tables, goals, JSON and PNG."""
    router, unseen = routers
    tables = {}
    for budget, groups in settings.items():
        print(f"\nmax_tokens={budget}")
        tables[budget] = _table(groups)
    goals = sot_router.speed_goals(settings, "") + sot_router.router_goals(unseen)
    print(f"goals met: {[g['met'] for g in goals]}")
    write_results(
        "sot",
        {
            "environment": environment(("scikit-learn", "matplotlib")),
            "settings": {
                "max_tokens": args.max_tokens,
                "fraction": 1.0 if args.full else args.fraction,
                "seed": args.seed,
                "temperature": 0,
                "stage": "SkeletonStage() defaults, mode forced per request",
                "backend": "LocalBackend(draft='off') (SmolLM2-135M-Instruct, CPU)",
            },
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "seconds": round(seconds, 1),
            "router": router,
            "router_unseen": unseen,
            "by_max_tokens": settings,
            "goals": goals,
            "tables": tables,
            "questions": rows,
        },
    )
    plot(settings, RESULTS / "sot.png")


if __name__ == "__main__":
    main()
