"""Ranking context blocks against a question for the coarse level of question-aware compression.

LongLLMLingua ranks documents by ``log p(question | document)`` under the small LM. Measured on
HotpotQA distractor samples (the dev split of bench/compression.py, 61 questions, SmolLM2-135M),
that signal alone put the answer's document in the top two 46% of the time; without the paper's
restrictive sentence ("We can get the answer to this question in the given documents.") 54%;
BM25 alone 66%. So the default ranking fuses the LM likelihood with BM25 (z-scores, equal weight,
as the LLMLingua library also offers ``rank_method="bm25"``), and adds one step of pseudo-relevance
feedback for multi-hop questions: a block whose heading (a short first line, such as a title) is
named in the question or in the best-ranked block is moved up, because the second hop is a
document the question never names. Fused + bridging: top two 80%, top five 93%.

Known failure mode: BM25 and the bridge are lexical; a relevant block that shares no words or
names with the question or the top block is found only by the LM signal.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = ["RANKINGS", "bm25_scores", "bridge_bonus", "rank_blocks"]

RANKINGS = ("lm", "lm+bm25", "bm25")
_STOP = frozenset(
    {
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "by",
        "with",
        "from",
        "and",
        "or",
        "is",
        "was",
        "were",
        "be",
        "been",
        "are",
        "as",
        "that",
        "this",
        "which",
        "who",
        "whom",
        "what",
        "when",
        "where",
        "why",
        "how",
        "did",
        "does",
        "do",
        "it",
        "its",
        "his",
        "her",
        "their",
        "he",
        "she",
        "they",
        "there",
        "than",
        "then",
        "into",
        "about",
    }
)
_WORD = re.compile(r"\w+")
_HEADING_WORDS = 12


def _terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def bm25_scores(query: str, docs: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """Okapi BM25 of each doc for ``query`` with document frequencies from ``docs`` themselves."""
    bags = [Counter(_terms(d)) for d in docs]
    lengths = [sum(bag.values()) for bag in bags]
    average = sum(lengths) / max(len(docs), 1) or 1.0
    frequency = Counter(term for bag in bags for term in bag)
    n = len(docs)
    scores = np.zeros(n)
    for term in set(_terms(query)):
        idf = math.log(1 + (n - frequency[term] + 0.5) / (frequency[term] + 0.5))
        for i, bag in enumerate(bags):
            f = bag.get(term, 0)
            if f:
                scores[i] += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * lengths[i] / average))
    return scores


def _z(values: np.ndarray) -> np.ndarray:
    spread = float(values.std())
    return (values - values.mean()) / spread if spread > 1e-9 else np.zeros_like(values)


def _heading(block: str) -> str:
    first = block.strip().split("\n", 1)[0].strip()
    return first.lower() if 0 < len(first.split()) <= _HEADING_WORDS and "\n" in block.strip() else ""


def bridge_bonus(question: str, blocks: Sequence[str], top: int) -> np.ndarray:
    """1 for each block (other than ``top``) whose heading is named in the question or in ``blocks[top]``."""
    context = (question + "\n" + blocks[top]).lower()
    bonus = np.zeros(len(blocks))
    for i, block in enumerate(blocks):
        heading = _heading(block)
        if i != top and heading and heading in context:
            bonus[i] = 1.0
    return bonus


def rank_blocks(
    question: str,
    blocks: Sequence[str],
    lm_logprob: Sequence[float] | None,
    *,
    method: str = "lm+bm25",
    bridge: float = 3.0,
) -> list[int]:
    """Block indices, most useful first.

    ``lm_logprob``: mean ``log p(question | block)`` per block; ``None`` with ``method="bm25"``,
    which ranks by BM25 and bridging alone and so needs no LM pass over the blocks.
    """
    if method != "bm25" and lm_logprob is None:
        raise ValueError(f"ranking {method!r} needs the LM's question likelihood per block")
    if method == "bm25":
        fused = _z(bm25_scores(question, blocks))
    elif method == "lm" or len(blocks) < 2:
        return [int(i) for i in np.argsort(-np.asarray(lm_logprob, dtype=float), kind="stable")]
    else:
        fused = _z(np.asarray(lm_logprob, dtype=float)) + _z(bm25_scores(question, blocks))
    if bridge:
        fused = fused + bridge * bridge_bonus(question, blocks, int(np.argmax(fused)))
    return [int(i) for i in np.argsort(-fused, kind="stable")]
