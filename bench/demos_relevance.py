"""Benchmark part: does the ``demos`` stage's relevance test add demonstrations only where they belong?

    python -m bench.demos --relevance-only   # this part alone: bench/results/demos.relevance.{json,png}

Mix: each pool's own test queries against ShareGPT first turns (chats). Three disjoint splits:

* tune (choose the rule's ``k`` and ``quantile``): SST-2 dev (872) and 500 TREC training
  questions scored leave-one-out (seed 1), against ShareGPT half A;
* report: SST-2 test (1,821), TREC test (500), the 300 AG News queries, RTE test (first 1,000)
  and CB test (250), against ShareGPT half B. AG News, RTE and CB are never used for tuning.

ShareGPT is split by the parity of the first byte of sha256(conversation id). The threshold is
``calibrate(pool)`` from ``tokenlean.selectors.relevance`` (the stage's own code); the score of a
query is the mean cosine of its ``k`` nearest pool examples, exactly as the stage computes it.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from bench.common import DATA, RESULTS, goal
from bench.demos import ICL, POOL_CACHE, SEED, load_task, task_pool
from tokenlean.selectors import DemoPool, Example
from tokenlean.selectors.relevance import DEFAULT_RULE, RelevanceRule, calibrate

SHAREGPT = DATA / "chat_traces" / "sharegpt_mlenergy" / "ShareGPT_V3_filtered_1000.json"
GRID_K = (1, 2, 4, 8)
GRID_QUANTILE = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
TARGET_HIT, TARGET_CHAT = 0.95, 0.02
NLI_QUESTION = {"rte": "true or false?", "cb": "true, false, or neither?"}


def nli_texts(task: str, split: str) -> list[str]:
    """RTE/CB rows as one text, the GPT-3 prompt layout: premise, then the hypothesis as a question."""
    rows = [json.loads(line) for line in (ICL / task / f"{split}.jsonl").read_text().splitlines() if line]
    return [f"{r['premise']}\nquestion: {r['hypothesis']} {NLI_QUESTION[task]}" for r in rows]


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


def pools_and_queries() -> tuple[dict[str, DemoPool], dict[str, dict[str, Any]], dict[str, Any]]:
    """Every pool, its tune/report query vectors, and the two ShareGPT halves' vectors."""
    pools: dict[str, DemoPool] = {}
    for task in ("sst2", "trec", "agnews"):
        pools[task] = task_pool(task, load_task(task)[0])[0]
    for task in ("rte", "cb"):
        pools[task] = task_pool(task, [Example(t, "-") for t in nli_texts(task, "train")])[0]
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
    queries = {
        t: {s: embedded(f"{t}-{s}", v, embedder) for s, v in splits.items()} for t, splits in texts.items()
    }
    chat_tune, chat_report = sharegpt_halves()
    chats = {
        "tune": embedded("sharegpt-a", chat_tune, embedder),
        "report": embedded("sharegpt-b", chat_report, embedder),
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


def tune_rule(pools: dict[str, DemoPool], queries: dict[str, Any], chats: dict[str, Any]) -> dict[str, Any]:
    """Grid over (k, quantile) on the tune split; the pick minimises the summed goal shortfalls."""
    import numpy as np

    depth = max(GRID_K)
    trec = pools["trec"]
    loo_ids = np.random.default_rng(1).choice(len(trec), 500, replace=False)
    tune_pools = {
        "sst2": nearest(pools["sst2"], queries["sst2"]["tune"], depth),
        "trec": nearest(trec, trec.vectors[loo_ids], depth, own=loo_ids),
    }
    chat = {t: nearest(pools[t], chats["tune"], depth) for t in tune_pools}
    rows = []
    for k in GRID_K:
        for q in GRID_QUANTILE:
            rule = RelevanceRule(k=k, quantile=q)
            row: dict[str, Any] = {"k": k, "quantile": q, "pools": {}}
            for task, top in tune_pools.items():
                threshold = calibrate(pools[task], rule)
                hit = float((top[:, :k].mean(1) >= threshold).mean())
                fp = float((chat[task][:, :k].mean(1) >= threshold).mean())
                row["pools"][task] = {
                    "threshold": round(threshold, 4),
                    "hit": round(hit, 4),
                    "chat": round(fp, 4),
                }
            row["shortfall"] = round(
                sum(
                    max(0, TARGET_HIT - p["hit"]) + max(0, p["chat"] - TARGET_CHAT)
                    for p in row["pools"].values()
                ),
                4,
            )
            rows.append(row)
    best = min(rows, key=lambda r: (r["shortfall"], -r["k"]))
    return {"grid": rows, "chosen": {"k": best["k"], "quantile": best["quantile"]}}


def report_split(
    pools: dict[str, DemoPool], queries: dict[str, Any], chats: dict[str, Any]
) -> dict[str, Any]:
    """The shipped rule (``DEFAULT_RULE``) on the report split: hit rate and chat rate per pool."""
    out = {}
    for task, pool in pools.items():
        started = time.perf_counter()
        threshold = calibrate(pool, DEFAULT_RULE)
        calibrate_s = time.perf_counter() - started
        hits = nearest(pool, queries[task]["report"], DEFAULT_RULE.k).mean(1)
        chat = nearest(pool, chats["report"], DEFAULT_RULE.k).mean(1)
        out[task] = {
            "pool_size": len(pool),
            "queries": len(hits),
            "chats": len(chat),
            "threshold": round(threshold, 4),
            "calibrate_s": round(calibrate_s, 3),
            "hit": round(float((hits >= threshold).mean()), 4),
            "chat": round(float((chat >= threshold).mean()), 4),
            "tuned_on": task in ("sst2", "trec"),
            "scores": {"pool": hits.round(4).tolist(), "chat": chat.round(4).tolist()},
        }
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
    shipped = {"k": DEFAULT_RULE.k, "quantile": DEFAULT_RULE.quantile, "margin": DEFAULT_RULE.margin}
    return {
        "rule": shipped,
        "shipped_is_tuned": tuned["chosen"] == {"k": DEFAULT_RULE.k, "quantile": DEFAULT_RULE.quantile},
        "tune": tuned,
        "report": report,
        "goals": relevance_goals(report),
    }


def plot_relevance(result: dict[str, Any], path: Path) -> Path:
    """Score histograms (pool queries vs chats, threshold marked) per pool, and the tune trade-off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = result["report"]
    fig, axes = plt.subplots(1, len(report) + 1, figsize=(4 * (len(report) + 1), 3.6))
    for ax, (task, row) in zip(axes, report.items(), strict=False):
        ax.hist(row["scores"]["pool"], bins=40, alpha=0.6, density=True, label=f"{task} test")
        ax.hist(row["scores"]["chat"], bins=40, alpha=0.6, density=True, label="ShareGPT B")
        ax.axvline(row["threshold"], color="k", linestyle="--")
        ax.set_title(f"{task}: hit {row['hit']:.3f}, chat {row['chat']:.3f}", fontsize=9)
        ax.set_xlabel(f"mean cosine of {result['rule']['k']} nearest")
        ax.legend(fontsize=7)
    for task in ("sst2", "trec"):
        rows = [r for r in result["tune"]["grid"] if r["k"] == result["rule"]["k"]]
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
    axes[-1].set_title(f"quantile grid, k={result['rule']['k']}", fontsize=9)
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
