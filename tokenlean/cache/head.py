"""``DuplicateHead``: a learnt pair classifier that decides a semantic hit from the top candidates.

Plain cosine between two MiniLM vectors does not separate a reworded question from a near miss
(same topic, another question: "How do I lose weight fast?" / "How do I lose belly fat fast?"),
and the guard's per-word novelty penalty does not either on short questions (on labelled Quora
pairs it hit fewer duplicates than plain cosine at every false-hit rate). The head reads what the
cosine averages away: it maps both frozen MiniLM vectors through a learnt linear *adapter* (a
384 x 384 matrix trained with the head, with a contrastive loss that pulls the fit split's
duplicates together, so the lookup still embeds the query once with the shared model), takes the
element-wise product, absolute difference and cosine of the adapted vectors (which dimensions
agree, which differ), adds lexical features of the two texts (word overlap, the words only one
side has, numbers, negation, names, the question word) and outputs the probability that the two
questions are duplicates. It is an ensemble of small perceptrons (one hidden layer each, logits
averaged) trained by ``bench/cache_head.py`` on the *fit* split of the labelled QQP pairs plus
MRPC's train file without GLUE's dev pairs, only on the pairs a lookup would score (not vetoed,
guard score over the floor); its weights ship in ``data/duplicate_head.npz`` (float16, with the
idf of the fit texts' words) and inference is numpy only, on the few faiss candidates of one lookup.

Every input is symmetric in the two texts, so the score does not depend on which was stored.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from tokenlean.cache.guard import _opposed, _swapped, features

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEFAULT_THRESHOLD", "HEAD_PATH", "LEXICAL", "DuplicateHead", "lexical_features", "shipped_head"]

HEAD_PATH = Path(__file__).resolve().parent / "data" / "duplicate_head.npz"
DEFAULT_THRESHOLD = {"learned": 0.935, "guard": 0.7}
"""The default hit thresholds: the head's probability, chosen on the validation split for <= 1%
false hits on near-miss questions with a margin (the cluster-bootstrap rule of
``bench.cache_qqp.bootstrap_default``: docs/cache.md), and the earlier guard rule's score."""
LEXICAL = (
    "cosine",
    "novel_max",
    "novel_min",
    "content_jaccard",
    "word_jaccard",
    "bigram_jaccard",
    "char_ratio",
    "word_diff",
    "numbers_differ",
    "numbers_any",
    "negation_differ",
    "direction_opposed",
    "order_swapped",
    "question_word_differs",
    "names_novel",
    "names_any",
    "idf_overlap",
    "idf_novel_max",
    "idf_novel_min",
    "idf_novel_top",
    "order_inversions",
)
_TOKEN = re.compile(r"[a-z0-9]+")
_NAME = re.compile(r"[A-Z][a-zA-Z]+")
_QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how is are can do does should will".split()  # noqa: SIM905
)


@dataclass(frozen=True, slots=True)
class _Text:
    words: frozenset[str]
    bigrams: frozenset[tuple[str, str]]
    first: str
    names: frozenset[str]
    chars: int
    count: int
    sequence: tuple[str, ...]  # the words in order, first occurrences only


@lru_cache(maxsize=8192)
def _text(text: str) -> _Text:
    tokens = _TOKEN.findall(text.lower())
    first = next((t for t in tokens if t in _QUESTION_WORDS), "")
    words = text.split()
    names = frozenset(n.lower() for w in words[1:] for n in _NAME.findall(w)[:1] if w[:1].isupper())
    bigrams = frozenset(itertools.pairwise(tokens))
    sequence = tuple(dict.fromkeys(tokens))
    return _Text(frozenset(tokens), bigrams, first, names, len(text), len(tokens), sequence)


def _inversions(a: _Text, b: _Text, idf: Mapping[str, float], unknown: float) -> float:
    """The share of pairs of shared informative words (idf above 2) whose order the texts swap
    ("percentage of terrorists are Muslim" / "... of Muslims are terrorists" when stems agree)."""
    shared = [w for w in a.sequence if w in b.words and idf.get(w, unknown) > 2.0]
    if len(shared) < 2:
        return 0.0
    where = {w: i for i, w in enumerate(b.sequence)}
    positions = [where[w] for w in shared]
    pairs = len(positions) * (len(positions) - 1) / 2
    swapped = sum(1 for i, p in enumerate(positions) for q in positions[i + 1 :] if p > q)
    return swapped / pairs


def _jaccard(a: frozenset[object], b: frozenset[object]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _weights(words: frozenset[str], idf: Mapping[str, float], unknown: float) -> list[float]:
    return [idf.get(w, unknown) for w in words]


def lexical_features(
    a: str, b: str, cosine: float, idf: Mapping[str, float] | None = None, unknown: float = 0.0
) -> list[float]:
    """The scalar features of the pair, in ``LEXICAL`` order (symmetric in ``a`` and ``b``).

    ``idf`` (word -> inverse document frequency over the training questions; ``unknown`` for a
    word it lacks) weighs the words both share and those only one has: a rare word that only one
    question has is what usually makes a near miss.
    """
    fa, fb = features(a), features(b)
    ta, tb = _text(a), _text(b)
    idf = idf or {}
    only_a = _weights(ta.words - tb.words, idf, unknown)
    only_b = _weights(tb.words - ta.words, idf, unknown)
    shared = sum(_weights(ta.words & tb.words, idf, unknown))
    novel = (len(fa.content - fb.content), len(fb.content - fa.content))
    names = (len(ta.names - tb.names), len(tb.names - ta.names))
    return [
        cosine,
        float(max(novel)),
        float(min(novel)),
        _jaccard(fa.content, fb.content),
        _jaccard(ta.words, tb.words),
        _jaccard(ta.bigrams, tb.bigrams),
        min(ta.chars, tb.chars) / max(ta.chars, tb.chars, 1),
        float(abs(ta.count - tb.count)),
        float(fa.numbers != fb.numbers),
        float(bool(fa.numbers or fb.numbers)),
        float(fa.negated != fb.negated),
        float(_opposed(fa.directions, fb.directions)),
        float(_swapped(fa.order, fb.order)),
        float(ta.first != tb.first),
        float(max(names)),
        float(bool(ta.names or tb.names)),
        shared / (shared + sum(only_a) + sum(only_b) or 1.0),
        max(sum(only_a), sum(only_b)),
        min(sum(only_a), sum(only_b)),
        max(only_a + only_b, default=0.0),
        _inversions(ta, tb, idf, unknown),
    ]


@dataclass(frozen=True, slots=True)
class _Member:
    """One perceptron of the ensemble: an optional adapter (a linear map of the frozen MiniLM
    vectors, trained contrastively on the fit pairs), which vector features it reads, its layers."""

    adapter: np.ndarray | None
    raw: bool
    layers: list[tuple[np.ndarray, np.ndarray]]

    def vector_features(self, u: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
        import numpy as np

        parts = [u * v, np.abs(u - v)] if self.raw else []
        if self.adapter is not None:
            a, b = _unit(u @ self.adapter), _unit(v @ self.adapter)
            parts += [a * b, np.abs(a - b), np.einsum("ij,ij->i", a, b)[:, None]]
        return parts

    def logits(self, lexical: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        import numpy as np

        hidden = np.hstack([lexical, *self.vector_features(u, v)])
        for i, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight + bias
            if i < len(self.layers) - 1:
                hidden = np.maximum(hidden, 0.0)
        out: np.ndarray = hidden[:, 0]
        return out


def _unit(x: np.ndarray) -> np.ndarray:
    import numpy as np

    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def _member(weights: Mapping[str, np.ndarray], prefix: str) -> _Member:
    import numpy as np

    def get(name: str) -> np.ndarray:
        return np.asarray(weights[prefix + name], dtype=np.float32)

    adapter = get("adapter") if prefix + "adapter" in weights else None
    raw = bool(weights[prefix + "raw"]) if prefix + "raw" in weights else True
    layers = [(get(f"w{i}"), get(f"b{i}")) for i in range(int(weights[prefix + "depth"]))]
    return _Member(adapter, raw, layers)


class DuplicateHead:
    """The probability that two questions ask the same thing, from their vectors and texts.

    Weights hold one perceptron (keys ``depth``, ``w0``, ``b0``, ...) or an ensemble of
    ``members`` (the same keys prefixed ``m0_``, ``m1_``, ...) whose logits are averaged.
    """

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        import numpy as np

        self.mean = np.asarray(weights["mean"], dtype=np.float32)
        self.scale = np.asarray(weights["scale"], dtype=np.float32)
        count = int(weights["members"]) if "members" in weights else 0
        prefixes = [f"m{k}_" for k in range(count)] or [""]
        self.members = [_member(weights, prefix) for prefix in prefixes]
        words = weights.get("vocabulary")
        values = weights.get("idf")
        self.idf: dict[str, float] = (
            dict(zip(words.tolist(), values.astype(float).tolist(), strict=True))
            if words is not None and values is not None
            else {}
        )
        self.unknown = float(weights["unknown_idf"]) if "unknown_idf" in weights else 0.0

    @classmethod
    def load(cls, path: str | Path | None = None) -> DuplicateHead:
        """The shipped head (or one saved by ``bench/cache_head.py`` at ``path``)."""
        import numpy as np

        with np.load(Path(path) if path is not None else HEAD_PATH, allow_pickle=False) as stored:
            return cls({name: stored[name] for name in stored.files})

    def inputs(self, query: str, candidates: list[str], u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The input rows ``[standardised lexical, u, v]``, one per candidate (``v``'s rows)."""
        import numpy as np

        v = np.asarray(v, dtype=np.float32).reshape(len(candidates), -1)
        u = np.asarray(u, dtype=np.float32).reshape(1, -1)
        cosines = (v @ u[0]).tolist()
        lexical = np.array(
            [
                lexical_features(query, c, s, self.idf, self.unknown)
                for c, s in zip(candidates, cosines, strict=True)
            ],
            dtype=np.float32,
        )
        return np.hstack([(lexical - self.mean) / self.scale, np.repeat(u, len(candidates), axis=0), v])

    def forward(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities for input rows (see ``inputs``): the sigmoid of the members' mean logit."""
        import numpy as np

        width = len(self.mean)
        dimension = (rows.shape[1] - width) // 2
        lexical, u, v = rows[:, :width], rows[:, width : width + dimension], rows[:, width + dimension :]
        mean_logit = np.mean([m.logits(lexical, u, v) for m in self.members], axis=0)
        probabilities: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(mean_logit, -30.0, 30.0)))
        return probabilities

    def score(self, query: str, candidates: list[str], u: np.ndarray, v: np.ndarray) -> list[float]:
        """The duplicate probability of ``query`` (vector ``u``) against each candidate (rows of ``v``)."""
        if not candidates:
            return []
        return [float(p) for p in self.forward(self.inputs(query, candidates, u, v))]


@lru_cache(maxsize=4)
def shipped_head(path: str | None = None) -> DuplicateHead:
    """One loaded head per path for the whole process."""
    return DuplicateHead.load(path)
