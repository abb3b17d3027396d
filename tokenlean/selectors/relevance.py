"""Whether a pool's demonstrations belong to a query at all: a similarity test calibrated per pool.

Why: a pool always returns *some* nearest examples, so a stage with a default pool would put
SST-2 sentiment demonstrations in front of "What is the capital of France?" and the model then
answers "positive". The test scores the query by the mean cosine of its ``k`` nearest pool
examples and compares it with a threshold taken from the pool itself: the ``quantile`` of the
same score for the pool's own examples (each scored against the rest of the pool, leave one
out), minus ``margin``. Because the threshold comes from the pool's own neighbour similarity, a
pool of tightly clustered texts gets a high bar and a diverse pool a lower one, with one rule
for all pools; the rule's constants were chosen on SST-2 and TREC against one half of ShareGPT
first turns, and checked on pools it never saw (AG News, RTE, CB) and the other half
(``bench/demos.py``, ``docs/demos.md``). Known failure mode: a chat that *is* of the pool's kind
(a factoid question against a pool of factoid questions) passes, because it is in-domain by
every measure the embedding has; an explicit ``route`` in the spec is the remedy there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tokenlean.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from tokenlean.selectors.pool import DemoPool

__all__ = ["Decision", "RelevanceRule", "Route", "calibrate", "relevance_score"]


@dataclass(frozen=True, slots=True)
class RelevanceRule:
    """The automatic test's constants (chosen in ``bench/demos.py`` on data kept apart from the report).

    ``sample`` pool examples (drawn with ``seed``) give the pool's own score distribution.
    """

    k: int = 8
    quantile: float = 0.05
    margin: float = 0.0
    sample: int = 1000
    seed: int = 0


DEFAULT_RULE = RelevanceRule()


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether demonstrations apply, and why: ``reason`` is ``similar``, ``not similar``,
    ``route`` or ``no route match``; ``score``/``threshold`` are ``None`` for a route."""

    applies: bool
    reason: str
    score: float | None = None
    threshold: float | None = None

    def data(self) -> dict[str, Any]:
        """The decision as event data (scores rounded to 4 places)."""
        out: dict[str, Any] = {"reason": self.reason}
        if self.score is not None:
            out["score"] = round(self.score, 4)
        if self.threshold is not None:
            out["threshold"] = round(self.threshold, 4)
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
