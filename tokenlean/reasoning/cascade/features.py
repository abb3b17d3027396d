"""Cheap answer features: signals a worked answer carries about its own correctness.

A cascade scorer sees the question and the cheap tier's answer, never the truth. Chain-of-thought
answers to arithmetic word problems (GSM8K) betray many of their own errors: a step whose
arithmetic is wrong (``20 + 80/2 = 55``), a final answer that no step computed, a non-integer
answer to a question about counts, an answer cut off mid-calculation, hedging ("assuming",
"rounded"), or numbers from the question that the working never uses. Each is cheap to check
with regular expressions and the safe arithmetic checks of ``arithmetic.py``.

Known failure mode: these features are tuned to worked numerical answers. On free-text tasks most
of them are constant (no equations, no final number) and the learnt scorer falls back on the
embedding and length features; a wrong method with correct arithmetic passes every check.
"""

from __future__ import annotations

import math
import re

from tokenlean.reasoning.cascade.arithmetic import (
    ANNOTATION,
    ANY_NUMBER,
    FINAL_MARKER,
    NUMBER,
    Equation,
    check_equations,
    close,
    equations,
    final_number,
    safe_eval,
    to_number,
)

__all__ = ["FEATURE_NAMES", "answer_features", "check_equations", "final_number"]

_HEDGES = re.compile(
    r"\b(assum\w*|approximately|about|rounded|round(?:ing)?|estimate\w*|however|but|wait|"
    r"actually|not possible|cannot|can't|impossible|unclear|mistake|incorrect|recalculate)\b",
    re.IGNORECASE,
)
_WORD_NUMBERS = {
    "half": 0.5,
    "twice": 2,
    "double": 2,
    "triple": 3,
    "dozen": 12,
    "quarter": 0.25,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "hundred": 100,
    "thousand": 1000,
}
FEATURE_NAMES: tuple[str, ...] = (
    "has_final_marker",
    "final_missing",
    "final_is_integer",
    "final_is_negative",
    "final_log_magnitude",
    "final_has_trailing_text",
    "final_in_results",
    "final_equals_last_result",
    "final_in_question",
    "equations",
    "equations_wrong",
    "equations_wrong_share",
    "equations_unparsed",
    "max_relative_error",
    "annotation_shown_mismatch",
    "truncated",
    "question_numbers",
    "question_numbers_used",
    "question_numbers_unused",
    "answer_numbers",
    "hedges",
    "lines",
    "answer_chars_log",
    "question_chars_log",
    "non_integer_results",
    "rounding_in_results",
    "ungrounded_operands",
    "dangling_results",
    "last_step_has_equation",
    "target_in_conclusion",
    "relations_unapplied",
    "verbal_lines",
)
# Relation words of a question and the operands that apply them ("half" -> / 2 or * 0.5).
_RELATIONS = {
    r"\bhalf\b": (2.0, 0.5),
    r"\b(?:twice|double)\b": (2.0,),
    r"\btriple\b|\bthree times\b": (3.0,),
    r"\bthird\b": (3.0, 1 / 3),
    r"\bquarter\b": (4.0, 0.25),
    r"%|\bpercent\b": (100.0,),
}
# Constants a worked answer may bring in without the question stating them (units, percent, time).
_COMMON_CONSTANTS = (0.5, 1, 2, 3, 4, 7, 10, 12, 24, 30, 52, 60, 100, 365, 1000)


def _question_numbers(question: str) -> set[float]:
    found = {n for n in (to_number(t) for t in ANY_NUMBER.findall(question)) if n is not None}
    found |= {
        value for word, value in _WORD_NUMBERS.items() if re.search(rf"\b{word}\b", question, re.IGNORECASE)
    }
    return found


def _used(number: float, answer_numbers: set[float], results: list[float]) -> bool:
    return any(close(number, a) for a in answer_numbers) or any(close(number, r) for r in results)


def answer_features(question: str, answer: str) -> list[float]:
    """The feature vector of one (question, answer) pair, in ``FEATURE_NAMES`` order."""
    values = _final_features(question, answer)
    values.update(_equation_features(answer))
    values.update(_coverage_features(question, answer))
    values.update(_shape_features(question, answer))
    values.update(_grounding_features(question, answer))
    return [float(values[name]) for name in FEATURE_NAMES]


def _final_features(question: str, answer: str) -> dict[str, float]:
    marker = FINAL_MARKER.search(answer)
    final = final_number(answer)
    pairs = check_equations(answer)
    stated = [s for _, s in pairs]
    tail = answer[marker.end() :].strip() if marker else ""
    missing = final is None
    return {
        "has_final_marker": float(marker is not None),
        "final_missing": float(missing),
        "final_is_integer": float(final is not None and abs(final - round(final)) < 1e-9),
        "final_is_negative": float(final is not None and final < 0),
        "final_log_magnitude": 0.0 if final is None else math.log10(1 + abs(final)),
        "final_has_trailing_text": float(bool(re.search(r"[A-Za-z]", tail.split("\n")[0]))),
        "final_in_results": float(final is not None and any(close(final, s) for s in stated)),
        "final_equals_last_result": float(bool(stated) and final is not None and close(final, stated[-1])),
        "final_in_question": float(not missing and any(close(final, q) for q in _question_numbers(question))),  # type: ignore[arg-type]
    }


def _equation_features(answer: str) -> dict[str, float]:
    pairs = check_equations(answer)
    wrong = [(c, s) for c, s in pairs if not close(c, s)]
    errors = [abs(c - s) / max(abs(s), 1e-9) for c, s in pairs]
    annotations = ANNOTATION.findall(answer)
    annotated = len(annotations)
    unparsed = sum(1 for expr, res in annotations if safe_eval(expr) is None or safe_eval(res) is None)
    shown = re.findall(r"<<[^<>=]*=([^<>]*)>>\s*\$?(" + NUMBER + ")?", answer)
    mismatch = sum(
        1
        for res, after in shown
        if after and safe_eval(res) is not None and not close(safe_eval(res) or 0.0, to_number(after) or 0.0)
    )
    stated = [s for _, s in pairs]
    return {
        "equations": float(len(pairs)),
        "equations_wrong": float(len(wrong)),
        "equations_wrong_share": len(wrong) / len(pairs) if pairs else 0.0,
        "equations_unparsed": float(answer.count("<<") - annotated + unparsed),
        "max_relative_error": min(max(errors, default=0.0), 10.0),
        "annotation_shown_mismatch": float(mismatch),
        "non_integer_results": float(sum(1 for s in stated if abs(s - round(s)) > 1e-9)),
        "rounding_in_results": float(sum(1 for c, s in pairs if c != s and close(c, s))),
    }


def _coverage_features(question: str, answer: str) -> dict[str, float]:
    in_question = _question_numbers(question)
    answer_numbers = {n for n in (to_number(t) for t in ANY_NUMBER.findall(answer)) if n is not None}
    answer_numbers |= _question_numbers(answer) & in_question
    results = [s for _, s in check_equations(answer)]
    used = sum(1 for q in in_question if _used(q, answer_numbers, results))
    return {
        "question_numbers": float(len(in_question)),
        "question_numbers_used": used / len(in_question) if in_question else 1.0,
        "question_numbers_unused": float(len(in_question) - used),
        "answer_numbers": float(len(answer_numbers)),
    }


def _shape_features(question: str, answer: str) -> dict[str, float]:
    stripped = answer.rstrip()
    truncated = stripped.count("<<") > stripped.count(">>") or not re.search(r"[.!)\d\w]\W*$", stripped)
    return {
        "truncated": float(truncated),
        "hedges": float(len(_HEDGES.findall(answer))),
        "lines": float(len([line for line in answer.splitlines() if line.strip()])),
        "answer_chars_log": math.log1p(len(answer)),
        "question_chars_log": math.log1p(len(question)),
    }


def _grounding_features(question: str, answer: str) -> dict[str, float]:
    """Does the working follow from the question, and the conclusion from the working?"""
    found = equations(answer)
    known = list(_question_numbers(question)) + list(_COMMON_CONSTANTS)
    ungrounded = 0
    for i, equation in enumerate(found):
        earlier = [e.stated for e in found[:i]] + [e.computed for e in found[:i]]
        ungrounded += sum(1 for x in equation.operands if not any(close(x, k) for k in (*known, *earlier)))
    final = final_number(answer)
    dangling = 0
    for i, equation in enumerate(found[:-1]):
        later = [x for e in found[i + 1 :] for x in e.operands]
        if not any(close(equation.stated, x) for x in later) and not (
            final is not None and close(equation.stated, final)
        ):
            dangling += 1
    steps = [line for line in answer.split("####")[0].splitlines() if line.strip()]
    return {
        "ungrounded_operands": float(ungrounded),
        "dangling_results": float(dangling),
        "last_step_has_equation": float(bool(steps) and "=" in steps[-1]),
        "target_in_conclusion": _target_in_conclusion(question, steps[-1] if steps else ""),
        "relations_unapplied": float(_relations_unapplied(question, found)),
        "verbal_lines": float(sum(1 for line in steps if not re.search(r"\d", line))),
    }


def _relations_unapplied(question: str, found: list[Equation]) -> int:
    """Relation words in the question ("half", "twice", "20%") that no equation applies."""
    operands = [x for e in found for x in e.operands]
    fractions = any(0 < x < 1 for x in operands)
    missing = 0
    for pattern, values in _RELATIONS.items():
        if re.search(pattern, question, re.IGNORECASE):
            applied = any(close(x, v) for x in operands for v in values) or (values == (100.0,) and fractions)
            missing += not applied
    return missing


def _target_in_conclusion(question: str, conclusion: str) -> float:
    """Share of the words the question asks for ("how many *pairs of legs*") the conclusion names."""
    match = re.search(
        r"how (?:many|much)\s+([a-z][a-z\s-]{0,40}?)(?:\s+(?:do|does|did|is|are|was|were|will|can|"
        r"could|would|should|has|have|had|in|on|at|for|of|per|to|from|if|after|before)\b|[?,.])",
        question,
        re.IGNORECASE,
    )
    if not match:
        return 1.0
    words = [w for w in re.findall(r"[a-z]+", match.group(1).lower()) if len(w) > 2]
    if not words:
        return 1.0
    text = conclusion.lower()
    return sum(1 for w in words if w.rstrip("s") in text) / len(words)
