"""Train the SoT router and write ``router.npz``: ``python -m tokenlean.reasoning.sot.train_router``.

The classifier is a logistic regression over MiniLM vectors of SoT's labelled LIMA requests
(``sot/lima/router.csv``, 1 = suits a skeleton). Classes are weighted to balance, so the
decision does not inherit LIMA's 36 % share of positives; the regularisation ``C`` is chosen by
10-fold cross-validated ROC AUC on LIMA alone, and the threshold stays at 0.5. The Vicuna-80
labels are never trained or tuned on: with ``--vicuna`` they are only scored, for the record.
Needs scikit-learn (training only; the shipped router runs on numpy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tokenlean.reasoning.sot.router import DEFAULT_WEIGHTS, RouterWeights, read_router_csv

__all__ = ["evaluate", "main", "train"]

_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sot_questions" / "sot"
GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SEED = 0


def train(vectors: Any, labels: Any, *, grid: tuple[float, ...] = GRID, folds: int = 10) -> RouterWeights:
    """Pick ``C`` by cross-validated AUC, refit on everything, return the weights with their scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate

    splitter = StratifiedKFold(folds, shuffle=True, random_state=SEED)
    scores: dict[float, dict[str, float]] = {}
    for c in grid:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        result = cross_validate(model, vectors, labels, cv=splitter, scoring=("roc_auc", "accuracy", "balanced_accuracy"))
        scores[c] = {k: float(result[f"test_{k}"].mean()) for k in ("roc_auc", "accuracy", "balanced_accuracy")}
    best = max(grid, key=lambda c: scores[c]["roc_auc"])
    model = LogisticRegression(C=best, class_weight="balanced", max_iter=5000).fit(vectors, labels)
    meta = {
        "model": "logistic regression, class_weight=balanced",
        "embedder": "all-MiniLM-L6-v2",
        "trained_on": "imagination-research/sot data/lima/router.csv",
        "examples": int(len(labels)),
        "positives": int(sum(labels)),
        "C": best,
        "cv": {"folds": folds, "seed": SEED, "by_C": {str(c): scores[c] for c in grid}},
        "date": time.strftime("%Y-%m-%d"),
    }
    return RouterWeights(model.coef_[0], float(model.intercept_[0]), 0.5, meta)


def evaluate(weights: RouterWeights, vectors: Any, labels: Any) -> dict[str, float]:
    """Accuracy, balanced accuracy and ROC AUC of ``weights`` on held-out labelled vectors."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    probabilities = weights.probabilities(vectors)
    predicted = (probabilities >= weights.threshold).astype(int)
    return {
        "accuracy": float((predicted == labels).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "roc_auc": float(roc_auc_score(labels, probabilities)),
    }


def main(argv: list[str] | None = None) -> None:
    """Train on LIMA, write the weights, score Vicuna-80 if present."""
    import numpy as np

    from tokenlean.embeddings import shared_embedder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lima", type=Path, default=_DATA / "lima" / "router.csv")
    parser.add_argument("--vicuna", type=Path, default=_DATA / "vicuna" / "router.csv")
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    args = parser.parse_args(argv)
    embedder = shared_embedder()
    texts, labels = read_router_csv(args.lima)
    weights = train(embedder.embed(texts), np.asarray(labels))
    weights.save(args.out)
    cv = weights.meta["cv"]["by_C"][str(weights.meta["C"])]
    print(f"trained on {len(texts)} LIMA requests; C={weights.meta['C']}; 10-fold CV: {cv}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    if args.vicuna.exists():
        held_texts, held_labels = read_router_csv(args.vicuna)
        print("Vicuna-80 (never trained on):", evaluate(weights, embedder.embed(held_texts), np.asarray(held_labels)))


if __name__ == "__main__":
    main()
