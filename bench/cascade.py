"""Benchmark: FrugalGPT cascade scorers on real GSM8K answers of Mixtral-8x7B (cheap) and GPT-4 (strong).

Data: ``routellm/gsm8k/gsm8k_responses.csv`` (lm-sys/RouteLLM): 800 GSM8K questions, each with
Mixtral-8x7B-Instruct's and GPT-4-1106-preview's full answers and whether each was correct. A
cascade asks Mixtral first and escalates to GPT-4 when the scorer's confidence in Mixtral's answer
is below a threshold. For every scorer the curve of accuracy against the share of calls escalated
(and against dollars, with published prices) is computed with cross-validation: every question is
scored by a model trained without it (5 folds, repeated over 3 seeds; figures are the mean).
Thresholds are also chosen the honest way (nested: on the training folds' own cross-validated
scores) and applied to the held-out fold.

Scorers compared: the learnt scorer (answer features + MiniLM vectors, the shipped default), its
two halves alone, a question-only router (MiniLM of the question: what RouteLLM's routers see),
random escalation, a perfect judge of the cheap answer, and the oracle (knows both answers'
correctness). The log-probability and agreement scorers cannot be run on this data (no
log-probabilities, one sample per question); they appear in the live run.

Live run (``--live N``, default 12, 0 to skip): ``bench/cascade_live.py``.

    python -m bench.cascade            # ~5-15 min on 2 busy CPU cores (MiniLM vectors cached after the first run)
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DATA, RESULTS, environment, goal, print_table, write_results

CSV_PATH = DATA / "routellm" / "gsm8k" / "gsm8k_responses.csv"
SERVICEINFO = DATA / "frugalgpt" / "config" / "serviceinfo.json"
CHEAP, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
# serviceinfo.json has no Mixtral entry: Together AI's published list price for Mixtral-8x7B-Instruct.
MIXTRAL_PRICE = {
    "cost_input": 6e-7,
    "cost_output": 6e-7,
    "source": "Together AI list price, $0.60 per 1M tokens",
}
VARIANTS = ("learnt", "features", "vectors", "question-only")


def load_rows() -> dict[str, Any]:
    """Questions, both answers and their correctness as arrays."""
    with CSV_PATH.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "questions": [r["prompt"] for r in rows],
        "cheap_answers": [r[CHEAP + "_response"] for r in rows],
        "strong_answers": [r[STRONG + "_response"] for r in rows],
        "cheap_ok": np.array([r[CHEAP] == "True" for r in rows]),
        "strong_ok": np.array([r[STRONG] == "True" for r in rows]),
    }


def prices() -> dict[str, dict[str, Any]]:
    """Dollars per token: GPT-4-1106-preview is sold as gpt-4-turbo (serviceinfo.json)."""
    info = json.loads(SERVICEINFO.read_text())
    gpt4 = {
        **info["openaichat"]["gpt-4-turbo"],
        "source": "frugalgpt serviceinfo.json openaichat/gpt-4-turbo",
    }
    return {"cheap": MIXTRAL_PRICE, "strong": gpt4}


def call_costs(data: dict[str, Any], price: dict[str, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-question dollars of each model's call: question in, its own answer out.

    Counted with the embedded model's tokenizer (neither model's own tokenizer ships here), so
    absolute dollars are approximate; the ratio between tiers is what the curve depends on.
    """
    from tokenlean.tokens import shared_token_counter

    count = shared_token_counter().count
    q = np.array([count(t) for t in data["questions"]], dtype=float)
    cheap_out = np.array([count(t) for t in data["cheap_answers"]], dtype=float)
    strong_out = np.array([count(t) for t in data["strong_answers"]], dtype=float)
    cheap = q * price["cheap"]["cost_input"] + cheap_out * price["cheap"]["cost_output"]
    strong = q * price["strong"]["cost_input"] + strong_out * price["strong"]["cost_output"]
    return cheap, strong


def vectors(data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM vectors of questions and cheap answers, cached under ~/.cache/tokenlean/bench."""
    from tokenlean.models import cache_dir

    digest = hashlib.sha256(CSV_PATH.read_bytes()).hexdigest()[:16]
    path = cache_dir() / "bench" / f"cascade-vectors-{digest}.npz"
    if path.exists():
        with np.load(path) as cached:
            return cached["questions"], cached["answers"]
    from tokenlean.embeddings import shared_embedder

    embedder = shared_embedder()
    q, a = embedder.embed(data["questions"]), embedder.embed(data["cheap_answers"])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, questions=q, answers=a)
    return q, a


def fit_predict(
    variant: str,
    feats: np.ndarray,
    vecs: dict[str, np.ndarray],
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
) -> np.ndarray:
    """Train one scorer variant on ``train`` rows and score ``test`` rows."""
    from tokenlean.reasoning.cascade import LearntModel

    qa = np.hstack([vecs["q"], vecs["a"]]).astype(np.float64)
    if variant == "learnt":
        model = LearntModel.fit(feats[train], qa[train], y[train])
        return model.predict(feats[test], qa[test])
    if variant == "features":
        return LearntModel.fit(feats[train], None, y[train]).predict(feats[test])
    source = qa if variant == "vectors" else vecs["q"].astype(np.float64)
    empty = np.zeros((len(y), 0))  # vectors only: no answer features
    model = LearntModel.fit(empty[train], source[train], y[train], components=16, c=0.1)
    return model.predict(empty[test], source[test])


def cv_scores(
    variant: str, feats: np.ndarray, vecs: dict[str, np.ndarray], y: np.ndarray, folds: int, seed: int
) -> np.ndarray:
    """Out-of-fold confidences: every row scored by a model that never saw it."""
    from sklearn.model_selection import StratifiedKFold

    scores = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(feats, y):
        scores[test] = fit_predict(variant, feats, vecs, y, train, test)
    return scores


def summarise(
    scores: np.ndarray, data: dict[str, Any], cheap_cost: np.ndarray, strong_cost: np.ndarray
) -> dict[str, Any]:
    """AUC, the escalation share needed for each target, accuracy at 25/40 % escalated, costs."""
    from sklearn.metrics import roc_auc_score

    from tokenlean.reasoning.cascade import threshold_curve

    cheap_ok, strong_ok = data["cheap_ok"], data["strong_ok"]
    curve = threshold_curve(
        list(scores), list(cheap_ok), list(strong_ok), cheap_cost=cheap_cost, strong_cost=strong_cost
    )
    always_strong = float(strong_cost.mean())
    targets = {"95%": 0.95 * strong_ok.mean(), "100%": strong_ok.mean()}
    result: dict[str, Any] = {"auc": float(roc_auc_score(cheap_ok, scores))}
    for label, target in targets.items():
        point = (
            next(p for p in curve if p.quality >= target - 1e-12)
            if max(p.quality for p in curve) >= target - 1e-12
            else None
        )
        result[f"escalated_for_{label}"] = None if point is None else point.escalated
        result[f"cost_ratio_for_{label}"] = None if point is None else point.cost / always_strong
    for share in (0.25, 0.40):
        result[f"accuracy_at_{int(share * 100)}"] = max(
            p.quality for p in curve if p.escalated <= share + 1e-12
        )
    step = max(1, len(curve) // 100)
    result["curve"] = [(p.escalated, p.quality, p.cost / always_strong) for p in curve[::step]] + [
        (curve[-1].escalated, curve[-1].quality, curve[-1].cost / always_strong)
    ]
    return result


def nested_thresholds(
    variant: str, feats: np.ndarray, vecs: dict[str, np.ndarray], data: dict[str, Any], folds: int, seed: int
) -> dict[str, Any]:
    """Choose each fold's threshold on its training rows (inner CV), apply it to the held-out rows."""
    from sklearn.model_selection import StratifiedKFold

    from tokenlean.reasoning.cascade import choose_threshold, threshold_curve

    y, strong = data["cheap_ok"], data["strong_ok"]
    out: dict[str, Any] = {}
    for label, ratio in (("95%", 0.95), ("100%", 1.0)):
        escalated, correct = np.zeros(len(y), bool), np.zeros(len(y), bool)
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(feats, y):
            inner = np.zeros(len(train))
            for itr, ite in StratifiedKFold(folds, shuffle=True, random_state=seed + 1).split(
                train, y[train]
            ):
                inner[ite] = fit_predict(variant, feats, vecs, y, train[itr], train[ite])
            curve = threshold_curve(list(inner), list(y[train]), list(strong[train]))
            point = choose_threshold(curve, min_quality=ratio * strong[train].mean())
            test_scores = fit_predict(variant, feats, vecs, y, train, test)
            escalated[test] = test_scores < point.threshold
            correct[test] = np.where(escalated[test], strong[test], y[test])
        out[label] = {
            "escalated": float(escalated.mean()),
            "accuracy": float(correct.mean()),
            "target_accuracy": float(ratio * strong.mean()),
        }
    return out


def baselines(data: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Scores for random escalation, the perfect cheap-answer judge and the oracle."""
    rng = np.random.default_rng(seed)
    cheap_ok, strong_ok = data["cheap_ok"], data["strong_ok"]
    return {
        "random": rng.random(len(cheap_ok)),
        "perfect judge": cheap_ok + 0.5 * rng.random(len(cheap_ok)),  # wrong answers first, in random order
        "oracle": cheap_ok * 2.0 + (~strong_ok) + 0.1 * rng.random(len(cheap_ok)),  # also knows GPT-4's
    }


def mean_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Average the scalar figures of several seeds; keep the first seed's curve for the plot."""
    merged: dict[str, Any] = {"curve": runs[0]["curve"], "seeds": len(runs)}
    for key in runs[0]:
        if key != "curve":
            values = [r[key] for r in runs]
            merged[key] = None if any(v is None for v in values) else float(np.mean(values))
    return merged


def offline(folds: int, repeats: int) -> dict[str, Any]:
    """Every scorer's cross-validated curve and summary, plus nested threshold selection."""
    from tokenlean.reasoning.cascade.learnt import featurise

    data, price = load_rows(), prices()
    cheap_cost, strong_cost = call_costs(data, price)
    feats, _ = featurise(data["questions"], data["cheap_answers"], None)
    q, a = vectors(data)
    vecs = {"q": q, "a": a}
    scorers: dict[str, Any] = {}
    for variant in VARIANTS:
        runs = [
            summarise(
                cv_scores(variant, feats, vecs, data["cheap_ok"], folds, s), data, cheap_cost, strong_cost
            )
            for s in range(repeats)
        ]
        scorers[variant] = mean_summary(runs)
    for name in ("random", "perfect judge", "oracle"):
        runs = [
            summarise(baselines(data, s)[name], data, cheap_cost, strong_cost)
            for s in range(max(repeats, 20))
        ]
        scorers[name] = mean_summary(runs)
    return {
        "data": {
            "path": str(CSV_PATH.relative_to(DATA.parent)),
            "rows": len(feats),
            "cheap_accuracy": float(data["cheap_ok"].mean()),
            "strong_accuracy": float(data["strong_ok"].mean()),
        },
        "prices": price,
        "mean_cost": {"cheap": float(cheap_cost.mean()), "strong": float(strong_cost.mean())},
        "folds": folds,
        "repeats": repeats,
        "scorers": scorers,
        "nested_thresholds": nested_thresholds("learnt", feats, vecs, data, folds, 0),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy against share escalated and against cost, one line per scorer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, summary in result["scorers"].items():
        curve = np.array(summary["curve"])
        style = "--" if name in {"random", "oracle", "perfect judge"} else "-"
        left.plot(curve[:, 0], curve[:, 1], style, label=name)
        right.plot(curve[:, 2], curve[:, 1], style, label=name)
    strong = result["data"]["strong_accuracy"]
    for axis, xlabel in (
        (left, "share of calls escalated to GPT-4"),
        (right, "cost relative to always GPT-4"),
    ):
        axis.axhline(strong, color="grey", lw=0.8)
        axis.axhline(0.95 * strong, color="grey", lw=0.8, ls=":")
        axis.set_xlabel(xlabel)
        axis.set_ylabel("GSM8K accuracy")
    left.axvline(0.25, color="red", lw=0.6, ls=":")
    left.axvline(0.40, color="red", lw=0.6, ls=":")
    left.legend(fontsize=8)
    fig.suptitle("Mixtral-8x7B -> GPT-4 cascade on 800 GSM8K questions (cross-validated)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(result: dict[str, Any]) -> str:
    """The README table: one row per scorer."""

    def pct(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.1%}"

    rows = []
    for name, s in result["scorers"].items():
        rows.append(
            [
                name,
                f"{s['auc']:.3f}",
                pct(s["escalated_for_95%"]),
                pct(s["escalated_for_100%"]),
                f"{s['accuracy_at_25']:.3f}",
                f"{s['accuracy_at_40']:.3f}",
                pct(s["cost_ratio_for_95%"]),
            ]
        )
    headers = [
        "scorer",
        "AUC",
        "escalated for 95% of GPT-4",
        "escalated for GPT-4's accuracy",
        "accuracy @25% escalated",
        "accuracy @40% escalated",
        "cost vs GPT-4 at 95%",
    ]
    return print_table(headers, rows)


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, computed from the learnt scorer's cross-validated curve."""
    learnt = result["scorers"]["learnt"]
    return [
        goal(
            "95% of GPT-4's accuracy with <=25% of calls escalated",
            "<= 0.25",
            learnt["escalated_for_95%"],
            lambda v: v is not None and v <= 0.25,
        ),
        goal(
            "GPT-4's full accuracy with <=40% of calls escalated",
            "<= 0.40",
            learnt["escalated_for_100%"],
            lambda v: v is not None and v <= 0.40,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    """Run the offline curves (and the live run), print the table, write JSON and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="cross-validation seeds to average")
    parser.add_argument("--live", type=int, default=12, help="GSM8K questions for the live run (0: skip)")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"environment": environment(["scikit-learn", "matplotlib"])}
    result.update(offline(args.folds, args.repeats))
    result["table"] = table(result)
    print(json.dumps(result["nested_thresholds"], indent=1))
    if args.live > 0:
        from bench.cascade_live import live_run

        result["live"] = live_run(args.live)
    result["goals"] = goals(result)
    for row in result["goals"]:
        print(f"goal {row['name']}: achieved {row['achieved']} -> {'met' if row['met'] else 'NOT met'}")
    plot(result, RESULTS / "cascade.png")
    print(write_results("cascade", result))


if __name__ == "__main__":
    main()
