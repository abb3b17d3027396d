"""Benchmark part: does the ``demos`` stage's relevance test add demonstrations only where they belong?

    python -m bench.demos --relevance-only   # this part alone: bench/results/demos.relevance.{json,png}

Mix: each pool's own test queries, sent as a classification request is sent (the task's
instruction in the system prompt, as ``bench/demos.py`` and the e2e workload send them; RTE and
CB carry theirs in the text: "question: ... true or false?"), against ShareGPT first turns sent
as chats (the e2e workload's generic system prompt). The gate sees what the stage sees: the
last user turn for similarity, the leading system text and that turn for the labels.
Three disjoint splits:

* tune (choose ``named_quantile`` and ``unnamed_quantile``): SST-2 dev (872) and 500 TREC
  training questions scored leave-one-out (seed 1), against ShareGPT half A;
* report: SST-2 test (1,821), TREC test (500), the 300 AG News queries, RTE test (first 1,000)
  and CB test (250), against ShareGPT half B. AG News, RTE and CB are never used for tuning.

ShareGPT is split by the parity of the first byte of sha256(conversation id). The gate is
``calibrate_gate(pool)`` from ``tokenlean.selectors.relevance`` (the stage's own code); the
score of a query is the mean cosine of its ``k`` nearest pool examples, as the stage computes it
(including its second reading of a turn without the lines that name the labels).
Besides the goals, the report shows the previous rule (similarity alone at the 5 % quantile) on
the same split, and two request shapes the goals do not cover: the bare text without its
instruction, and the instruction written into the user turn before the text.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import DATA, RESULTS, goal
from bench.demos import ICL, POOL_CACHE, SEED, TASKS, load_task, task_pool
from tokenlean.selectors import DemoPool, Example
from tokenlean.selectors.relevance import (
    DEFAULT_RULE,
    PoolGate,
    answer_labels,
    calibrate_gate,
    neighbour_scores,
)

SHAREGPT = DATA / "chat_traces" / "sharegpt_mlenergy" / "ShareGPT_V3_filtered_1000.json"
CHAT_SYSTEM = "You are a helpful assistant."  # what bench/e2e_workload.py sends with a chat
GRID_NAMED = (0.0, 0.005, 0.01, 0.02, 0.05)
GRID_UNNAMED: tuple[float | None, ...] = (0.3, 0.5, 0.7, 0.9, None)
TARGET_HIT, TARGET_CHAT = 0.95, 0.02
TUNE_HIT, TUNE_CHAT = 0.98, 0.01  # headroom on the tune split for pools the rule never saw
NLI_QUESTION = {"rte": "true or false?", "cb": "true, false, or neither?"}
NLI_ANSWER = {"entailment": "True", "not_entailment": "False", "contradiction": "False", "neutral": "Neither"}
INSTRUCTED = ("sst2", "trec", "agnews")  # tasks whose instruction is a system prompt (TASKS)


def nli_rows(task: str, split: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (ICL / task / f"{split}.jsonl").read_text().splitlines() if line]


def nli_texts(task: str, split: str) -> list[str]:
    """RTE/CB rows as one text, the GPT-3 prompt layout: premise, then the hypothesis as a question."""
    return [
        f"{r['premise']}\nquestion: {r['hypothesis']} {NLI_QUESTION[task]}" for r in nli_rows(task, split)
    ]


def nli_pool_examples(task: str) -> list[Example]:
    """The training rows with their answer word (True / False / Neither) as output and label."""
    answers = [NLI_ANSWER[r["label"]] for r in nli_rows(task, "train")]
    return [Example(t, a, a) for t, a in zip(nli_texts(task, "train"), answers, strict=True)]


def sharegpt_halves() -> tuple[list[str], list[str]]:
    """First human turns of the 1,000 ShareGPT conversations, split in two by a hash of the id."""
    tune: list[str] = []
    report: list[str] = []
    for conversation in json.loads(SHAREGPT.read_text(encoding="utf-8")):
        half = tune if hashlib.sha256(conversation["id"].encode()).digest()[0] % 2 == 0 else report
        half.append(conversation["conversations"][0]["value"])
    return tune, report


def embedded(name: str, texts: list[str], embedder: Any) -> Any:
    """Query vectors, cached beside the bench pools (keyed by the texts' hash)."""
    import numpy as np

    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    path = POOL_CACHE / "queries" / f"{name}-{key}.npy"
    if path.exists():
        return np.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    np.save(path, vectors)
    return vectors


def _queries(texts: dict[str, dict[str, list[str]]], embedder: Any) -> dict[str, dict[str, Any]]:
    """Per task and split: the user turns, their system prompt and their vectors."""
    out: dict[str, dict[str, Any]] = {}
    for task, splits in texts.items():
        system = TASKS[task]["system"] if task in TASKS else ""
        out[task] = {
            split: {"texts": v, "system": system, "vectors": embedded(f"{task}-{split}", v, embedder)}
            for split, v in splits.items()
        }
    return out


def pools_and_queries() -> tuple[dict[str, DemoPool], dict[str, dict[str, Any]], dict[str, Any]]:
    """Every pool, its tune/report queries (texts, system prompt, vectors), and both ShareGPT halves."""
    pools: dict[str, DemoPool] = {}
    for task in INSTRUCTED:
        pools[task] = task_pool(task, load_task(task)[0])[0]
    for task in ("rte", "cb"):
        pools[task] = task_pool(f"{task}-answers", nli_pool_examples(task))[0]
    embedder = pools["sst2"].embedder
    sst2 = {
        s: [line[2:] for line in (ICL / "sst2" / f"stsa.binary.{s}").read_text().splitlines() if line]
        for s in ("dev", "test")
    }
    trec = [
        line.partition(" ")[2]
        for line in (ICL / "trec" / "test.txt").read_text(encoding="latin-1").splitlines()
    ]
    texts = {
        "sst2": {"tune": sst2["dev"], "report": sst2["test"]},
        "trec": {"report": trec},
        "agnews": {"report": [q.input for q in load_task("agnews")[1]]},
        "rte": {"report": nli_texts("rte", "test")[:1000]},
        "cb": {"report": nli_texts("cb", "test")},
    }
    queries = _queries(texts, embedder)
    for task in INSTRUCTED:  # the instruction written into the user turn instead (informational)
        inline = [f"{TASKS[task]['system']}\n\n{t}" for t in texts[task]["report"]]
        queries[task]["inline"] = {
            "texts": inline,
            "system": "",
            "vectors": embedded(f"{task}-inline", inline, embedder),
        }
    chat_tune, chat_report = sharegpt_halves()
    chats = {
        "tune": {
            "texts": chat_tune,
            "system": CHAT_SYSTEM,
            "vectors": embedded("sharegpt-a", chat_tune, embedder),
        },
        "report": {
            "texts": chat_report,
            "system": CHAT_SYSTEM,
            "vectors": embedded("sharegpt-b", chat_report, embedder),
        },
    }
    return pools, queries, chats


def nearest(pool: DemoPool, vectors: Any, depth: int, own: Any = None) -> Any:
    """Cosines of each row's ``depth`` nearest pool examples, best first (the row itself left out)."""
    import numpy as np

    scores, ids = pool.search_many(vectors, depth + (own is not None))
    if own is None:
        return scores
    keep = ids != own[:, None]
    keep[keep.all(axis=1), -1] = False
    return np.stack([row[mask][:depth] for row, mask in zip(scores, keep, strict=True)])


def stage_scores(pool: DemoPool, batch: dict[str, Any]) -> Any:
    """Each request's relevance score as the stage computes it: the turn as sent, or without its
    lines naming the pool's labels when that reading is nearer (``PoolGate.nearer_reading``)."""
    import numpy as np

    scores = nearest(pool, batch["vectors"], DEFAULT_RULE.k).mean(1)
    reader = PoolGate(answer_labels(pool), 0.0, None)
    stripped = [reader.without_instruction(text) for text in batch["texts"]]
    rows = [i for i, text in enumerate(stripped) if text is not None]
    if rows:
        vectors = embedded("stripped", [stripped[i] or "" for i in rows], pool.embedder)
        scores[rows] = np.maximum(scores[rows], nearest(pool, vectors, DEFAULT_RULE.k).mean(1))
    return scores


def passed(gate: PoolGate, scores: Any, texts: list[str], system: str) -> Any:
    """Which requests the gate lets through (the stage's ``decide`` on each)."""
    import numpy as np

    return np.array(
        [gate.decide(float(s), f"{system}\n{t}").applies for s, t in zip(scores, texts, strict=True)]
    )


def _gate_at(pool: DemoPool, own: Any, named: float, unnamed: float | None) -> PoolGate:
    """``calibrate_gate`` for a grid point, from leave-one-out scores computed once."""
    import numpy as np

    return PoolGate(
        answer_labels(pool),
        float(np.quantile(own, named)),
        None if unnamed is None else float(np.quantile(own, unnamed)),
    )


def tune_rule(pools: dict[str, DemoPool], queries: dict[str, Any], chats: dict[str, Any]) -> dict[str, Any]:
    """Grid over (named, unnamed quantile) on the tune split.

    The pick: among the points with every tune pool at hit >= ``TUNE_HIT`` and chats <=
    ``TUNE_CHAT``, the lowest unnamed quantile (more bare task queries get demos), then the
    highest named one; if none qualifies, the smallest summed shortfall against those targets.
    """
    import numpy as np

    k = DEFAULT_RULE.k
    trec = pools["trec"]
    loo_ids = np.random.default_rng(1).choice(len(trec), 500, replace=False)
    tune = {
        "sst2": (
            stage_scores(pools["sst2"], queries["sst2"]["tune"]),
            queries["sst2"]["tune"]["texts"],
        ),
        "trec": (
            nearest(trec, trec.vectors[loo_ids], k, own=loo_ids).mean(1),
            [trec.examples[i].input for i in loo_ids],
        ),
    }
    chat = {t: stage_scores(pools[t], chats["tune"]) for t in tune}
    own = {t: neighbour_scores(pools[t], DEFAULT_RULE) for t in tune}
    rows = []
    for unnamed in GRID_UNNAMED:
        for named in GRID_NAMED:
            row: dict[str, Any] = {"named_quantile": named, "unnamed_quantile": unnamed, "pools": {}}
            for task, (scores, texts) in tune.items():
                gate = _gate_at(pools[task], own[task], named, unnamed)
                system = TASKS[task]["system"]
                row["pools"][task] = {
                    "hit": round(float(passed(gate, scores, texts, system).mean()), 4),
                    "bare_hit": round(float(passed(gate, scores, texts, "").mean()), 4),
                    "chat": round(
                        float(passed(gate, chat[task], chats["tune"]["texts"], CHAT_SYSTEM).mean()), 4
                    ),
                }
            row["shortfall"] = round(
                sum(
                    max(0, TUNE_HIT - p["hit"]) + max(0, p["chat"] - TUNE_CHAT) for p in row["pools"].values()
                ),
                4,
            )
            rows.append(row)
    ok = [r for r in rows if r["shortfall"] == 0]
    if ok:
        best = min(ok, key=lambda r: (_order(r["unnamed_quantile"]), -r["named_quantile"]))
    else:
        best = min(rows, key=lambda r: r["shortfall"])
    return {
        "targets": {"hit": TUNE_HIT, "chat": TUNE_CHAT},
        "grid": rows,
        "chosen": {"named_quantile": best["named_quantile"], "unnamed_quantile": best["unnamed_quantile"]},
    }


def _order(unnamed: float | None) -> float:
    return 2.0 if unnamed is None else unnamed


def _plain(pool: DemoPool, batch: dict[str, Any]) -> Any:
    """The turn as sent, scored alone (the previous rule had no second reading)."""
    return nearest(pool, batch["vectors"], DEFAULT_RULE.k).mean(1)


def _rates(gate: PoolGate, pool: DemoPool, batch: dict[str, Any]) -> tuple[float, Any]:
    scores = stage_scores(pool, batch)
    return round(float(passed(gate, scores, batch["texts"], batch["system"]).mean()), 4), scores


def report_split(
    pools: dict[str, DemoPool], queries: dict[str, Any], chats: dict[str, Any]
) -> dict[str, Any]:
    """The shipped rule (``DEFAULT_RULE``) on the report split, and the previous rule beside it."""
    import numpy as np

    similarity_only = replace(DEFAULT_RULE, max_labels=0)  # every pool free-form: the previous test
    out = {}
    for task, pool in pools.items():
        started = time.perf_counter()
        gate = calibrate_gate(pool, DEFAULT_RULE)
        calibrate_s = time.perf_counter() - started
        previous = calibrate_gate(pool, similarity_only)
        batch = queries[task]["report"]
        hit, hits = _rates(gate, pool, batch)
        chat, chat_scores = _rates(gate, pool, chats["report"])
        row: dict[str, Any] = {
            "pool_size": len(pool),
            "labels": list(gate.labels),
            "queries": len(hits),
            "chats": len(chat_scores),
            "threshold_named": round(gate.named, 4),
            "threshold_unnamed": None if gate.unnamed is None else round(gate.unnamed, 4),
            "calibrate_s": round(calibrate_s, 3),
            "hit": hit,
            "chat": chat,
            "chats_naming_labels": round(
                float(np.mean([gate.names_labels(f"{CHAT_SYSTEM}\n{t}") for t in chats["report"]["texts"]])),
                4,
            ),
            "similarity_only": {
                "threshold": round(previous.named, 4),
                "hit": round(float((_plain(pool, batch) >= previous.named).mean()), 4),
                "chat": round(float((_plain(pool, chats["report"]) >= previous.named).mean()), 4),
            },
            "tuned_on": task in ("sst2", "trec"),
            "scores": {"pool": hits.round(4).tolist(), "chat": chat_scores.round(4).tolist()},
        }
        if task in INSTRUCTED:
            row["bare_hit"] = _rates(gate, pool, {**batch, "system": ""})[0]
            row["inline_hit"] = _rates(gate, pool, queries[task]["inline"])[0]
        out[task] = row
    return out


def relevance_goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goal on the report split, per pool (a pool counts only if both rates hold)."""
    rates = {t: {"hit": r["hit"], "chat": r["chat"]} for t, r in report.items()}
    return [
        goal(
            "demos added to pool-task queries (report split, every pool)",
            f">= {TARGET_HIT:.0%} per pool",
            {t: r["hit"] for t, r in rates.items()},
            lambda a: min(a.values()) >= TARGET_HIT,
        ),
        goal(
            "demos added to ShareGPT first turns (report half, each pool as the default)",
            f"<= {TARGET_CHAT:.0%} per pool",
            {t: r["chat"] for t, r in rates.items()},
            lambda a: max(a.values()) <= TARGET_CHAT,
        ),
    ]


def relevance_benchmark() -> dict[str, Any]:
    """Tune on one split, report the shipped rule on the other."""
    pools, queries, chats = pools_and_queries()
    tuned = tune_rule(pools, queries, chats)
    report = report_split(pools, queries, chats)
    shipped = {
        "k": DEFAULT_RULE.k,
        "quantile_free_form": DEFAULT_RULE.quantile,
        "named_quantile": DEFAULT_RULE.named_quantile,
        "unnamed_quantile": DEFAULT_RULE.unnamed_quantile,
        "max_labels": DEFAULT_RULE.max_labels,
        "min_per_label": DEFAULT_RULE.min_per_label,
    }
    chosen = tuned["chosen"]
    return {
        "rule": shipped,
        "shipped_is_tuned": chosen
        == {"named_quantile": DEFAULT_RULE.named_quantile, "unnamed_quantile": DEFAULT_RULE.unnamed_quantile},
        "tune": tuned,
        "report": report,
        "goals": relevance_goals(report),
    }


def plot_relevance(result: dict[str, Any], path: Path) -> Path:
    """Score histograms (pool queries vs chats, both thresholds marked) per pool, and the tune grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = result["report"]
    fig, axes = plt.subplots(1, len(report) + 1, figsize=(4 * (len(report) + 1), 3.6))
    for ax, (task, row) in zip(axes, report.items(), strict=False):
        ax.hist(row["scores"]["pool"], bins=40, alpha=0.6, density=True, label=f"{task} test")
        ax.hist(row["scores"]["chat"], bins=40, alpha=0.6, density=True, label="ShareGPT B")
        ax.axvline(row["threshold_named"], color="k", linestyle="--", label="labels named")
        if row["threshold_unnamed"] is not None:
            ax.axvline(row["threshold_unnamed"], color="r", linestyle=":", label="not named")
        ax.set_title(f"{task}: hit {row['hit']:.3f}, chat {row['chat']:.3f}", fontsize=9)
        ax.set_xlabel(f"mean cosine of {result['rule']['k']} nearest")
        ax.legend(fontsize=6)
    chosen = result["tune"]["chosen"]["unnamed_quantile"]
    for task in ("sst2", "trec"):
        rows = [r for r in result["tune"]["grid"] if r["unnamed_quantile"] == chosen]
        axes[-1].plot(
            [r["pools"][task]["chat"] for r in rows],
            [r["pools"][task]["hit"] for r in rows],
            "o-",
            label=task,
        )
    axes[-1].axhline(TARGET_HIT, color="g", linestyle=":")
    axes[-1].axvline(TARGET_CHAT, color="r", linestyle=":")
    axes[-1].set_xlabel("chat rate (tune)")
    axes[-1].set_ylabel("hit rate (tune)")
    axes[-1].set_title(f"named-quantile grid, unnamed={chosen}", fontsize=9)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def write_relevance(result: dict[str, Any], environment: dict[str, Any]) -> tuple[Path, Path]:
    """bench/results/demos.relevance.{json,png} for a run of this part alone."""
    payload = {"environment": environment, **result}
    path = RESULTS / "demos.relevance.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path, plot_relevance(result, RESULTS / "demos.relevance.png")


__all__ = ["SEED", "plot_relevance", "relevance_benchmark", "write_relevance"]
