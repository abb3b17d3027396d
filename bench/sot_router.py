"""The SoT router on traffic it was not tuned on: the fast part of ``bench.sot`` (``--router-only``).

Cross-dataset validation (issue 17): the router is trained, calibrated and thresholded on one of
SoT's labelled sets alone (LIMA or Vicuna-80, everything chosen on that set's held-out folds,
exactly as ``train_router`` does for the shipped router) and scored once on the other. Those two
directions are the figures for unseen data; the shipped router (trained on both) is scored on
them too, but that is in-sample and only a regression check. Two unlabelled sets whose kind the
paper names say how it behaves elsewhere: GSM8K maths word problems (every "yes" there is a false
positive by the paper's definition) and MT-Bench first turns by category. Two references
bound what any threshold could do: ``limits`` (the best accuracy at any threshold on the test
set, and the precision of the top-ranked requests) and ``in_domain_ceiling`` (a router trained
on the test set's own folds, at its best threshold): where the latter is below a goal, the
labels themselves cap it.
Then the speed figures of the last full run are re-cut for the current router's selection: the
full run forced SoT on every sampled question, so the rows hold both modes for all of them.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

from bench.common import DATA, RESULTS, goal

GSM8K = DATA / "gsm8k" / "test.jsonl"
MT_BENCH = DATA / "sot_questions" / "fastchat" / "mt_bench_question.jsonl"
ACCURACY, PRECISION = 0.85, 0.80


def _without_curve(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scores.items() if k != "curve"}


def cross_dataset_report() -> dict[str, Any]:
    """Both directions, the shipped router in-sample, and the unlabelled checks."""
    from tokenlean.reasoning.sot import SkeletonRouter
    from tokenlean.reasoning.sot.router import encoder_for
    from tokenlean.reasoning.sot.train_router import SETS, cross_dataset, evaluate, load_sets

    router = SkeletonRouter()
    encoder = router.weights.encoder
    started = time.perf_counter()
    sets = load_sets(SETS, encoder_for(encoder))
    directions = cross_dataset(sets, encoder=encoder)
    shipped = {s.name: evaluate(router.weights, s.vectors, s.labels, s.texts) for s in sets}
    meta = router.weights.meta
    return {
        "protocol": (
            "train on one set; design by held-out ROC AUC, Platt calibration and the threshold for held-out "
            f"precision >= {meta['precision_target']} on that set's folds only; score once on the other set"
        ),
        "cross_dataset": directions,
        "shipped": {
            "trained_on": meta["trained_on"],
            "features": meta["features"],
            "C": meta["C"],
            "calibration": list(router.weights.calibration),
            "threshold": router.threshold,
            "held_out_in_training": meta["cv"]["at_threshold"],
            "in_sample": {name: _without_curve(scores) for name, scores in shipped.items()},
        },
        "in_domain_ceiling": {s.name: in_domain_ceiling(s) for s in sets},
        "gsm8k_routed": _gsm8k(router),
        "mt_bench_routed_by_category": _mt_bench(router),
        "seconds": round(time.perf_counter() - started, 1),
    }


def in_domain_ceiling(labelled: Any) -> dict[str, Any]:
    """How well a router of this kind does on a set when trained on that set's own folds (best
    design by held-out AUC) and thresholded on its own test labels: an upper reference for what a
    router trained elsewhere can reach there, since the labels' own consistency caps it."""
    import numpy as np

    from tokenlean.reasoning.sot.train_router import cross_validate, limits

    rows = cross_validate(labelled.vectors, labelled.labels, labelled.texts)
    best = max(rows, key=lambda r: r["roc_auc"])
    per_repeat = [limits(logits, labelled.labels, labelled.texts) for logits in best["logits"]]
    return {
        "design": {"lexical": best["lexical"], "C": best["C"]},
        "held_out_roc_auc": best["roc_auc"],
        "best_accuracy_any_threshold": round(
            float(np.mean([r["best_accuracy_any_threshold"] for r in per_repeat])), 4
        ),
        "majority_baseline": round(float(max(labelled.labels.mean(), 1 - labelled.labels.mean())), 4),
    }


def _gsm8k(router: Any) -> dict[str, Any]:
    """How many GSM8K test questions (maths: unsuitable by the paper's definition) it routes."""
    texts = [json.loads(line)["question"] for line in GSM8K.read_text().splitlines() if line.strip()]
    routes = router.routes(texts)
    return {
        "questions": len(texts),
        "routed": sum(r.suits for r in routes),
        "guarded": sum(r.probability is None for r in routes),
    }


def _mt_bench(router: Any) -> dict[str, str]:
    """MT-Bench first turns (no SoT labels): share routed per category."""
    questions = [json.loads(line) for line in MT_BENCH.read_text().splitlines() if line.strip()]
    routes = router.routes([q["turns"][0] for q in questions])
    by_category: dict[str, list[bool]] = defaultdict(list)
    for question, route in zip(questions, routes, strict=True):
        by_category[question["category"]].append(route.suits)
    return {c: f"{sum(v)}/{len(v)}" for c, v in sorted(by_category.items())}


def router_goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Accuracy and SoT-class precision on unseen data, each direction."""
    goals = []
    ceilings = report.get("in_domain_ceiling", {})
    for row in report["cross_dataset"]:
        scores, where = row["test_scores"], f"train {row['train']} -> test {row['test']} (never tuned on)"
        ceiling = ceilings.get(row["test"], {}).get("best_accuracy_any_threshold")
        reference = (
            f"; trained on {row['test']}'s own folds at its best threshold: {ceiling}" if ceiling else ""
        )
        goals.append(
            goal(
                f"router accuracy, {where}; majority baseline {scores['majority_baseline']}{reference}",
                f">= {ACCURACY}",
                scores["accuracy"],
                lambda v: v >= ACCURACY,
            )
        )
        goals.append(
            goal(
                f"router precision for the SoT class, {where}; recall {scores['recall']}",
                f">= {PRECISION}",
                scores["precision"],
                lambda v: v >= PRECISION,
            )
        )
    return goals


def plot(report: dict[str, Any], path: Any) -> None:
    """Held-out precision and recall against the threshold, each direction, the chosen one marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["cross_dataset"]
    fig, axes = plt.subplots(1, len(rows), figsize=(6 * len(rows), 4), squeeze=False)
    for axis, row in zip(axes[0], rows, strict=True):
        curve = row["test_scores"]["curve"]
        thresholds = [p["threshold"] for p in curve]
        for key in ("precision", "recall", "accuracy"):
            # precision is undefined where nothing is routed: left out, not drawn as 0
            values = [p[key] if p["routed"] or key != "precision" else float("nan") for p in curve]
            axis.plot(thresholds, values, marker="o", label=f"{row['test']} {key}")
        axis.axvline(
            row["test_scores"]["threshold"], color="grey", linestyle="--", label="chosen on train folds"
        )
        axis.axhline(PRECISION, color="red", linewidth=0.5)
        axis.set_title(f"train {row['train']} -> test {row['test']} (AUC {row['test_scores']['roc_auc']})")
        axis.set_xlabel("threshold on the calibrated probability")
        axis.set_ylim(0, 1.05)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def recut_speed(previous: dict[str, Any], routed_ids: set[int], summarise: Any) -> dict[str, Any]:
    """The last full run's rows, with ``router-selected`` = what the current router routes."""
    settings: dict[str, Any] = previous["by_max_tokens"]
    for budget, rows in previous["questions"].items():
        selected = [row for row in rows if row["question_id"] in routed_ids]
        settings[budget]["router-selected"] = summarise(selected)
    return settings


def speed_goals(settings: dict[Any, Any], note: str = " (rows of the last full run)") -> list[dict[str, Any]]:
    """Speed-up and quality on the router-selected group; ``note`` says where the rows come from."""
    goals = []
    for budget, groups in settings.items():
        selected = groups["router-selected"]
        goals.append(
            goal(
                f"median end-to-end speed-up, router-selected, max_tokens={budget}{note}",
                ">= 1.8x",
                selected.get("median_speedup"),
                lambda v: v is not None and v >= 1.8,
            )
        )
        quality = {
            "sot": selected.get("sot_mean_similarity"),
            "normal": selected.get("normal_mean_similarity"),
        }
        goals.append(
            goal(
                f"quality proxy (mean cosine to GPT-3.5), router-selected, max_tokens={budget}{note}",
                "SoT >= normal",
                quality,
                lambda v: v["sot"] is not None and v["sot"] >= v["normal"],
            )
        )
    return goals


def merge(
    report: dict[str, Any], router: dict[str, Any], routed_ids: set[int], summarise: Any
) -> dict[str, Any]:
    """The previous ``sot.json`` with the router parts replaced and the speed groups re-cut."""
    path = RESULTS / "sot.json"
    previous: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    goals = router_goals(report)
    if "questions" in previous:
        previous["by_max_tokens"] = recut_speed(previous, routed_ids, summarise)
        goals = speed_goals(previous["by_max_tokens"]) + goals
        previous["speed_rows_note"] = (
            "measured in the last full run (SoT forced on every sampled question); router-selected "
            "re-cut by the current router without rerunning the model"
        )
    previous.update(router=router, router_unseen=report, goals=goals)
    return previous
