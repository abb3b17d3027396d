"""``tokenlean cascade train`` and ``tokenlean cascade thresholds``: the scorer's offline half.

``train`` fits the learnt scorer on a CSV of (question, cheap answer, correct) and writes the file
a pipeline spec names (``scorer: {type: learnt, path: ...}``). ``thresholds`` scores labelled
validation rows, prints the cost/quality curve and the threshold that meets a target ("quality
target at least cost" with ``--quality``/``--quality-ratio``, or "maximise quality within a
budget" with ``--max-cost``/``--max-escalated``). ``add_cascade_commands`` plugs both into the
main ``argparse`` parser; each sub-command sets ``handler`` (and ``func``): ``args.handler(args)`` returns the exit code.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from tokenlean.errors import ConfigError, TokenleanError

__all__ = ["add_cascade_commands", "run_thresholds", "run_train"]


def add_cascade_commands(subparsers: Any) -> None:
    """Add ``cascade train`` and ``cascade thresholds`` to the CLI's sub-parsers."""
    parser = subparsers.add_parser("cascade", help="FrugalGPT cascades: train a scorer, choose thresholds")
    commands = parser.add_subparsers(dest="cascade_command", required=True)
    train = commands.add_parser("train", help="train the learnt scorer from a labelled CSV")
    train.add_argument("csv", type=Path, help="CSV with columns question, answer, correct")
    train.add_argument("--out", type=Path, required=True, help="scorer file to write (.npz)")
    train.add_argument("--no-embed", action="store_true", help="answer features only (no MiniLM vectors)")
    train.add_argument("--components", type=int, default=8, help="PCA components of the vectors (default 8)")
    train.add_argument("--c", type=float, default=0.1, help="inverse regularisation of the regression")
    train.add_argument(
        "--cv", type=int, default=5, help="folds for the printed cross-validated AUC (0: skip)"
    )
    _column_arguments(train)
    train.set_defaults(func=run_train, handler=run_train)
    thresholds = commands.add_parser("thresholds", help="print the cost/quality curve and pick a threshold")
    thresholds.add_argument(
        "csv", type=Path, help="validation CSV: question, answer, correct (+ strong column)"
    )
    thresholds.add_argument("--scorer", type=Path, help="scorer file (else --score-column holds the scores)")
    thresholds.add_argument("--score-column", help="column with precomputed confidences")
    thresholds.add_argument("--strong-correct", help="column: was the next tier's answer correct")
    thresholds.add_argument("--cheap-cost", type=float, default=0.0, help="dollars per cheap call")
    thresholds.add_argument("--strong-cost", type=float, default=1.0, help="dollars per strong call")
    target = thresholds.add_mutually_exclusive_group(required=True)
    target.add_argument("--quality", type=float, help="reach this accuracy at least cost")
    target.add_argument("--quality-ratio", type=float, help="reach this share of the strong tier's accuracy")
    target.add_argument("--max-cost", type=float, help="best accuracy within this mean cost per call")
    target.add_argument("--max-escalated", type=float, help="best accuracy escalating at most this share")
    thresholds.add_argument("--points", type=int, default=15, help="curve rows to print")
    _column_arguments(thresholds)
    thresholds.set_defaults(func=run_thresholds, handler=run_thresholds)


def _column_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--question-column", default="question")
    parser.add_argument("--answer-column", default="answer")
    parser.add_argument("--correct-column", default="correct")


def run_train(args: argparse.Namespace) -> int:
    """Train, save, and print what was trained (and its cross-validated AUC)."""
    from tokenlean.reasoning.cascade.learnt import train_from_csv

    columns = (args.question_column, args.answer_column, args.correct_column)
    try:
        model = train_from_csv(
            args.csv, args.out, embed=not args.no_embed, components=args.components, c=args.c, columns=columns
        )
        auc = _cross_validated_auc(args, columns) if args.cv >= 2 else None
    except TokenleanError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    meta = model.metadata
    print(
        f"trained on {meta['rows']} rows ({meta['positive_rate']:.1%} correct), "
        f"embeddings: {'yes' if model.uses_vectors else 'no'}; wrote {args.out}"
    )
    if auc is not None:
        print(f"cross-validated AUC ({args.cv} folds): {auc:.3f}")
    return 0


def _cross_validated_auc(args: argparse.Namespace, columns: tuple[str, str, str]) -> float:
    import numpy as np
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    from tokenlean.reasoning.cascade.learnt import LearntModel, featurise, read_labelled_csv

    questions, answers, labels = read_labelled_csv(
        args.csv, question=columns[0], answer=columns[1], correct=columns[2]
    )
    embedder = None
    if not args.no_embed:
        from tokenlean.embeddings import shared_embedder

        embedder = shared_embedder()
    features, vectors = featurise(questions, answers, embedder)
    y = np.asarray(labels)
    scores = np.zeros(len(y))
    for train, test in StratifiedKFold(args.cv, shuffle=True, random_state=0).split(features, y):
        part = None if vectors is None else vectors[train]
        model = LearntModel.fit(features[train], part, y[train], components=args.components, c=args.c)
        scores[test] = model.predict(features[test], None if vectors is None else vectors[test])
    return float(roc_auc_score(y, scores))


def run_thresholds(args: argparse.Namespace) -> int:
    """Score the validation rows, print the curve, print the threshold meeting the target."""
    from tokenlean.reasoning.cascade.thresholds import choose_threshold, threshold_curve

    try:
        scores, cheap, strong = _validation_rows(args)
        curve = threshold_curve(
            scores, cheap, strong, cheap_cost=args.cheap_cost, strong_cost=args.strong_cost
        )
        quality = args.quality
        if args.quality_ratio is not None:
            if strong is None:
                raise ConfigError("--quality-ratio needs --strong-correct")
            quality = args.quality_ratio * sum(strong) / len(strong)
        chosen = choose_threshold(
            curve, min_quality=quality, max_cost=args.max_cost, max_escalated=args.max_escalated
        )
    except TokenleanError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    step = max(1, len(curve) // max(args.points, 1))
    rows = [*curve[::step], curve[-1]] if curve[-1] not in curve[::step] else curve[::step]
    print("| threshold | escalated | accuracy | cost per call |\n|---|---|---|---|")
    for point in rows:
        print(f"| {point.threshold:.4f} | {point.escalated:.1%} | {point.quality:.3f} | {point.cost:.6g} |")
    print(
        f"\nchosen: threshold {chosen.threshold:.4f} escalates {chosen.escalated:.1%}, "
        f"accuracy {chosen.quality:.3f}, cost per call {chosen.cost:.6g}"
    )
    print(f"spec: set `threshold: {chosen.threshold:.4f}` on the cheap tier")
    return 0


def _validation_rows(args: argparse.Namespace) -> tuple[list[float], list[bool], list[bool] | None]:
    from tokenlean.reasoning.cascade.learnt import LearntScorer, read_labelled_csv

    questions, answers, cheap = read_labelled_csv(
        args.csv, question=args.question_column, answer=args.answer_column, correct=args.correct_column
    )
    extra = _extra_columns(args.csv, [c for c in (args.score_column, args.strong_correct) if c])
    strong = [_flag(v) for v in extra[args.strong_correct]] if args.strong_correct else None
    if args.scorer is not None:
        scores = [float(s) for s in LearntScorer(path=args.scorer).confidences(questions, answers)]
    elif args.score_column:
        scores = [float(v) for v in extra[args.score_column]]
    else:
        raise ConfigError("give --scorer FILE or --score-column NAME")
    return scores, cheap, strong


def _extra_columns(path: Path, names: list[str]) -> dict[str, list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = [n for n in names if rows and n not in rows[0]]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {missing}")
    return {name: [row[name] for row in rows] for name in names}


def _flag(value: str) -> bool:
    return value.strip().lower() in {"true", "1", "yes", "y", "t", "correct"}
