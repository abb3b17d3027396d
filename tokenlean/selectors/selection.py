"""Choosing demonstrations for one query: kNN (KATE), MMR, random; label balance; token budget.

Papers: KATE (Liu et al., 2022, "What Makes Good In-Context Examples for GPT-3?") takes the k
nearest training examples by sentence embedding; MMR (Carbonell & Goldstein, 1998) trades
similarity to the query against similarity to what is already chosen (``mmr_lambda`` = 1 is
pure kNN); Lu et al. (ACL 2022) show that order moves few-shot accuracy by many points, so the
order here is fixed: least similar first, the most similar last, next to the query.
Known failure modes: kNN happily picks near-duplicates of each other (tokens spent on no new
information) and, on skewed pools, k examples of one label that the model then copies; MMR and
``balance`` are the remedies, at some loss of raw similarity.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tokenlean.errors import ConfigError
from tokenlean.selectors.examples import Example

if TYPE_CHECKING:
    import numpy as np

    from tokenlean.selectors.pool import DemoPool

__all__ = ["METHODS", "Method", "Selection", "SelectionConfig", "select"]

Method = Literal["knn", "mmr", "random"]
METHODS: tuple[str, ...] = ("knn", "mmr", "random")
CostFn = Callable[[Example], int]


@dataclass(frozen=True, slots=True)
class SelectionConfig:
    """How to choose: ``k`` demonstrations and/or as many as fit in ``budget`` tokens.

    ``candidates`` nearest neighbours are considered (more when ``k`` or ``balance`` need it).
    MMR drops any candidate whose cosine to an already chosen one is ``duplicate_threshold`` or
    more, so it never spends tokens on two near-identical examples.
    """

    k: int | None = 4
    budget: int | None = None
    method: str = "knn"
    mmr_lambda: float = 0.5
    balance: bool = False
    candidates: int = 64
    duplicate_threshold: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(
                f"unknown selection method {self.method!r}; known: {', '.join(METHODS)}", param="method"
            )
        if self.k is None and self.budget is None:
            raise ConfigError("give k, budget or both", param="k")
        if self.k is not None and self.k < 0:
            raise ConfigError(f"k must be >= 0, got {self.k}", param="k")
        if self.budget is not None and self.budget < 0:
            raise ConfigError(f"budget must be >= 0, got {self.budget}", param="budget")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ConfigError(f"mmr_lambda must be in [0, 1], got {self.mmr_lambda}", param="mmr_lambda")


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen demonstrations in prompt order (most similar last), with how they were found."""

    examples: tuple[Example, ...]
    ids: tuple[int, ...]
    scores: tuple[float, ...]
    tokens: int
    embed_ms: float
    ms: float


def select(
    pool: DemoPool,
    query: str,
    config: SelectionConfig,
    *,
    cost: CostFn | None = None,
    query_vector: np.ndarray | None = None,
) -> Selection:
    """Choose demonstrations from ``pool`` for ``query``; ``cost`` counts one demo's tokens.

    ``ms`` covers everything, the query embedding included (``embed_ms`` is that part alone);
    pass ``query_vector`` to reuse an embedding computed elsewhere.
    """
    if config.budget is not None and cost is None:
        raise ConfigError(
            "a token budget needs a cost function (the target model's tokenizer)", param="budget"
        )
    started = time.perf_counter()
    limit = len(pool) if config.k is None else min(config.k, len(pool))
    reach = min(len(pool), config.candidates) if config.k is None else limit  # how deep to look
    embed_ms = 0.0
    if limit == 0 or len(pool) == 0:
        order: list[int] = []
        scores: dict[int, float] = {}
    elif config.method == "random":
        order, scores = _random_order(pool, query, config, reach), {}
    else:
        if query_vector is None:
            query_vector = pool.embed_query(query)
            embed_ms = (time.perf_counter() - started) * 1000
        order, scores = _ranked(pool, query_vector, config, reach)
    if config.balance and pool.labels:
        order = _balanced(order, pool)
    chosen, tokens = _take(order, pool, limit, config.budget, cost)
    if config.method != "random":  # the most similar goes last, next to the query
        chosen.sort(key=lambda i: (scores[i], -i))
    return Selection(
        examples=tuple(pool.examples[i] for i in chosen),
        ids=tuple(chosen),
        scores=tuple(scores.get(i, math.nan) for i in chosen),
        tokens=tokens,
        embed_ms=embed_ms,
        ms=(time.perf_counter() - started) * 1000,
    )


def _random_order(pool: DemoPool, query: str, config: SelectionConfig, reach: int) -> list[int]:
    """A sample that depends only on (seed, query), so a repeated request gets the same demos."""
    digest = hashlib.sha256(f"{config.seed}\x00{query}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    wanted = reach * (4 if config.balance else 1) + (config.candidates if config.budget is not None else 0)
    return rng.sample(range(len(pool)), min(len(pool), wanted))


def _ranked(
    pool: DemoPool, query_vector: np.ndarray, config: SelectionConfig, reach: int
) -> tuple[list[int], dict[int, float]]:
    wanted = max(config.candidates, reach) * (4 if config.balance else 1)
    found_scores, found_ids = pool.search(query_vector, min(len(pool), wanted))
    ids = [int(i) for i in found_ids]
    scores = {i: float(s) for i, s in zip(ids, found_scores, strict=True)}
    if config.method == "mmr":
        needed = len(ids) if config.balance or config.budget is not None else reach
        relevance = [scores[i] for i in ids]
        ids = _mmr(pool, ids, relevance, config.mmr_lambda, config.duplicate_threshold, needed)
    return ids, scores


def _mmr(
    pool: DemoPool, ids: list[int], relevance: list[float], lam: float, duplicate: float, needed: int
) -> list[int]:
    """Greedy MMR over the candidates, stopping after ``needed`` picks; near-duplicates are dropped."""
    import numpy as np

    if not ids:
        return []
    vectors = pool.vectors[np.asarray(ids)]
    value = lam * np.asarray(relevance, dtype=np.float32)  # the MMR score before any pick
    redundancy = np.zeros(len(ids), dtype=np.float32)
    alive = np.ones(len(ids), dtype=bool)
    order: list[int] = []
    while len(order) < needed and alive.any():
        scores = np.where(alive, value - (1 - lam) * redundancy, -np.inf)
        best = int(scores.argmax())  # the first maximum: ties go to the better-ranked candidate
        order.append(ids[best])
        # one row at a time, elementwise: a BLAS call this small mostly waits for its threads to wake
        row = (vectors * vectors[best]).sum(axis=1)
        redundancy = row if len(order) == 1 else np.maximum(redundancy, row)
        alive &= row < duplicate
        alive[best] = False
    return order


def _balanced(order: Sequence[int], pool: DemoPool) -> list[int]:
    """Interleave labels round by round (each label's best, then each label's second, ...)."""
    by_label: dict[str | None, list[int]] = {}
    for i in order:
        by_label.setdefault(pool.examples[i].label, []).append(i)
    rank = {i: position for position, i in enumerate(order)}
    result: list[int] = []
    for round_ in range(max((len(v) for v in by_label.values()), default=0)):
        members = [ids[round_] for ids in by_label.values() if round_ < len(ids)]
        result.extend(sorted(members, key=rank.__getitem__))
    return result


def _take(
    order: Sequence[int], pool: DemoPool, limit: int, budget: int | None, cost: CostFn | None
) -> tuple[list[int], int]:
    """The first ``limit`` of ``order`` that fit ``budget`` (a demo too long is skipped, not a stop)."""
    chosen: list[int] = []
    spent = 0
    for i in order:
        if len(chosen) >= limit:
            break
        tokens = cost(pool.examples[i]) if cost is not None else 0
        if budget is not None and spent + tokens > budget:
            continue
        chosen.append(i)
        spent += tokens
    return chosen, spent
