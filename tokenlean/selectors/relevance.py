"""Whether a pool's demonstrations belong to a query at all: a similarity test calibrated per pool,
and, for a classification pool, whether the request names the pool's answer labels.

Why: a pool always returns *some* nearest examples, so a stage with a default pool would put
SST-2 sentiment demonstrations in front of "What is the capital of France?" and the model then
answers "positive". The score of a query is the mean cosine of its ``k`` nearest pool examples;
a threshold is taken from the pool itself: a ``quantile`` of the same score for the pool's own
examples (each scored against the rest of the pool, leave one out). A pool of tightly clustered
texts gets a high bar and a diverse pool a lower one, with one rule for all pools.

Similarity alone cannot separate a chat from a task query that looks like one (a factoid
question against TREC's factoid questions, a product complaint against movie reviews): on
ShareGPT first turns it let 7-12 % of chats through at the quantile that kept 94 % of task
queries. A real classification request, though, carries its task: its instruction or template
names the answers it wants ("... positive or negative", "true or false?"). So for a
*classification pool* (its outputs are a few short labels, each repeated; ``answer_labels``),
a request that names at least two of them (all of them when there is one) passes at a loose
quantile (``named_quantile``), and one that names none must clear a strict one
(``unnamed_quantile``; ``None``: never). A free-form pool (answers that are not labels) keeps the
plain test at ``quantile``. The constants were chosen in ``bench/demos_relevance.py`` on SST-2 and
TREC against one half of ShareGPT first turns and are reported on pools they never saw (AG News,
RTE, CB) and the other half (``docs/demos.md``).

Known failure modes: a chat that names two of the labels *and* resembles the pool passes (a
question about "true" and "false" in code, against an entailment pool); a bare task query
without its instruction must clear the strict threshold, so about half of them get no
demonstrations; a free-form pool has only the similarity test. An explicit ``route`` in the spec
is the remedy for all three.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenlean.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from tokenlean.selectors.pool import DemoPool

__all__ = [
    "Decision",
    "PoolGate",
    "RelevanceRule",
    "Route",
    "answer_labels",
    "calibrate",
    "calibrate_gate",
    "relevance_score",
]


@dataclass(frozen=True, slots=True)
class RelevanceRule:
    """The automatic test's constants (chosen in ``bench/demos_relevance.py`` on data kept apart
    from the report).

    ``sample`` pool examples (drawn with ``seed``) give the pool's own score distribution.
    ``quantile`` is a free-form pool's; a classification pool (at most ``max_labels`` distinct
    short outputs, each used by ``min_per_label`` examples on average) uses ``named_quantile``
    when the request names its labels and ``unnamed_quantile`` (``None``: never) when not.
    """

    k: int = 8
    quantile: float = 0.05
    margin: float = 0.0
    sample: int = 1000
    seed: int = 0
    named_quantile: float = 0.01
    unnamed_quantile: float | None = 0.7
    max_labels: int = 20
    min_per_label: int = 3


DEFAULT_RULE = RelevanceRule()


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether demonstrations apply, and why: ``reason`` is ``similar``, ``not similar``,
    ``labels not named``, ``route`` or ``no route match``; ``score``/``threshold`` are ``None``
    for a route; ``labels_named`` says, for a classification pool, whether the request named its
    labels (``None`` for other pools and explicit thresholds)."""

    applies: bool
    reason: str
    score: float | None = None
    threshold: float | None = None
    labels_named: bool | None = None

    def data(self) -> dict[str, Any]:
        """The decision as event data (scores rounded to 4 places)."""
        out: dict[str, Any] = {"reason": self.reason}
        if self.score is not None:
            out["score"] = round(self.score, 4)
        if self.threshold is not None:
            out["threshold"] = round(self.threshold, 4)
        if self.labels_named is not None:
            out["labels_named"] = self.labels_named
        return out


@dataclass(frozen=True, slots=True)
class Route:
    """An explicit route: demonstrations apply when the leading system text matches ``pattern``."""

    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, value: Any, *, param: str) -> Route:
        """A compiled route, or ``ConfigError`` naming ``param``."""
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{param}: give a regular expression, not {value!r}", param=param)
        try:
            return cls(re.compile(value))
        except re.error as exc:
            raise ConfigError(f"{param}: not a regular expression: {exc}", param=param) from exc

    def decide(self, system_text: str) -> Decision:
        """Apply when the pattern is found in the system text."""
        found = self.pattern.search(system_text) is not None
        return Decision(found, "route" if found else "no route match")


def relevance_score(pool: DemoPool, vector: np.ndarray, k: int = DEFAULT_RULE.k) -> float:
    """Mean cosine of the query's ``k`` nearest pool examples (``-1`` for an empty pool)."""
    scores, _ = pool.search(vector, k)
    return float(scores.mean()) if len(scores) else -1.0


def neighbour_scores(pool: DemoPool, rule: RelevanceRule = DEFAULT_RULE) -> np.ndarray:
    """The relevance score of sampled pool examples against the rest of the pool (leave one out)."""
    import numpy as np

    size = len(pool)
    if size < 2:
        return np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng(rule.seed)
    ids = np.sort(rng.choice(size, min(rule.sample, size), replace=False))
    k = min(rule.k, size - 1)
    scores, found = pool.search_many(pool.vectors[ids], k + 1)
    out = np.empty(len(ids), dtype=np.float32)
    for row, own in enumerate(ids):
        keep = found[row] != own
        if keep.all():  # a duplicate outranked the example itself: drop the weakest instead
            keep[-1] = False
        out[row] = scores[row][keep][:k].mean()
    return out


def calibrate(pool: DemoPool, rule: RelevanceRule = DEFAULT_RULE) -> float:
    """The pool's threshold: the ``quantile`` of its leave-one-out scores minus ``margin``.

    A pool of one example has no neighbours to learn from: its threshold is ``-1`` (always apply).
    """
    import numpy as np

    own = neighbour_scores(pool, rule)
    if len(own) == 0:
        return -1.0
    return float(np.quantile(own, rule.quantile)) - rule.margin


def answer_labels(pool: DemoPool, rule: RelevanceRule = DEFAULT_RULE) -> tuple[str, ...]:
    """The pool's answer labels if it is a classification pool, else ``()``.

    A classification pool's outputs are at most ``rule.max_labels`` distinct short texts (three
    words at most), each used by ``rule.min_per_label`` examples on average: a label set, not
    free-form answers (a FAQ pool whose answers are mostly distinct is free-form).
    """
    outputs = {example.output.strip() for example in pool.examples}
    if not 1 <= len(outputs) <= rule.max_labels or len(pool) < rule.min_per_label * len(outputs):
        return ()
    if any(not output or len(output.split()) > 3 for output in outputs):
        return ()
    return tuple(sorted(outputs))


@dataclass(frozen=True)
class PoolGate:
    """A pool's calibrated test: its answer ``labels`` (empty: free-form) and thresholds.

    ``named`` applies when the request names the labels (and to every request for a free-form
    pool); ``unnamed`` when it names none (``None``: no demonstrations then).
    """

    labels: tuple[str, ...]
    named: float
    unnamed: float | None
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = (re.compile(rf"(?<!\w){re.escape(label)}(?!\w)", re.IGNORECASE) for label in self.labels)
        object.__setattr__(self, "_patterns", tuple(patterns))

    def names_labels(self, text: str) -> bool:
        """Whether ``text`` names at least two of the labels (the label, if there is one)."""
        found = sum(1 for pattern in self._patterns if pattern.search(text))
        return found >= min(2, len(self.labels))

    def without_instruction(self, text: str) -> str | None:
        """``text`` without its lines that name the labels, when it has such a line and others: an
        instruction written into the user turn above the text to classify. ``None`` otherwise."""
        if not self.labels:
            return None
        lines = text.splitlines()
        kept = [line for line in lines if not self.names_labels(line)]
        if len(kept) == len(lines) or not any(line.strip() for line in kept):
            return None
        return "\n".join(kept).strip()

    def nearer_reading(
        self, pool: DemoPool, text: str, vector: np.ndarray, score: float
    ) -> tuple[str, np.ndarray, float]:
        """The turn as sent, or without its instruction lines if that reading is nearer the pool:
        its text, vector and score (the selection then uses the same reading).

        Why: the pool holds bare texts; "Classify ...: Abbreviation, ... or Number.\n\nWho wrote
        Hamlet?" is far from TREC's bare questions although it is the task (0.68 of TREC's test
        questions passed in that shape). A second embedding, only for such turns.
        """
        stripped = self.without_instruction(text)
        if stripped is None:
            return text, vector, score
        other = pool.embed_query(stripped)
        other_score = relevance_score(pool, other)
        return (stripped, other, other_score) if other_score > score else (text, vector, score)

    def decide(self, score: float, request_text: str) -> Decision:
        """The decision for a query whose relevance score is ``score``; ``request_text`` is the
        text the labels are looked for in (the leading system text and the last user turn)."""
        if not self.labels:
            passed = score >= self.named
            return Decision(passed, "similar" if passed else "not similar", score, self.named)
        named = self.names_labels(request_text)
        threshold = self.named if named else self.unnamed
        if threshold is None:
            return Decision(False, "labels not named", score, None, False)
        passed = score >= threshold
        return Decision(passed, "similar" if passed else "not similar", score, threshold, named)


def calibrate_gate(pool: DemoPool, rule: RelevanceRule = DEFAULT_RULE) -> PoolGate:
    """The pool's gate: its labels and thresholds from one pass over its leave-one-out scores."""
    import numpy as np

    labels = answer_labels(pool, rule)
    own = neighbour_scores(pool, rule)
    if len(own) == 0:
        return PoolGate(labels, -1.0, -1.0)

    def at(quantile: float) -> float:
        return float(np.quantile(own, quantile)) - rule.margin

    if not labels:
        return PoolGate(labels, at(rule.quantile), None)
    unnamed = None if rule.unnamed_quantile is None else at(rule.unnamed_quantile)
    return PoolGate(labels, at(rule.named_quantile), unnamed)
