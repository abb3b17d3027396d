"""Arithmetic checks on a worked answer: every ``expression = result`` it claims, and its final number.

Used by the cheap answer features (``features.py``) and the agreement scorer. Expressions are
evaluated by walking Python's ``ast`` with numbers and + - * / ** only, never with ``eval``: the
text comes from a model. Known failure mode: notation the parser does not read (units inside an
expression, "2/3 of 60", words as numbers) is skipped, not judged, so an error written that way
goes unnoticed.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
import re
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "ANNOTATION",
    "ANY_NUMBER",
    "FINAL_MARKER",
    "NUMBER",
    "Equation",
    "check_equations",
    "close",
    "equations",
    "final_number",
    "safe_eval",
    "to_number",
]

NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
FINAL_MARKER = re.compile(r"####\s*\$?\s*(" + NUMBER + r")")
ANY_NUMBER = re.compile(NUMBER)
# An inline chain "a + b = c = d": expression characters (no letters) joined by "=" signs.
_CHAIN = re.compile(
    r"[\d.+\-*/÷()$%^ \t]*\d[\d.+\-*/÷()$%^ \t]*(?:=[\d.+\-*/÷()$%^ \t]*\d[\d.+\-*/÷()$%^ \t]*)+"
)
_OPERATOR = re.compile(r"\d\s*\)?\s*[-+*/÷^]\s*\(?\s*\$?\d")
_OPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def safe_eval(expression: str) -> float | None:
    """Evaluate arithmetic ``expression`` (numbers, + - * / ** and brackets); ``None`` if it is not that.

    Never ``eval``: the text comes from a model's answer.
    """
    text = _normalise_expression(expression)
    if not text or len(text) > 200:
        return None
    try:
        tree = ast.parse(text, mode="eval")
        value = _eval_node(tree.body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError, RecursionError):
        return None
    return value if value is not None and math.isfinite(value) else None


def _normalise_expression(expression: str) -> str:
    text = expression.replace("\\*", "*").replace("×", "*").replace("÷", "/").replace("^", "**")
    text = text.replace("$", "").replace(",", "").strip()
    text = re.sub(r"(?<=[\d)])\s*x\s*(?=[\d(])", "*", text)  # "3 x 4" is multiplication
    text = re.sub(r"(\d+(?:\.\d+)?)%", r"(\1/100)", text)
    return text


def _eval_node(node: ast.AST) -> float | None:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval_node(node.operand)
        return None if value is None else (-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval_node(node.left), _eval_node(node.right)
        if left is None or right is None or (isinstance(node.op, ast.Pow) and abs(right) > 12):
            return None
        return _OPS[type(node.op)](left, right)
    return None


def to_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def close(a: float, b: float) -> bool:
    """Equal up to the rounding a worked answer shows (2 decimals, or 1% for large values)."""
    return abs(a - b) <= max(0.011, 0.01 * abs(b))


class Equation(NamedTuple):
    """One arithmetic claim in an answer: the numbers it used, what it computes, what it states."""

    operands: tuple[float, ...]
    computed: float
    stated: float


def equations(answer: str) -> list[Equation]:
    """Every checkable equation in ``answer``, in order.

    Covers GSM8K calculator annotations ``<<a*b=c>>`` and inline chains ``a + b = c + d = e``
    (each link of a chain is one claim; a link needs an operator on one side to be a claim).
    """
    found: list[tuple[int, Equation]] = []
    for match in ANNOTATION.finditer(answer):
        computed, stated = safe_eval(match.group(1)), safe_eval(match.group(2))
        if computed is not None and stated is not None:
            found.append((match.start(), Equation(_operands(match.group(1)), computed, stated)))
    plain = _plain_arithmetic(answer)  # same length as ``answer`` up to the substitutions: order only
    for chain in _CHAIN.finditer(plain):
        segments = [_trim(part) for part in chain.group(0).split("=")]
        for left, right in itertools.pairwise(segments):
            if not (_OPERATOR.search(left) or _OPERATOR.search(right)):
                continue
            pair = _link(left, right)
            if pair is not None:
                found.append((chain.start(), Equation(_operands(left), *pair)))
    return [equation for _, equation in sorted(found, key=lambda item: item[0])]


def check_equations(answer: str) -> list[tuple[float, float]]:
    """(computed, stated) for every equation in ``answer``: unequal means wrong arithmetic."""
    return [(e.computed, e.stated) for e in equations(answer)]


def _operands(expression: str) -> tuple[float, ...]:
    numbers = (to_number(t) for t in ANY_NUMBER.findall(_normalise_expression(expression).replace("-", " ")))
    return tuple(n for n in numbers if n is not None)


def _plain_arithmetic(answer: str) -> str:
    """The answer without annotations, with ``x``/``×``/``\\*`` as ``*`` and no thousands commas."""
    text = ANNOTATION.sub(lambda m: " " * len(m.group(0)), answer).replace("\\*", " *")
    text = re.sub(r"(?<=[\d)])\s*[x×]\s*(?=[\d($])", " * ", text)
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)


def _trim(segment: str) -> str:
    text = segment.strip().rstrip(".").strip()
    while text and text[0] in "+*/)÷^.":
        text = text[1:].strip()
    while text and text[-1] in "+-*/(÷^.":
        text = text[:-1].strip()
    while text.count("(") > text.count(")") and text.startswith("("):
        text = text[1:].strip()
    while text.count(")") > text.count("(") and text.endswith(")"):
        text = text[:-1].strip()
    return text


def _link(left: str, right: str) -> tuple[float, float] | None:
    """(computed, stated) for one link; a percent sign may mean /100 or be decoration."""
    computed, stated = safe_eval(left), safe_eval(right)
    if computed is None or stated is None:
        return None
    leading = ANY_NUMBER.match(right.lstrip("($ "))
    if _OPERATOR.search(right) and leading and close(computed, to_number(leading.group(0)) or math.nan):
        return None  # "12 * 2 = 24 + 1 = 25": the working goes on from the result, not a claim
    if not close(computed, stated) and "%" in left + right:
        bare_left, bare_right = safe_eval(left.replace("%", "")), safe_eval(right.replace("%", ""))
        for c, s in ((bare_left, stated), (computed, bare_right), (bare_left, bare_right)):
            if c is not None and s is not None and close(c, s):
                return c, s
    return computed, stated


def final_number(answer: str) -> float | None:
    """The answer's final number: after ``####`` if present, else the last number in the text."""
    match = FINAL_MARKER.search(answer)
    if match:
        return to_number(match.group(1))
    numbers = ANY_NUMBER.findall(ANNOTATION.sub(" ", answer))
    return to_number(numbers[-1]) if numbers else None
