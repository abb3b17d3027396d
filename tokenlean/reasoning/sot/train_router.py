"""Train the SoT router and write ``router.npz``: ``python -m tokenlean.reasoning.sot.train_router``.

The classifier is a logistic regression over the encoded requests of SoT's labelled sets
(``sot/<set>/router.csv``, 1 = suits a skeleton): by default the embedded chat model's hidden
state (``states.py``), ``--encoder minilm`` for the MiniLM sentence vector; optionally with
lexical cues appended (``features.py``). Features are standardised on the training requests and
the standardisation is folded into the written weights. The shipped router is trained on LIMA
and Vicuna-80 together; everything is chosen on held-out folds of the training requests alone
(10 folds stratified by set and label, repeated 3 times with different shuffles):

1. the design (cues or not, regularisation ``C``) by the held-out ROC AUC (ties: fewer features,
   stronger regularisation), i.e. by how well it *ranks*, which carries to other traffic better
   than a threshold does;
2. Platt calibration (``sigmoid(a * logit + b)``) fitted on the held-out logits;
3. the threshold: the lowest on ``THRESHOLDS`` from which the whole router (the maths/code/
   step-by-step guard in front) keeps held-out precision >= ``PRECISION`` at every higher one,
   because a wrong "yes" costs answer quality and a wrong "no" only the speed-up.

``--cross`` also runs the same procedure across data sets (train on LIMA, test on Vicuna-80;
train on Vicuna-80, test on LIMA): those are the figures for data the router was not tuned on.
The run is deterministic: rerunning it rewrites the same ``router.npz``. Needs scikit-learn
(training only; the shipped router runs on numpy).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenlean.reasoning.sot.features import VERSION, lexical_features
from tokenlean.reasoning.sot.router import (
    DEFAULT_WEIGHTS,
    MINILM,
    RouterWeights,
    encoder_for,
    maths_or_code,
    read_router_csv,
)
from tokenlean.reasoning.sot.states import ENCODING

if TYPE_CHECKING:
    from tokenlean.reasoning.sot.router import RequestEncoder

__all__ = [
    "DATA",
    "GRID",
    "PRECISION",
    "SETS",
    "THRESHOLDS",
    "Labelled",
    "cross_dataset",
    "cross_validate",
    "evaluate",
    "limits",
    "load_sets",
    "main",
    "outcome",
    "platt",
    "precise_threshold",
    "train",
    "train_on",
]

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sot_questions" / "sot"
SETS = ("lima", "vicuna")
GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50 .. 0.95
PRECISION = 0.85
ENCODERS = {"lm": ENCODING, "minilm": MINILM}
MIN_ROUTED = 10  # a threshold that routes fewer held-out requests (over all repeats) says nothing
SEED = 0


@dataclass(frozen=True, eq=False)
class Labelled:
    """One labelled set: its name, requests, 0/1 labels and their encoded vectors."""

    name: str
    texts: list[str]
    labels: Any
    vectors: Any


def load_sets(names: tuple[str, ...], embedder: RequestEncoder, root: Path = DATA) -> list[Labelled]:
    """SoT's ``router.csv`` of each named set, encoded."""
    import numpy as np

    sets = []
    for name in names:
        texts, labels = read_router_csv(root / name / "router.csv")
        sets.append(Labelled(name, texts, np.asarray(labels), embedder.embed(texts)))
    return sets


def _design(vectors: Any, texts: list[str], lexical: int) -> Any:
    import numpy as np

    return np.hstack([vectors, lexical_features(texts)]) if lexical else vectors


def _model(c: float) -> Any:
    """Standardised features, then the regression (its ``C`` means the same for any encoder)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))


def _folded(model: Any) -> tuple[Any, float]:
    """``(coef, intercept)`` on the raw features: the pipeline's standardisation folded in."""
    import numpy as np

    scaler, regression = model[0], model[-1]
    coef = regression.coef_[0] / scaler.scale_
    intercept = float(regression.intercept_[0] - np.dot(coef, scaler.mean_))
    return coef.astype(np.float32), intercept


def _held_out(features: Any, labels: Any, strata: Any, c: float, folds: int, repeats: int) -> Any:
    """Out-of-fold logits, one row per repeat (a different shuffle each time)."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros((repeats, len(labels)))
    for repeat in range(repeats):
        splitter = StratifiedKFold(folds, shuffle=True, random_state=SEED + repeat)
        for fit, test in splitter.split(features, strata):
            out[repeat, test] = _model(c).fit(features[fit], labels[fit]).decision_function(features[test])
    return out


def platt(logits: Any, labels: Any) -> tuple[float, float]:
    """Platt scaling: ``(a, b)`` of the 1-D logistic fit of ``labels`` on held-out ``logits``."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e6, max_iter=5000).fit(np.asarray(logits).reshape(-1, 1), labels)
    return round(float(fit.coef_[0, 0]), 6), round(float(fit.intercept_[0]), 6)


def outcome(routed: Any, labels: Any) -> dict[str, float]:
    """Accuracy, precision and recall of the SoT class, false-positive rate, share routed."""
    import numpy as np

    routed, labels = np.asarray(routed, dtype=bool), np.asarray(labels, dtype=bool)
    hits = int((routed & labels).sum())
    return {
        "accuracy": round(float((routed == labels).mean()), 4),
        "precision": round(hits / max(1, int(routed.sum())), 4),
        "recall": round(hits / max(1, int(labels.sum())), 4),
        "false_positive_rate": round(int((routed & ~labels).sum()) / max(1, int((~labels).sum())), 4),
        "routed": int(routed.sum()),
    }


def precise_threshold(probabilities: Any, labels: Any, guarded: Any, target: float) -> tuple[float, bool]:
    """The lowest threshold from which precision stays >= ``target`` at every higher one that
    routes at least ``MIN_ROUTED``; ``(highest threshold, False)`` if none reaches it."""
    chosen = None
    for threshold in reversed(THRESHOLDS):
        routed = (probabilities >= threshold) & ~guarded
        if routed.sum() < MIN_ROUTED:
            continue
        if outcome(routed, labels)["precision"] < target:
            break
        chosen = threshold
    return (chosen, True) if chosen is not None else (THRESHOLDS[-1], False)


def cross_validate(
    vectors: Any,
    labels: Any,
    texts: list[str],
    *,
    strata: Any = None,
    grid: tuple[float, ...] = GRID,
    folds: int = 10,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """Every design (cues or not, ``C``) with its mean held-out ROC AUC and its held-out logits."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    strata = labels if strata is None else np.asarray(strata)
    rows = []
    for lexical in (0, VERSION):
        design = _design(vectors, texts, lexical)
        for c in grid:
            logits = _held_out(design, labels, strata, c, folds, repeats)
            auc = float(np.mean([roc_auc_score(labels, row) for row in logits]))
            rows.append({"lexical": lexical, "C": c, "roc_auc": round(auc, 4), "logits": logits})
    return rows


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Highest AUC; ties (to 3 decimals): no cues, then the smaller ``C``."""
    return max(rows, key=lambda r: (round(r["roc_auc"], 3), -r["lexical"], -r["C"]))


def _held_out_curve(probabilities: Any, labels: Any, guarded: Any) -> list[dict[str, float]]:
    """The guarded router's held-out outcome at every threshold (all repeats pooled)."""
    return [{"threshold": t, **outcome((probabilities >= t) & ~guarded, labels)} for t in THRESHOLDS]


def train(
    vectors: Any,
    labels: Any,
    texts: list[str],
    *,
    strata: Any = None,
    precision: float = PRECISION,
    grid: tuple[float, ...] = GRID,
    folds: int = 10,
    repeats: int = 3,
    encoder: str = ENCODING,
) -> RouterWeights:
    """Choose the design, calibration and threshold on held-out folds; refit the design on everything.

    ``encoder`` names what ``vectors`` are (``states.ENCODING`` or ``router.MINILM``).
    """
    import numpy as np

    labels = np.asarray(labels)
    rows = cross_validate(vectors, labels, texts, strata=strata, grid=grid, folds=folds, repeats=repeats)
    best = _best(rows)
    scale, shift = platt(best["logits"].ravel(), np.tile(labels, repeats))
    probabilities = (1.0 / (1.0 + np.exp(-(scale * best["logits"] + shift)))).ravel()
    pooled_labels = np.tile(labels, repeats)
    guarded = np.tile([maths_or_code(t) is not None for t in texts], repeats)
    threshold, reached = precise_threshold(probabilities, pooled_labels, guarded, precision)
    model = _model(best["C"]).fit(_design(vectors, texts, best["lexical"]), labels)
    meta = {
        "model": "logistic regression, Platt-calibrated on held-out folds",
        "features": encoder + (f" + lexical cues v{best['lexical']}" if best["lexical"] else ""),
        "embedder": encoder,
        "examples": len(labels),
        "positives": int(labels.sum()),
        "C": best["C"],
        "precision_target": precision,
        "precision_reached": reached,
        "chosen_by": "held-out ROC AUC (design), Platt on held-out logits, threshold for held-out precision",
        "cv": {
            "folds": folds,
            "repeats": repeats,
            "seed": SEED,
            "candidates": [{k: v for k, v in r.items() if k != "logits"} for r in rows],
            "chosen": {"lexical": best["lexical"], "C": best["C"], "roc_auc": best["roc_auc"]},
            "at_threshold": {
                "threshold": threshold,
                **outcome((probabilities >= threshold) & ~guarded, pooled_labels),
            },
            "curve": _held_out_curve(probabilities, pooled_labels, guarded),
        },
    }
    coef, intercept = _folded(model)
    return RouterWeights(coef, intercept, threshold, meta, best["lexical"], (scale, shift), encoder)


def evaluate(weights: RouterWeights, vectors: Any, labels: Any, texts: list[str]) -> dict[str, Any]:
    """The whole router (guard in front) on labelled requests, against the majority baseline."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    probabilities = weights.probabilities(vectors, texts)
    classifier = probabilities >= weights.threshold
    guarded = np.array([maths_or_code(t) is not None for t in texts], dtype=bool)
    routed = classifier & ~guarded
    return {
        "examples": len(labels),
        "positives": int(labels.sum()),
        "threshold": round(weights.threshold, 4),
        **outcome(routed, labels),
        "majority_baseline": round(float(max(labels.mean(), 1 - labels.mean())), 4),
        "roc_auc": round(float(roc_auc_score(labels, probabilities)), 4),
        "accuracy_without_guard": round(float((classifier == labels).mean()), 4),
        "curve": [{"threshold": t, **outcome((probabilities >= t) & ~guarded, labels)} for t in THRESHOLDS],
    }


def limits(probabilities: Any, labels: Any, texts: list[str]) -> dict[str, Any]:
    """What no choice of threshold could beat with these scores: the best accuracy at any
    threshold (chosen on the test labels themselves, so an upper bound, not a result) and the
    precision of the 10 / 25 / 50 requests the router ranks highest (the guard in front)."""
    import numpy as np

    labels = np.asarray(labels, dtype=bool)
    guarded = np.array([maths_or_code(t) is not None for t in texts], dtype=bool)
    ranked = np.where(guarded, -np.inf, np.asarray(probabilities, dtype=np.float64))
    order = np.argsort(-ranked, kind="stable")
    best = max(float(((ranked >= t) == labels).mean()) for t in np.unique(ranked[np.isfinite(ranked)]))
    return {
        "best_accuracy_any_threshold": round(max(best, float((~labels).mean())), 4),
        "precision_of_top": {n: round(float(labels[order[:n]].mean()), 4) for n in (10, 25, 50)},
    }


def train_on(sets: list[Labelled], *, precision: float = PRECISION, **options: Any) -> RouterWeights:
    """``train`` on the union of ``sets``, folds stratified by set and label."""
    import numpy as np

    texts = [text for labelled in sets for text in labelled.texts]
    labels = np.concatenate([labelled.labels for labelled in sets])
    strata = np.concatenate([labelled.labels + 2 * i for i, labelled in enumerate(sets)])
    vectors = np.vstack([labelled.vectors for labelled in sets])
    weights = train(vectors, labels, texts, strata=strata, precision=precision, **options)
    weights.meta["trained_on"] = [f"imagination-research/sot data/{s.name}/router.csv" for s in sets]
    return weights


def cross_dataset(
    sets: list[Labelled], *, precision: float = PRECISION, **options: Any
) -> list[dict[str, Any]]:
    """Train on each set alone (everything chosen on its own folds), test on each of the others."""
    results = []
    for source in sets:
        weights = train_on([source], precision=precision, **options)
        for target in sets:
            if target is source:
                continue
            results.append(
                {
                    "train": source.name,
                    "test": target.name,
                    "design": weights.meta["features"],
                    "C": weights.meta["C"],
                    "calibration": list(weights.calibration),
                    "held_out_in_training": weights.meta["cv"]["at_threshold"],
                    "test_scores": evaluate(weights, target.vectors, target.labels, target.texts),
                    "limits": limits(
                        weights.probabilities(target.vectors, target.texts), target.labels, target.texts
                    ),
                }
            )
    return results


def main(argv: list[str] | None = None) -> None:
    """Train on the named sets (default LIMA + Vicuna-80), write the weights; ``--cross`` as well."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), help="names under sot_questions/sot/")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--precision", type=float, default=PRECISION, help="held-out precision target")
    parser.add_argument("--cross", action="store_true", help="also train on each set, test on the others")
    parser.add_argument("--encoder", choices=sorted(ENCODERS), default="lm", help="what the router reads")
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    args = parser.parse_args(argv)
    encoder = ENCODERS[args.encoder]
    sets = load_sets(tuple(args.sets), encoder_for(encoder), args.data)
    weights = train_on(sets, precision=args.precision, encoder=encoder)
    weights.save(args.out)
    cv = weights.meta["cv"]
    print(f"trained on {weights.meta['trained_on']}: {weights.meta['features']}, C={weights.meta['C']}")
    print(f"calibration (a, b) = {weights.calibration}; threshold {weights.threshold}")
    print(f"held out: {cv['at_threshold']} (precision target {args.precision})")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    if args.cross:
        for row in cross_dataset(sets, precision=args.precision, encoder=encoder):
            scores = {k: v for k, v in row["test_scores"].items() if k != "curve"}
            print(f"train {row['train']} -> test {row['test']}: {scores}")


if __name__ == "__main__":
    main()
