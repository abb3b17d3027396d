"""LLMLingua-style coarse-to-fine prompt compression, question-aware as in LongLLMLingua.

Papers: LLMLingua (Jiang et al., EMNLP 2023): a small LM's per-token information (surprisal)
decides what to drop, under a budget controller, with iterative token-level compression in which
each segment is scored given the already-compressed text before it. LongLLMLingua (Jiang et al.,
ACL 2024): for a question over many documents, rank documents by how likely they make the question,
keep the best, give better documents a gentler ratio, score tokens by their contrast with and
without the question, reorder, and restore words cut mid-way. Selective Context (Li et al., 2023)
is the one-pass ancestor (``iterative=False`` here: block-local surprisal only).

Passes, for a prompt of N context tokens of which K survive the coarse level:
- ``question`` mode: one batched pass over all blocks, each followed by the question (gives the
  question's likelihood per block *and* every token's surprisal ``u`` without the question), then
  one pass over the K kept tokens with the question in front (``c``), segment by segment on a KV
  cache pruned to what was kept. Token score ``u + w * (u - c)``: information plus relevance.
  The library runs two conditioned streams and re-encodes every compressed segment; here it is
  1 + K/N passes, the first of them on short sequences (cheap attention), in bfloat16 on CPUs
  with AMX tiles (float32 elsewhere, where it is faster).
- ``plain`` mode (demonstrations, no question): a batched perplexity pass over the first
  ``rank_tokens`` of each block, only when blocks must be dropped, then the iterative pass.

Known failure modes: the contrast alone would drop the answer, a rare token the question does
not predict, so it only adds to ``u``. The coarse level trusts a 135M model's ranking (fused with
BM25, see ``ranking.py``); a relevant block ranked low is dropped whole. The pruned cache keeps
traces of dropped tokens in the kept tokens' keys and values (``reencode=True`` removes them for
one more pass over the kept tokens).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tokenlean.compressors.base import BLOCK_SEPARATOR, CompressionResult, join_prompt, resolve_target
from tokenlean.compressors.budget import fit_selection, plan_budget
from tokenlean.compressors.ranking import RANKINGS, rank_blocks
from tokenlean.compressors.scorer import CausalLMScorer, ScoringStream
from tokenlean.compressors.units import Piece, SpanRules, Unit, build_piece
from tokenlean.errors import ConfigError
from tokenlean.tokens import TokenCounter

__all__ = ["MODES", "LinguaCompressor", "LinguaConfig"]

Mode = Literal["auto", "question", "plain"]
MODES: tuple[str, ...] = ("auto", "question", "plain")
RESTRICTIVE = " We can get the answer to this question in the given documents."
_PREFIX_TOKENS = 256  # instruction tokens the stream conditions on: enough context, bounded cost


@dataclass(frozen=True, slots=True)
class LinguaConfig:
    """Tuning of the algorithm; the defaults are the ones the benchmark reports.

    ``slack``: the coarse level keeps blocks worth ``slack`` x the context budget, so the fine
    level deletes about ``1 - 1/slack`` of what survives. ``dynamic``: spread of the per-block
    rates by rank. ``None`` picks per mode: question mode ``slack=1, dynamic=1`` (on the HotpotQA
    dev split, dropping whole low-ranked documents kept the answer far more often than thinning
    all of them), plain mode ``slack=2, dynamic=0.3`` (demonstrations: thin several rather than
    keep one). ``contrast``: weight ``w`` of the question contrast. ``number_bonus``: nats added
    to a word holding a digit (numbers carry chain-of-thought and many answers). ``rank_tokens``:
    plain mode ranks blocks by the perplexity of their first tokens only. ``segment_tokens``: one
    iterative segment. ``reencode``: re-run each compressed segment for an exact prefix (one
    extra pass over the kept tokens) instead of pruning the cache. ``reorder``: best-ranked
    blocks first in the output (LongLLMLingua's reordering). ``ranking``: ``lm`` (the paper's
    question likelihood), ``lm+bm25`` (fused, with heading bridging; see ``ranking.py``) or
    ``bm25`` (BM25 and bridging alone: the LM then reads only the blocks the coarse level keeps).
    """

    mode: Mode = "auto"
    slack: float | None = None
    dynamic: float | None = None
    contrast: float = 1.0
    number_bonus: float = 3.0
    segment_tokens: int = 128
    rank_tokens: int = 128
    reencode: bool = False
    reorder: bool = False
    iterative: bool = True
    ranking: str = "lm+bm25"
    bridge: float = 3.0
    restrictive: str = ""
    protect_numbers: bool = False
    protect_entities: bool = False
    group_entities: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}", param="mode")
        if (self.slack is not None and self.slack < 1) or (self.dynamic is not None and self.dynamic < 0):
            raise ConfigError("need slack >= 1 and dynamic >= 0", param="slack")
        if self.segment_tokens < 8 or self.rank_tokens < 8:
            raise ConfigError("segment_tokens and rank_tokens must be >= 8", param="segment_tokens")
        if self.ranking not in RANKINGS:
            raise ConfigError(
                f"ranking must be one of {', '.join(RANKINGS)}, got {self.ranking!r}", param="ranking"
            )

    def levels(self, question: bool) -> tuple[float, float]:
        """``(slack, dynamic)`` for question or plain mode."""
        slack, dynamic = (1.0, 1.0) if question else (2.0, 0.3)
        return (
            self.slack if self.slack is not None else slack,
            self.dynamic if self.dynamic is not None else dynamic,
        )


class LinguaCompressor:
    """Compress instruction + context blocks + question with a local causal LM as the scorer.

    ``model`` is a Hugging Face folder or GGUF path (default: the embedded SmolLM2); ``scorer``
    shares an already loaded one. ``counter`` counts tokens of the model that will read the
    prompt (default: the scorer's own tokenizer).
    """

    def __init__(
        self,
        *,
        model: str | Path | None = None,
        scorer: CausalLMScorer | None = None,
        counter: TokenCounter | None = None,
        config: LinguaConfig | None = None,
        **overrides: Any,
    ) -> None:
        self.scorer = scorer or CausalLMScorer(model)
        self._counter = counter
        self.config = replace(config or LinguaConfig(), **overrides)

    def count(self, text: str) -> int:
        """Tokens of ``text`` in the target tokenizer."""
        if self._counter is not None:
            return self._counter.count(text)
        return len(self.scorer.tokenizer.encode(text, add_special_tokens=False))

    def compress(
        self,
        blocks: Sequence[str],
        *,
        instruction: str = "",
        question: str = "",
        rate: float | None = None,
        target_tokens: int | None = None,
        protect: Sequence[str] = (),
        mode: Mode | None = None,
    ) -> CompressionResult:
        """Compress ``blocks`` so the whole prompt fits ``rate`` or ``target_tokens``."""
        started = time.perf_counter()
        origin = self.count(join_prompt(instruction, blocks, question))
        target = resolve_target(origin, rate, target_tokens)
        use_question = self._use_question(mode or self.config.mode, question)
        rules = SpanRules(
            tuple(protect),
            self.config.protect_numbers,
            self.config.protect_entities,
            self.config.group_entities,
        )
        pieces = [build_piece(text, *self.scorer.encode(text), rules) for text in blocks]
        if target >= origin or not pieces:
            return _unchanged(blocks, instruction, question, origin, started)
        fixed = self.count(join_prompt(instruction, [], question))
        per_scorer_token = self.count(BLOCK_SEPARATOR.join(blocks)) / max(sum(p.tokens for p in pieces), 1)
        budget = (target - fixed - 2 * len(blocks)) / max(per_scorer_token, 1e-6)
        run = _Run(self, pieces, instruction, question, use_question)
        keep = run.select(budget)
        keep = fit_selection(
            keep, run.unit_scores, run.unit_costs, run.locked, lambda k: self.count(run.prompt(k)), target
        )
        return run.result(keep, origin, self.count(run.prompt(keep)), started)

    def _use_question(self, mode: str, question: str) -> bool:
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", param="mode")
        if mode == "question" and not question.strip():
            raise ConfigError("question mode needs a question", param="mode")
        return mode == "question" or (mode == "auto" and bool(question.strip()))


def _unchanged(
    blocks: Sequence[str], instruction: str, question: str, origin: int, started: float
) -> CompressionResult:
    return CompressionResult(
        prompt=join_prompt(instruction, blocks, question),
        blocks=tuple(blocks),
        instruction=instruction,
        question=question,
        origin_tokens=origin,
        compressed_tokens=origin,
        kept_blocks=tuple(range(len(blocks))),
        ms=(time.perf_counter() - started) * 1000,
    )


class _Run:
    """The state of one compression: pieces, ranking, per-token scores and per-unit decisions."""

    def __init__(
        self,
        owner: LinguaCompressor,
        pieces: list[Piece],
        instruction: str,
        question: str,
        use_question: bool,
    ) -> None:
        self.owner, self.config, self.scorer = owner, owner.config, owner.scorer
        self.pieces, self.instruction, self.question = pieces, instruction, question
        self.use_question = use_question
        self.order: list[int] = list(range(len(pieces)))
        self.output_order: list[int] = list(range(len(pieces)))
        self.local: list[np.ndarray | None] = [None] * len(pieces)
        self.unit_scores = [np.zeros(len(p.units)) for p in pieces]
        self.unit_costs = [np.array([u.tokens for u in p.units], dtype=float) for p in pieces]
        self.protected = [np.array([u.protected for u in p.units], dtype=bool) for p in pieces]
        self.locked = [mask.copy() for mask in self.protected]
        self.timings: dict[str, float] = {}

    def select(self, budget: float) -> list[np.ndarray]:
        """Coarse level, then the fine level over the kept blocks; per-unit keep masks."""
        sizes = [p.tokens for p in self.pieces]
        slack, dynamic = self.config.levels(self.use_question)
        lexical = self.use_question and self.config.ranking == "bm25"
        if lexical:
            self._rank_lexically()
        elif self.use_question or not self.config.iterative or sum(sizes) > budget * slack:
            self._rank()
        protected = [p.protected_tokens for p in self.pieces]
        plan = plan_budget(
            sizes, self.order, budget, protected_tokens=protected, slack=slack, dynamic=dynamic
        )
        kept = set(plan.kept)
        if lexical:
            self._score_kept(plan.kept)
        self.output_order = [
            i for i in (self.order if self.config.reorder else range(len(self.pieces))) if i in kept
        ]
        keep = [np.zeros(len(p.units), dtype=bool) for p in self.pieces]
        for i in range(len(self.pieces)):
            if i not in kept:
                self.locked[i][:] = True  # dropped whole: the fit step never brings a unit back
        self._prune(plan.rates, keep)
        return keep

    def _rank(self) -> None:
        """One batched pass: block surprisals (and, with a question, the question's likelihood)."""
        started = time.perf_counter()
        suffix: list[int] = []
        if self.use_question:
            suffix, _ = self.scorer.encode(BLOCK_SEPARATOR + self.question + self.config.restrictive)
        if self.use_question or not self.config.iterative:
            scored = self.scorer.score_blocks([p.ids for p in self.pieces], suffix)
            self.local = [s.surprisal for s in scored]
        else:  # demonstration level only needs a perplexity estimate: each block's head suffices
            scored = self.scorer.score_blocks([p.ids[: self.config.rank_tokens] for p in self.pieces])
        if self.use_question:
            texts = [p.text for p in self.pieces]
            likelihood = [s.suffix_logprob for s in scored]
            self.order = rank_blocks(
                self.question, texts, likelihood, method=self.config.ranking, bridge=self.config.bridge
            )
        else:  # LLMLingua's demonstration level: the most informative (highest perplexity) first
            key = [-float(np.mean(s.surprisal)) if len(s.surprisal) else 0.0 for s in scored]
            self.order = sorted(range(len(self.pieces)), key=lambda i: key[i])
        self.timings["rank_ms"] = (time.perf_counter() - started) * 1000

    def _rank_lexically(self) -> None:
        """BM25 and heading bridging only: no LM pass over the blocks the coarse level drops."""
        started = time.perf_counter()
        texts = [p.text for p in self.pieces]
        self.order = rank_blocks(self.question, texts, None, method="bm25", bridge=self.config.bridge)
        self.timings["rank_ms"] = (time.perf_counter() - started) * 1000

    def _score_kept(self, kept: Sequence[int]) -> None:
        """Block-local surprisal ``u`` of the kept blocks only (what ``_rank`` gives every block)."""
        started = time.perf_counter()
        scored = self.scorer.score_blocks([self.pieces[i].ids for i in kept])
        for index, scores in zip(kept, scored, strict=True):
            self.local[index] = scores.surprisal
        self.timings["score_ms"] = (time.perf_counter() - started) * 1000

    def _prune(self, rates: dict[int, float], keep: list[np.ndarray]) -> None:
        """The fine level: iterative segments on one stream, conditioned on the compressed prefix.

        In question mode the stream runs only when a kept block is thinned (0 < rate < 1). There
        the coarse level mostly keeps blocks whole (rate 1) and drops the rest, so no score would
        change a decision, and the fit step trims by the rank pass's surprisal instead of a
        second pass over every kept token.
        """
        started = time.perf_counter()
        thinned = any(0.0 < rates[i] < 1.0 for i in self.output_order)
        iterative = self.config.iterative and (thinned or not self.use_question)
        stream = self.scorer.stream(self._prefix()) if iterative else None
        separator, _ = self.scorer.encode(BLOCK_SEPARATOR)
        for position, index in enumerate(self.output_order):
            if stream is not None and position:
                stream.feed(separator)
            piece = self.pieces[index]
            for first, last in _segments(piece, self.config.segment_tokens):
                self._prune_segment(stream, index, first, last, rates[index], keep[index])
        self.timings["prune_ms"] = (time.perf_counter() - started) * 1000

    def _prefix(self) -> list[int]:
        """Question (question mode) and the instruction's last tokens: the stream's fixed context."""
        ids: list[int] = []
        if self.use_question:
            ids += self.scorer.encode(self.question + BLOCK_SEPARATOR)[0]
        if self.instruction.strip():
            ids += self.scorer.encode(self.instruction + BLOCK_SEPARATOR)[0][-_PREFIX_TOKENS:]
        return ids

    def _prune_segment(
        self, stream: ScoringStream | None, index: int, first: int, last: int, rate: float, keep: np.ndarray
    ) -> None:
        piece = self.pieces[index]
        units = piece.units[first:last]
        lo, hi = units[0].first_token, units[-1].end_token
        scores = self._unit_scores(stream, index, units, lo, hi)
        self.unit_scores[index][first:last] = scores
        if rate >= 1.0:
            chosen = np.ones(len(units), dtype=bool)
        else:
            chosen = _choose(
                scores,
                self.unit_costs[index][first:last],
                self.protected[index][first:last],
                rate * (hi - lo),
            )
        keep[first:last] = chosen
        if stream is not None:
            stream.keep(np.repeat(chosen, [u.tokens for u in units]), reencode=self.config.reencode)

    def _unit_scores(
        self, stream: ScoringStream | None, index: int, units: Sequence[Unit], lo: int, hi: int
    ) -> np.ndarray:
        """Token scores of one segment (iterative, question contrast) reduced to its units."""
        piece, local = self.pieces[index], self.local[index]
        if stream is not None:
            token_scores = stream.score(piece.ids[lo:hi])
            if self.use_question and local is not None:
                u = local[lo:hi]
                token_scores = u + self.config.contrast * (u - token_scores)
        else:
            token_scores = local[lo:hi] if local is not None else np.zeros(hi - lo, dtype=np.float32)
        shifted = replace_units(units, lo)
        scores = Piece(piece.text, piece.ids[lo:hi], shifted).unit_scores(
            np.asarray(token_scores, dtype=float)
        )
        if self.config.number_bonus:
            scores = scores + self.config.number_bonus * np.array([u.numeric for u in units], dtype=float)
        return scores

    def prompt(self, keep: list[np.ndarray]) -> str:
        """The prompt the reading model gets for these per-unit decisions."""
        texts = [self.pieces[i].render(keep[i]) for i in self.output_order]
        return join_prompt(self.instruction, texts, self.question)

    def result(
        self, keep: list[np.ndarray], origin: int, compressed: int, started: float
    ) -> CompressionResult:
        """Package the decisions as a ``CompressionResult``."""
        blocks = tuple(
            self.pieces[i].render(keep[i]) if i in self.output_order else "" for i in range(len(self.pieces))
        )
        return CompressionResult(
            prompt=self.prompt(keep),
            blocks=blocks,
            instruction=self.instruction,
            question=self.question,
            origin_tokens=origin,
            compressed_tokens=compressed,
            kept_blocks=tuple(i for i in self.output_order if blocks[i]),
            ms=(time.perf_counter() - started) * 1000,
            details=dict(self.timings),
        )


def replace_units(units: Sequence[Any], token_offset: int) -> tuple[Any, ...]:
    """Units re-based so their token indices count from ``token_offset``."""
    return tuple(
        replace(u, first_token=u.first_token - token_offset, end_token=u.end_token - token_offset)
        for u in units
    )


def _segments(piece: Piece, size: int) -> list[tuple[int, int]]:
    """Unit ranges of about ``size`` scorer tokens, cut at unit boundaries."""
    ranges, first, held = [], 0, 0
    for i, unit in enumerate(piece.units):
        if held and held + unit.tokens > size:
            ranges.append((first, i))
            first, held = i, 0
        held += unit.tokens
    if first < len(piece.units):
        ranges.append((first, len(piece.units)))
    return ranges


def _choose(scores: np.ndarray, costs: np.ndarray, protected: np.ndarray, quota: float) -> np.ndarray:
    """Protected units, then the highest-scoring units that still fit in ``quota`` tokens."""
    chosen = protected.copy()
    held = float(costs[chosen].sum())
    for u in np.argsort(-scores, kind="stable"):
        if chosen[u]:
            continue
        if held + costs[u] <= quota + 0.5:
            chosen[u] = True
            held += costs[u]
    return chosen
