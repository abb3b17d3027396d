"""Train the SoT router and write ``router.npz``: ``python -m tokenlean.reasoning.sot.train_router``.

The classifier is a logistic regression over MiniLM vectors of SoT's labelled LIMA requests
(``sot/lima/router.csv``, 1 = suits a skeleton). Classes are weighted to balance, so the
decision does not inherit LIMA's 36 % share of positives; the regularisation ``C`` is chosen by
10-fold cross-validated ROC AUC on LIMA alone, and the threshold stays at 0.5. The maths/code
guard in front of the classifier (``router.maths_or_code``) is scored the same way, on LIMA's
cross-validated predictions. The Vicuna-80 labels are never trained or tuned on: with
``--vicuna`` they are only scored, for the record.
Needs scikit-learn (training only; the shipped router runs on numpy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tokenlean.reasoning.sot.router import DEFAULT_WEIGHTS, RouterWeights, maths_or_code, read_router_csv

__all__ = ["evaluate", "main", "train"]

_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sot_questions" / "sot"
GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SEED = 0


def train(
    vectors: Any, labels: Any, texts: list[str], *, grid: tuple[float, ...] = GRID, folds: int = 10
) -> RouterWeights:
    """Pick ``C`` by cross-validated AUC, refit on everything, return the weights with their scores."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.model_selection import (  # type: ignore[import-untyped]
        StratifiedKFold,
        cross_val_predict,
        cross_validate,
    )

    splitter = StratifiedKFold(folds, shuffle=True, random_state=SEED)
    scores: dict[float, dict[str, float]] = {}
    for c in grid:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        result = cross_validate(
            model, vectors, labels, cv=splitter, scoring=("roc_auc", "accuracy", "balanced_accuracy")
        )
        scores[c] = {
            k: float(result[f"test_{k}"].mean()) for k in ("roc_auc", "accuracy", "balanced_accuracy")
        }
    best = max(grid, key=lambda c: scores[c]["roc_auc"])
    model = LogisticRegression(C=best, class_weight="balanced", max_iter=5000)
    held_out = cross_val_predict(model, vectors, labels, cv=splitter, method="predict_proba")[:, 1]
    guarded = (held_out >= 0.5) & ~np.array([maths_or_code(t) is not None for t in texts])
    scores[best]["accuracy_with_guard"] = float((guarded == np.asarray(labels)).mean())
    model.fit(vectors, labels)
    meta = {
        "model": "logistic regression, class_weight=balanced",
        "embedder": "all-MiniLM-L6-v2",
        "trained_on": "imagination-research/sot data/lima/router.csv",
        "examples": len(labels),
        "positives": int(sum(labels)),
        "C": best,
        "cv": {"folds": folds, "seed": SEED, "by_C": {str(c): scores[c] for c in grid}},
        "date": time.strftime("%Y-%m-%d"),
    }
    return RouterWeights(model.coef_[0], float(model.intercept_[0]), 0.5, meta)


def evaluate(weights: RouterWeights, vectors: Any, labels: Any, texts: list[str]) -> dict[str, float]:
    """Accuracy (with and without the guard), balanced accuracy and ROC AUC on held-out labels."""
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score  # type: ignore[import-untyped]

    labels = np.asarray(labels)
    probabilities = weights.probabilities(vectors)
    classifier = probabilities >= weights.threshold
    routed = classifier & ~np.array([maths_or_code(t) is not None for t in texts])
    return {
        "accuracy": float((routed == labels).mean()),
        "accuracy_without_guard": float((classifier == labels).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, routed)),
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
    weights = train(embedder.embed(texts), np.asarray(labels), texts)
    weights.save(args.out)
    cv = weights.meta["cv"]["by_C"][str(weights.meta["C"])]
    print(f"trained on {len(texts)} LIMA requests; C={weights.meta['C']}; 10-fold CV: {cv}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    if args.vicuna.exists():
        held_texts, held_labels = read_router_csv(args.vicuna)
        scores = evaluate(weights, embedder.embed(held_texts), held_labels, held_texts)
        print("Vicuna-80 (never trained on):", scores)


if __name__ == "__main__":
    main()
