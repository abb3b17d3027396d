"""Train the SoT router and write ``router.npz``: ``python -m tokenlean.reasoning.sot.train_router``.

The classifier is a logistic regression over MiniLM vectors of SoT's labelled LIMA requests
(``sot/lima/router.csv``, 1 = suits a skeleton), optionally with lexical cues appended
(``features.py``). Everything is chosen by cross-validation on LIMA alone (10 folds, repeated
3 times with different shuffles): whether to use the cues, the class weighting (balanced or
none), the regularisation ``C`` and the decision threshold, all by the cross-validated accuracy
of the whole router, i.e. with the maths/code/step-by-step guard (``router.maths_or_code``) in
front (ties: higher balanced accuracy, then ROC AUC). The Vicuna-80 labels are never trained
or tuned on: with ``--vicuna`` they are only scored, once the choice is made, for the record.
Needs scikit-learn (training only; the shipped router runs on numpy).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

from tokenlean.reasoning.sot.features import VERSION, lexical_features
from tokenlean.reasoning.sot.router import DEFAULT_WEIGHTS, RouterWeights, maths_or_code, read_router_csv

__all__ = ["GRID", "THRESHOLDS", "cross_validate", "evaluate", "main", "train"]

_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sot_questions" / "sot"
GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(9))  # 0.30 .. 0.70
CLASS_WEIGHTS = ("balanced", None)
SEED = 0


def _model(c: float, class_weight: str | None) -> Any:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    return LogisticRegression(C=c, class_weight=class_weight, max_iter=5000)


def _held_out(
    features: Any, labels: Any, c: float, class_weight: str | None, folds: int, repeats: int
) -> Any:
    """Out-of-fold probabilities, one row per repeat (a different shuffle each time)."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

    out = np.zeros((repeats, len(labels)))
    for repeat in range(repeats):
        splitter = StratifiedKFold(folds, shuffle=True, random_state=SEED + repeat)
        for fit, test in splitter.split(features, labels):
            model = _model(c, class_weight).fit(features[fit], labels[fit])
            out[repeat, test] = model.predict_proba(features[test])[:, 1]
    return out


def _scores(held_out: Any, labels: Any, guarded: Any, threshold: float) -> dict[str, float]:
    """Mean over repeats of the guarded router's accuracy and balanced accuracy, and ROC AUC."""
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score  # type: ignore[import-untyped]

    routed = [(row >= threshold) & ~guarded for row in held_out]
    return {
        "accuracy": round(float(np.mean([(r == labels).mean() for r in routed])), 4),
        "balanced_accuracy": round(float(np.mean([balanced_accuracy_score(labels, r) for r in routed])), 4),
        "roc_auc": round(float(np.mean([roc_auc_score(labels, row) for row in held_out])), 4),
    }


def cross_validate(
    vectors: Any,
    labels: Any,
    texts: list[str],
    *,
    grid: tuple[float, ...] = GRID,
    folds: int = 10,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """Every candidate (cues or not, class weight, C, threshold) with its cross-validated scores."""
    import numpy as np

    labels = np.asarray(labels)
    guarded = np.array([maths_or_code(t) is not None for t in texts])
    designs = {0: vectors, VERSION: np.hstack([vectors, lexical_features(texts)])}
    rows = []
    for (lexical, design), class_weight, c in itertools.product(designs.items(), CLASS_WEIGHTS, grid):
        held_out = _held_out(design, labels, c, class_weight, folds, repeats)
        for threshold in THRESHOLDS:
            scores = _scores(held_out, labels, guarded, threshold)
            rows.append(
                {"lexical": lexical, "class_weight": class_weight, "C": c, "threshold": threshold, **scores}
            )
    return rows


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max(rows, key=lambda r: (r["accuracy"], r["balanced_accuracy"], r["roc_auc"]))


def train(
    vectors: Any,
    labels: Any,
    texts: list[str],
    *,
    grid: tuple[float, ...] = GRID,
    folds: int = 10,
    repeats: int = 3,
) -> RouterWeights:
    """Choose the candidate by cross-validation, refit it on everything, return it with its scores."""
    import numpy as np

    labels = np.asarray(labels)
    rows = cross_validate(vectors, labels, texts, grid=grid, folds=folds, repeats=repeats)
    best = _best(rows)
    design = vectors if not best["lexical"] else np.hstack([vectors, lexical_features(texts)])
    model = _model(best["C"], best["class_weight"]).fit(design, labels)
    at_half = [r for r in rows if r["threshold"] == 0.5]
    meta = {
        "model": f"logistic regression, class_weight={best['class_weight']}",
        "features": "all-MiniLM-L6-v2" + (f" + lexical cues v{best['lexical']}" if best["lexical"] else ""),
        "embedder": "all-MiniLM-L6-v2",
        "trained_on": "imagination-research/sot data/lima/router.csv",
        "examples": len(labels),
        "positives": int(labels.sum()),
        "C": best["C"],
        "chosen_by": "LIMA cross-validated accuracy of the guarded router (ties: balanced accuracy, AUC)",
        "cv": {
            "folds": folds,
            "repeats": repeats,
            "seed": SEED,
            "chosen": best,
            "vector_alone_best": _best([r for r in rows if not r["lexical"]]),
            "at_threshold_0.5": at_half,
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    return RouterWeights(model.coef_[0], float(model.intercept_[0]), best["threshold"], meta, best["lexical"])


def evaluate(weights: RouterWeights, vectors: Any, labels: Any, texts: list[str]) -> dict[str, float]:
    """Accuracy (with and without the guard), balanced accuracy and ROC AUC on held-out labels."""
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score  # type: ignore[import-untyped]

    labels = np.asarray(labels)
    probabilities = weights.probabilities(vectors, texts)
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
    cv = weights.meta["cv"]
    print(f"trained on {len(texts)} LIMA requests; {weights.meta['features']}; {weights.meta['model']}")
    print(f"chosen by LIMA CV: {cv['chosen']}")
    print(f"best without the lexical cues: {cv['vector_alone_best']}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    if args.vicuna.exists():
        held_texts, held_labels = read_router_csv(args.vicuna)
        scores = evaluate(weights, embedder.embed(held_texts), held_labels, held_texts)
        print("Vicuna-80 (never trained or tuned on):", scores)


if __name__ == "__main__":
    main()
