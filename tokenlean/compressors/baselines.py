"""Model-free baselines any compressor must beat: random word dropping and keeping each block's start.

Both follow the same budget contract as ``LinguaCompressor`` (rate or target tokens over the whole
prompt, counted in the target tokenizer; instruction and question kept whole; protected strings
kept) and both work on words, never half-words, so the comparison is about *which* words survive.

- ``RandomDropCompressor``: every word of the context is kept with the same probability (a fixed
  seed), the floor for "information-aware" selection.
- ``KeepBeginningCompressor``: every block keeps its first words in proportion to the budget. It is
  hard to beat at low ratios on encyclopedic text, whose first sentence often holds the answer;
  its failure mode is anything stated late in a block.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import numpy as np

from tokenlean.compressors.base import CompressionResult, join_prompt, resolve_target
from tokenlean.compressors.budget import fit_selection
from tokenlean.compressors.units import Piece, SpanRules, build_piece
from tokenlean.tokens import TokenCounter, shared_token_counter

__all__ = ["KeepBeginningCompressor", "RandomDropCompressor"]


class _WordBaseline:
    """Shared plumbing: words as units, a score per word, fit to the target by score."""

    def __init__(self, *, counter: TokenCounter | None = None) -> None:
        self._counter = counter

    @property
    def counter(self) -> TokenCounter:
        """The target tokenizer's counter (default: the embedded model's)."""
        if self._counter is None:
            self._counter = shared_token_counter()
        return self._counter

    def _pieces(self, blocks: Sequence[str], protect: Sequence[str]) -> list[Piece]:
        tokenizer = getattr(self.counter, "tokenizer", None)
        pieces = []
        for text in blocks:
            if tokenizer is not None:
                enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
                ids, offsets = list(enc["input_ids"]), [tuple(s) for s in enc["offset_mapping"]]
            else:  # a counter without a tokenizer: one "token" per word
                ids, offsets = _word_offsets(text)
            pieces.append(build_piece(text, ids, offsets, SpanRules(tuple(protect), group_entities=False)))
        return pieces

    def _scores(self, piece: Piece, index: int) -> np.ndarray:
        raise NotImplementedError

    def compress(
        self,
        blocks: Sequence[str],
        *,
        instruction: str = "",
        question: str = "",
        rate: float | None = None,
        target_tokens: int | None = None,
        protect: Sequence[str] = (),
    ) -> CompressionResult:
        """Keep the highest-scoring words of the context until the prompt fits the budget."""
        started = time.perf_counter()
        count: Callable[[str], int] = self.counter.count
        origin = count(join_prompt(instruction, blocks, question))
        target = resolve_target(origin, rate, target_tokens)
        pieces = self._pieces(blocks, protect)
        scores = [self._scores(p, i) for i, p in enumerate(pieces)]
        locked = [np.array([u.protected for u in p.units], dtype=bool) for p in pieces]
        costs = [np.array([u.tokens for u in p.units], dtype=float) for p in pieces]
        keep = [np.ones(len(p.units), dtype=bool) for p in pieces]

        def render(masks: list[np.ndarray]) -> str:
            return join_prompt(
                instruction, [p.render(m) for p, m in zip(pieces, masks, strict=True)], question
            )

        if target < origin:
            keep = fit_selection(keep, scores, costs, locked, lambda m: count(render(m)), target, rounds=12)
        texts = tuple(p.render(m) for p, m in zip(pieces, keep, strict=True))
        return CompressionResult(
            prompt=render(keep),
            blocks=texts,
            instruction=instruction,
            question=question,
            origin_tokens=origin,
            compressed_tokens=count(render(keep)),
            kept_blocks=tuple(i for i, t in enumerate(texts) if t),
            ms=(time.perf_counter() - started) * 1000,
        )


class RandomDropCompressor(_WordBaseline):
    """Drop context words uniformly at random (seeded) until the prompt fits."""

    def __init__(self, *, seed: int = 0, counter: TokenCounter | None = None) -> None:
        super().__init__(counter=counter)
        self.seed = seed

    def _scores(self, piece: Piece, index: int) -> np.ndarray:
        rng = random.Random(f"{self.seed}:{index}:{piece.text[:64]}")
        return np.array([rng.random() for _ in piece.units])


class KeepBeginningCompressor(_WordBaseline):
    """Keep the same leading fraction of every block (its later words go first)."""

    def _scores(self, piece: Piece, index: int) -> np.ndarray:
        n = max(len(piece.units), 1)
        return np.array([1.0 - position / n for position in range(len(piece.units))])


def _word_offsets(text: str) -> tuple[list[int], list[tuple[int, int]]]:
    import re

    spans = [(m.start(), m.end()) for m in re.finditer(r"\s*\S+", text)]
    return list(range(len(spans))), spans
