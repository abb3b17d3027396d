"""``MeaningGuard``: the check a semantic candidate must pass besides embedding similarity.

Semantic response caching in the style of GPTCache (Zilliz, 2023) answers a new question with the
stored answer of the most similar old one. Its known failure mode: a sentence embedding averages
over tokens, so the words that flip meaning barely move it. Measured with all-MiniLM-L6-v2:
"Is a cat bigger than a dog?" / "Is a dog bigger than a cat?" 0.99, "Is it safe ..." / "Is it not
safe ..." 0.99, "What is 17 times 23?" / "... 24?" 0.91, and labelled non-paraphrases of MRPC
that differ by one extra clause sit at 0.90-0.97, as high as real duplicates. Similarity alone
cannot separate them (plain cosine keeps false hits at 2% only with ~21% of duplicates hitting).

The guard turns the cosine into a *score*:

* **Vetoes** (the cosine minus 1, so at most 0: never a hit at any threshold a cache can be set
  to, which is in (0, 1]) for the meaning flippers: the numbers
  differ (digits and number words, ``"two"`` == ``"2"``); negation is present in one and not the
  other; an asymmetric relation has its entities swapped ("A bigger than B" vs "B bigger than A",
  "from A to B", "convert A to B") or compares against something else ("than B" vs "than C"), or
  two content words exchange places in an otherwise unchanged sentence ("What do Croats think of
  Turks?" vs "What do Turks think of Croats?"); or a comparative/superlative points the other way
  on the same scale ("bigger" vs "smaller", "best" vs "worst").
* A **novelty penalty**: ``novelty_penalty`` per content word (stop words removed, crude
  stemming) that one side has and the other lacks, counted on the side with more. A pooled
  embedding dilutes one differing detail more the longer the text, so a fixed count of
  differing words (rather than a fraction) is what keeps long near-misses out.

Known weaknesses: a one-word substitution between words the embedding holds close ("sky blue" vs
"sky red": cosine 0.80, one novel word) can still pass at a low threshold; long paraphrases that
reword many words hit rarely (MRPC paraphrases: see docs/cache.md); only English cue lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

__all__ = ["VETO", "MeaningGuard", "TextFeatures", "Verdict"]

VETO = 1.0  # what a veto subtracts: a cosine is at most 1, so a vetoed score is at most 0

_STOP = frozenset(
    """a an the of to in on at for by with from and or but is are was were be been being am do does did done
    have has had having i me my mine we our ours you your yours he him his she her hers it its they them their
    theirs this that these those what which who whom whose when where why how can could would should will shall
    may might must there here as if then so such into about up down out just also very too some any all each
    every other another only own same s t d ll m re ve get got getting make made one ones thing things really
    much many lot lots way ways please tell know want need like quora someone something anyone anything""".split()  # noqa: SIM905
)
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nobody|nothing|neither|nor|nowhere|without|cannot)\b|n't\b", re.IGNORECASE
)
_WORD = re.compile(r"[A-Za-z]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SMALL_NUMBERS = (
    "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    " seventeen eighteen nineteen twenty"
)
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(_SMALL_NUMBERS.split())
    if w != "_"  # "one" is left out: far more often a pronoun ("which one") than a count
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
    "hundred": "100",
    "thousand": "1000",
    "million": "1e6",
    "billion": "1e9",
    "trillion": "1e12",
    "dozen": "12",
    "half": "0.5",
}
# Each comparative or superlative names a scale and a direction on it.
_SCALES = {
    "size": ("bigger biggest larger largest greater greatest", "smaller smallest lesser"),
    "amount": ("more most", "less least fewer fewest"),
    "height": ("higher highest taller tallest", "lower lowest"),
    "length": ("longer longest", "shorter shortest"),
    "age": ("older oldest elder eldest", "younger youngest"),
    "quality": ("better best", "worse worst"),
    "speed": ("faster fastest quicker quickest", "slower slowest"),
    "difficulty": ("harder hardest", "easier easiest"),
    "weight": ("heavier heaviest", "lighter lightest"),
    "strength": ("stronger strongest", "weaker weakest"),
    "wealth": ("richer richest", "poorer poorest"),
    "price": ("costlier priciest", "cheaper cheapest"),
    "temperature": ("hotter hottest warmer warmest", "colder coldest cooler coolest"),
    "extreme": ("maximum max", "minimum min"),
}
_DIRECTION = {
    w: (scale, sign)
    for scale, words in _SCALES.items()
    for sign, group in zip((1, -1), words)
    for w in group.split()
}
# Relations whose two sides cannot be swapped: "A than B", "from A to B", "convert A to B". ("before",
# "after" and "instead of" were tried and dropped: their clauses move freely in paraphrases.)
_PIVOT = re.compile(r"\bthan\b")
_SPAN = re.compile(r"\b(?:from|convert\w*|translat\w*|transfer\w*|switch\w*|migrat\w*)\b(.*?)\bto\b(.*)")
ROLE_FRAME = 0.875
"""How alike two texts must be, word for word, once their two exchanged content words are put back,
for the exchange to count as swapped roles ("import from Canada and sell in India" / "import from
India and sell in Canada") rather than a rewording ("How can an allergy to sawdust be treated?" /
"How do you treat sawdust allergy?"). Chosen on the QQP fit split: the lowest of 0.80, 0.82, 0.85,
0.875 and 0.90 that vetoes no fit duplicate (it vetoes 12 of 28,445 near misses there); on the val
split it vetoed 6 of 9,782 near misses and none of 5,069 duplicates."""
_JOINERS = frozenset({"and", "or", "nor", "vs", "versu"})  # stemmed: "versus" -> "versu"
_ARTICLES = frozenset({"a", "an", "the", "be", "being"})


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """What the guard compares, extracted once per text."""

    numbers: frozenset[str]
    negated: bool
    content: frozenset[str]
    directions: frozenset[tuple[str, int]]
    order: tuple[str, frozenset[str], frozenset[str]] | None  # (relation, left words, right words)
    words: tuple[str, ...]  # every word, stemmed, in order
    content_order: tuple[str, ...]  # the content words, stemmed, in order


@lru_cache(maxsize=4096)
def features(text: str) -> TextFeatures:
    """Extract numbers, negation, content words, directions and an ordered relation from ``text``."""
    lowered = text.lower()
    words = _WORD.findall(lowered)
    numbers = {_number(n) for n in _NUMBER.findall(lowered)} | {
        _NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS
    }
    stems = tuple(_stem(w) for w in words)
    content_order = tuple(
        s for w, s in zip(words, stems, strict=True) if w not in _STOP and w not in _NUMBER_WORDS
    )
    directions = frozenset(_DIRECTION[w] for w in words if w in _DIRECTION)
    return TextFeatures(
        frozenset(numbers),
        bool(_NEGATION.search(lowered)),
        frozenset(content_order),
        directions,
        _order(lowered),
        stems,
        content_order,
    )


def _number(text: str) -> str:
    """``"1,000"`` -> ``"1000"``, ``"2.50"`` -> ``"2.5"``: one spelling per value."""
    text = text.replace(",", "")
    return (text.rstrip("0").rstrip(".") or "0") if "." in text else text


def _order(lowered: str) -> tuple[str, frozenset[str], frozenset[str]] | None:
    """The first ordered relation in ``lowered`` as (relation, words on the left, on the right)."""
    span = _SPAN.search(lowered)
    if span is not None:
        return "to", _content(span.group(1)), _content(span.group(2))
    pivot = _PIVOT.search(lowered)
    if pivot is None:
        return None
    return pivot.group().split()[0], _content(lowered[: pivot.start()]), _content(lowered[pivot.end() :])


def _content(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _WORD.findall(text) if w not in _STOP and w not in _NUMBER_WORDS)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guard's score for a candidate (cosine minus penalties; minus 1 on a veto) and why."""

    score: float
    reason: str | None = None

    @property
    def vetoed(self) -> bool:
        """True when a meaning flipper ruled the candidate out."""
        return self.reason is not None and self.reason != "novelty"


class MeaningGuard:
    """Scores a semantic candidate; see the module docstring for the checks and their costs."""

    def __init__(
        self,
        *,
        novelty_penalty: float = 0.1,
        numbers: bool = True,
        negation: bool = True,
        order: bool = True,
        direction: bool = True,
    ) -> None:
        self.novelty_penalty = novelty_penalty
        self.numbers, self.negation, self.order, self.direction = numbers, negation, order, direction

    def veto(self, query: str, candidate: str) -> str | None:
        """The name of the first meaning flipper that differs, or None."""
        a, b = features(query), features(candidate)
        if self.numbers and a.numbers != b.numbers:
            return "numbers"
        if self.negation and a.negated != b.negated:
            return "negation"
        if self.direction and _opposed(a.directions, b.directions):
            return "direction"
        if self.order and (_swapped(a.order, b.order) or _exchanged(a, b)):
            return "order"
        return None

    def novelty(self, query: str, candidate: str) -> int:
        """Content words one side has and the other lacks, on the side with more."""
        a, b = features(query).content, features(candidate).content
        return max(len(a - b), len(b - a))

    def score(self, query: str, candidate: str, similarity: float) -> Verdict:
        """``similarity`` minus the novelty penalty, or minus ``VETO`` with the veto's name."""
        reason = self.veto(query, candidate)
        if reason is not None:
            return Verdict(similarity - VETO, reason)
        novel = self.novelty(query, candidate)
        return Verdict(similarity - self.novelty_penalty * novel, "novelty" if novel else None)


def _opposed(a: frozenset[tuple[str, int]], b: frozenset[tuple[str, int]]) -> bool:
    """True when some scale points one way in ``a`` and only the other way in ``b``."""
    for scale in {s for s, _ in a} & {s for s, _ in b}:
        signs_a = {sign for s, sign in a if s == scale}
        signs_b = {sign for s, sign in b if s == scale}
        if signs_a != signs_b and len(signs_a) == len(signs_b) == 1:
            return True
    return False


def _swapped(
    a: tuple[str, frozenset[str], frozenset[str]] | None, b: tuple[str, frozenset[str], frozenset[str]] | None
) -> bool:
    """True when both texts state the same ordered relation with entities on opposite sides, or
    compare against something else ("faster than gold" vs "faster than tea": the right-hand side
    of the relation must name the same things; its left side is phrased too freely to demand that).
    """
    if a is None or b is None or a[0] != b[0]:
        return False
    _, left_a, right_a = a
    _, left_b, right_b = b
    if right_a and right_b and right_a != right_b:
        return True
    return bool((left_a & right_b) - left_b) or bool((right_a & left_b) - right_b)


def _exchanged(a: TextFeatures, b: TextFeatures) -> bool:
    """True when ``b`` is ``a`` with two of its content words exchanged and the frame around them
    kept (the sentences agree word for word to ``ROLE_FRAME`` once the two are put back), unless
    the two form a symmetric pair in either text ("between X and Y")."""
    first, second = a.content_order, b.content_order
    if len(first) != len(second) or len(set(first)) != len(first):
        return False
    moved = [i for i, (x, y) in enumerate(zip(first, second, strict=True)) if x != y]
    if len(moved) != 2:
        return False
    x, y = first[moved[0]], first[moved[1]]
    if (second[moved[0]], second[moved[1]]) != (y, x) or _paired(a.words, x, y) or _paired(b.words, x, y):
        return False
    back = [y if w == x else x if w == y else w for w in b.words]
    return SequenceMatcher(None, a.words, back, autojunk=False).ratio() >= ROLE_FRAME


def _paired(words: tuple[str, ...], x: str, y: str) -> bool:
    """True when ``x`` and ``y`` stand next to each other in ``words`` (a compound: "sawdust
    allergy") or as a symmetric pair ("between X and Y", "X or the Y"), where order carries no
    meaning."""
    i, j = sorted((words.index(x), words.index(y)))
    between = [w for w in words[i + 1 : j] if w not in _ARTICLES]
    return not between or (len(between) == 1 and between[0] in _JOINERS)
