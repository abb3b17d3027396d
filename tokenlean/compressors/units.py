"""Units of deletion: words and spans, so a compressed prompt never holds half a word.

LLMLingua decides per token, which cuts names and numbers mid-way ("Röntgen" becomes "Rönt"),
and LongLLMLingua repairs that afterwards by restoring the whole word (its subsequence recovery).
Here the repair is built in: tokens are scored one by one, but the unit kept or dropped is a
whitespace-delimited word with its leading whitespace, scored by its most informative token;
optionally a run of capitalised words (a name) or a number is one unit. Protected spans (the
caller's strings, and optionally every number or name) are units that are never dropped.

Known failure mode: "words" are whitespace-delimited, so scripts written without spaces (Chinese,
Japanese) form one unit per run of text and can only be kept or dropped whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["Piece", "SpanRules", "Unit", "build_piece"]

_WORD = re.compile(r"\s*\S+")
_NUMBER = re.compile(r"[-+$€£]?\d(?:[\d,.:/]*\d)?%?")
_CAPITALISED = re.compile(r"^\W*[A-Z0-9À-Þ]")
_SENTENCE_END = re.compile(r"[.!?:;)\]]['\"”’]?$")
_CONNECTORS = frozenset(
    {"of", "de", "du", "la", "le", "von", "van", "der", "den", "da", "di", "and", "the", "&"}
)


@dataclass(frozen=True, slots=True)
class SpanRules:
    """Which spans are units of their own and which are never dropped."""

    protect: tuple[str, ...] = ()
    protect_numbers: bool = False
    protect_entities: bool = False
    group_entities: bool = True


@dataclass(frozen=True, slots=True)
class Unit:
    """A span of a piece's text (leading whitespace included) and the tokens inside it."""

    start: int
    end: int
    first_token: int
    end_token: int
    protected: bool = False
    numeric: bool = False

    @property
    def tokens(self) -> int:
        """How many scorer tokens this unit costs."""
        return self.end_token - self.first_token


@dataclass(frozen=True, slots=True)
class Piece:
    """One part of the prompt (instruction, a block, the question) in scorer tokens and units."""

    text: str
    ids: tuple[int, ...]
    units: tuple[Unit, ...]

    @property
    def tokens(self) -> int:
        """Scorer tokens in the piece."""
        return len(self.ids)

    @property
    def protected_tokens(self) -> int:
        """Scorer tokens in protected units: the least this piece can be compressed to."""
        return sum(u.tokens for u in self.units if u.protected)

    def render(self, keep: Sequence[bool] | np.ndarray) -> str:
        """The text of the kept units (``keep`` is per unit), without leading whitespace."""
        return "".join(self.text[u.start : u.end] for u, k in zip(self.units, keep, strict=True) if k).strip()

    def unit_scores(self, token_scores: np.ndarray) -> np.ndarray:
        """Each unit's score: its most informative token (NaN scores count as +inf)."""
        filled = np.where(np.isnan(token_scores), np.inf, token_scores)
        return np.array(
            [filled[u.first_token : u.end_token].max() if u.tokens else -np.inf for u in self.units]
        )


def build_piece(text: str, ids: Sequence[int], offsets: Sequence[tuple[int, int]], rules: SpanRules) -> Piece:
    """Split ``text`` into units and attach each scorer token to the unit its first character is in."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    groups = _merge(words, _span_groups(text, words, rules))
    starts = [g[0] for g in groups]
    token_unit = []
    for start, end in offsets:
        position = start if end > start else max(start - 1, 0)
        token_unit.append(max(0, _bisect_right(starts, position) - 1))
    units = []
    token = 0
    for index, (start, end, protected) in enumerate(groups):
        first = token
        while token < len(token_unit) and token_unit[token] == index:
            token += 1
        units.append(Unit(start, end, first, token, protected, any(ch.isdigit() for ch in text[start:end])))
    if token < len(ids):  # tokens past the last word (trailing whitespace): attach to the last unit
        last = units[-1] if units else Unit(0, len(text), 0, 0)
        units[-1:] = [replace(last, end_token=len(ids))]
    return Piece(text, tuple(ids), tuple(units))


def _bisect_right(values: list[int], x: int) -> int:
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < values[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _span_groups(text: str, words: list[tuple[int, int]], rules: SpanRules) -> list[tuple[int, int, bool]]:
    """Character spans that must be one unit, each with whether it is protected."""
    spans: list[tuple[int, int, bool]] = []
    for phrase in rules.protect:
        if phrase:
            spans += [(m.start(), m.end(), True) for m in re.finditer(re.escape(phrase), text)]
    for m in _NUMBER.finditer(text):
        spans.append((m.start(), m.end(), rules.protect_numbers))
    if rules.group_entities or rules.protect_entities:
        spans += [(s, e, rules.protect_entities) for s, e in _entities(text, words)]
    return spans


def _entities(text: str, words: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs of capitalised words ("Georg Philipp Telemann", "University of Paris")."""
    runs: list[tuple[int, int]] = []
    current: list[tuple[int, int]] = []
    for start, end in words:
        word = text[start:end].strip()
        capital = bool(_CAPITALISED.match(word))
        if capital or (current and word.lower() in _CONNECTORS):
            current.append((start, end))
            if _SENTENCE_END.search(word) and len(word.strip(".")) > 2:  # "J." or "St." do not end a name
                runs.append(_trim(current, text))
                current = []
            continue
        if current:
            runs.append(_trim(current, text))
            current = []
    if current:
        runs.append(_trim(current, text))
    return [run for run in runs if run[1] > run[0]]


def _trim(run: list[tuple[int, int]], text: str) -> tuple[int, int]:
    while run and text[run[-1][0] : run[-1][1]].strip().lower() in _CONNECTORS:
        run = run[:-1]
    if len(run) < 2:
        return (0, 0)  # a single capitalised word is already one unit
    return (run[0][0], run[-1][1])


def _merge(words: list[tuple[int, int]], spans: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    """Words, with every word that overlaps a span merged into one unit (protected if any span is)."""
    units: list[list[int | bool]] = [[s, e, False] for s, e in words]
    if not units:
        return []
    starts = [w[0] for w in words]
    parent = list(range(len(units)))
    for start, end, protected in spans:
        first = max(0, _bisect_right(starts, start) - 1)
        if words[first][1] <= start and first + 1 < len(words):
            first += 1
        last = max(first, _bisect_right(starts, max(start, end - 1)) - 1)
        for i in range(first, last + 1):
            parent[i] = parent[first]
            units[i][2] = bool(units[i][2]) or protected
    merged: list[tuple[int, int, bool]] = []
    for i, (start, end, flag) in enumerate(units):
        if merged and parent[i] != i:  # groups are contiguous: a non-root word joins the unit before it
            s, _, p = merged[-1]
            merged[-1] = (s, int(end), p or bool(flag))
        else:
            merged.append((int(start), int(end), bool(flag)))
    return merged
