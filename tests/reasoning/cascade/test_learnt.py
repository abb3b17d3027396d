"""The learnt scorer on real GSM8K answers: file round trip, beats random on held-back rows, CLI."""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import numpy as np
import pytest

from tokenlean.errors import ConfigError
from tokenlean.middleware.types import Choice, Message, Request, Response
from tokenlean.reasoning.cascade import (
    Cascade,
    CascadeStage,
    LearntScorer,
    choose_threshold,
    threshold_curve,
    train_from_csv,
)
from tokenlean.reasoning.cascade.cli import add_cascade_commands
from tokenlean.reasoning.cascade.learnt import read_labelled_csv

CHEAP, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def split_csv(source: Path, folder: Path, train_rows: int, test_rows: int) -> tuple[Path, Path]:
    """The RouteLLM rows as training CSVs (question, answer, correct, strong_correct), fixed-seed split."""
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    random.Random(7).shuffle(rows)
    paths = []
    for name, part in (("train", rows[:train_rows]), ("test", rows[train_rows : train_rows + test_rows])):
        path = folder / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["question", "answer", "correct", "strong_correct"])
            writer.writerows([r["prompt"], r[CHEAP + "_response"], r[CHEAP], r[STRONG]] for r in part)
        paths.append(path)
    return paths[0], paths[1]


def auc(scores: np.ndarray, labels: list[bool]) -> float:
    """Probability that a correct answer outscores a wrong one (ties count half)."""
    pos, neg = scores[np.array(labels)], scores[~np.array(labels)]
    return float(
        ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
        / (len(pos) * len(neg))
    )


def test_round_trip_and_beats_random_on_held_back_rows(gsm8k_csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    train, test = split_csv(gsm8k_csv, tmp_path, 560, 240)
    model = train_from_csv(train, tmp_path / "scorer.npz", embed=False)
    questions, answers, labels = read_labelled_csv(test)
    _, _, strong = read_labelled_csv(test, correct="strong_correct")
    scorer = LearntScorer(path=tmp_path / "scorer.npz")
    from tokenlean.reasoning.cascade.learnt import featurise

    before = model.predict(featurise(questions, answers, None)[0])
    after = scorer.confidences(questions, answers)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-12)  # same scores after the file round trip
    assert auc(after, labels) > 0.7  # random ranks at 0.5 (measured: about 0.8)
    curve = threshold_curve(list(after), labels, strong)
    at_third = min(curve, key=lambda p: abs(p.escalated - 0.3))
    random_quality = np.mean(labels) + at_third.escalated * (np.mean(strong) - np.mean(labels))
    assert at_third.quality > random_quality + 0.04


async def test_scores_a_request_with_embeddings_after_reload(gsm8k_csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The vector path with the real MiniLM: trained, saved, reloaded, same scores, usable as a scorer."""
    train, test = split_csv(gsm8k_csv, tmp_path, 40, 4)
    model = train_from_csv(train, tmp_path / "scorer.npz", embed=True, components=4)
    assert model.uses_vectors
    questions, answers, _ = read_labelled_csv(test)
    scorer = LearntScorer(path=tmp_path / "scorer.npz")
    await CascadeStage({"c": Cascade("c", (), scorer)}).warm_up()  # scores one pair: the vector path runs
    from tokenlean.embeddings import shared_embedder
    from tokenlean.reasoning.cascade.learnt import featurise

    features, vectors = featurise(questions, answers, shared_embedder())
    np.testing.assert_allclose(
        scorer.confidences(questions, answers), model.predict(features, vectors), atol=1e-9
    )
    request = Request(messages=(Message("user", questions[0]),))
    score = await scorer.score(request, Response(choices=(Choice(0, answers[0]),)))
    # one text alone is embedded without batch padding: equal up to float32 rounding
    assert score == pytest.approx(float(model.predict(features[:1], vectors[:1])[0]), abs=1e-5)


def test_a_file_of_another_format_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.npz"
    np.savez(bad.open("wb"), metadata=np.array('{"format": "something-else"}'))
    with pytest.raises(ConfigError):
        LearntScorer(path=bad)
    with pytest.raises(ConfigError):
        LearntScorer(path=tmp_path / "missing.npz")


def test_cli_train_and_thresholds(gsm8k_csv, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    train, test = split_csv(gsm8k_csv, tmp_path, 400, 200)
    parser = argparse.ArgumentParser(prog="tokenlean")
    add_cascade_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["cascade", "train", str(train), "--out", str(tmp_path / "s.npz"), "--no-embed"])
    assert args.handler(args) == 0
    assert "cross-validated AUC" in capsys.readouterr().out and (tmp_path / "s.npz").exists()

    def thresholds(*flags: str) -> int:
        scored = ["cascade", "thresholds", str(test), "--scorer", str(tmp_path / "s.npz")]
        args = parser.parse_args([*scored, "--strong-correct", "strong_correct", *flags])
        return int(args.handler(args))

    costs = ("--cheap-cost", "0.0002", "--strong-cost", "0.006")
    assert thresholds("--quality-ratio", "0.95", *costs) == 0
    out = capsys.readouterr().out
    assert "| threshold | escalated | accuracy |" in out and "chosen: threshold" in out
    assert thresholds("--quality", "0.999") == 2  # out of reach: GPT-4 itself is not that accurate


def test_threshold_targets() -> None:
    scores = [0.1, 0.2, 0.2, 0.9]
    curve = threshold_curve(scores, [False, False, True, True], [True, True, True, False], strong_cost=1.0)
    assert [p.escalated for p in curve] == [0.0, 0.25, 0.75, 1.0]
    assert [p.quality for p in curve] == [0.5, 0.75, 1.0, 0.75]
    best = choose_threshold(curve, min_quality=0.9)
    assert best.threshold == 0.9 and best.escalated == 0.75  # escalate the scores below 0.9
    assert choose_threshold(curve, max_escalated=0.5).quality == 0.75
    assert choose_threshold(curve, max_cost=2.0).quality == 1.0
    with pytest.raises(ConfigError):
        choose_threshold(curve, min_quality=1.01)
