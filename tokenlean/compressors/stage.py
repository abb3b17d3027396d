"""``CompressionStage``: LLMLingua-style compression of the context in a chat request.

The stage cuts the request into context blocks under its policy (``tokenlean.compressors.chat``),
compresses them with ``LinguaCompressor`` in a worker thread (the scorer is a model: it must not
block the event loop), puts them back, and reports tokens before and after in a ``compressed``
event. Requests below ``min_prompt_tokens`` pass through untouched with a ``skipped`` event:
compressing a short prompt costs more time than it saves. With ``max_wait_s`` set, so does a
request that would wait longer than that for the shared scorer (reason ``busy``,
``tokenlean.compressors.backlog``): under a burst the queue stays bounded instead of every request
waiting for every compression ahead of it.

Per request (``extra_body={"tokenlean": {"compress": {...}}}``): ``rate`` (kept fraction, 0.5 is
2x) or ``target_tokens``, ``mode`` (auto, question, plain), ``off``, ``protect`` (strings kept
verbatim), ``min_prompt_tokens``, ``last_user`` (blocks, keep). See ``options.py`` and
docs/config-reference.md.

Compression changes the prompt, which would defeat a backend's prefix cache across requests that
share long context. So worked examples at the start of the context are compressed once, without
the question, and reused byte for byte (``reuse_examples``, ``tokenlean.compressors.examples``),
and the lean profile keeps the system prompt whole (its roles).

Known failure mode: documents sent again with each new question ("chat with this file") are
compressed again each time, with that question, so their prefix is not shared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from tokenlean.compressors.backlog import ScorerBacklog
from tokenlean.compressors.base import BLOCK_SEPARATOR, Compressor, join_prompt
from tokenlean.compressors.chat import (
    DEFAULT_ROLES,
    ChatSplit,
    prefix_digests,
    rebuild_request,
    split_request,
)
from tokenlean.compressors.examples import ExampleMemo, leading_examples
from tokenlean.compressors.lingua import LinguaCompressor, LinguaConfig
from tokenlean.compressors.options import (
    CompressCallOptions,
    CompressOptions,
    CompressSpecOptions,
    parse_request_options,
)
from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Event, Request, Response
from tokenlean.tokens import TokenCounter, shared_token_counter

__all__ = ["CompressionStage"]

WARM_UP_TEXT = (
    "The committee met on Tuesday to review the budget. It approved the new library, delayed the "
    "road repairs until spring and asked for a second estimate of the school roof."
)


class CompressionStage:
    """Compress system/context messages and document blocks before the backend sees them.

    ``model``: the scorer (a Hugging Face folder or GGUF path; default the embedded SmolLM2).
    ``target_model``: the tokenizer budgets are counted in (default: the embedded model's; name
    the served model's folder when it differs). ``compressor`` replaces the whole algorithm.
    ``max_wait_s``: the longest estimated wait for the scorer a request accepts; over it the
    request goes on uncompressed (``None``: wait as long as it takes). ``reuse_examples``:
    worked examples at the start of the context are compressed once, without the question, and
    reused (``examples.py``), so the scorer skips them and the upstream's prefix cache matches.
    """

    name: ClassVar[str] = "compress"
    options_model: ClassVar[type[CompressCallOptions]] = CompressCallOptions
    spec_model: ClassVar[type[CompressSpecOptions]] = CompressSpecOptions

    def __init__(
        self,
        *,
        rate: float | None = 0.5,
        target_tokens: int | None = None,
        mode: str = "auto",
        min_prompt_tokens: int = 400,
        min_block_tokens: int = 48,
        roles: Sequence[str] = DEFAULT_ROLES,
        last_user: str = "blocks",
        protect: Sequence[str] = (),
        protect_numbers: bool = False,
        protect_entities: bool = False,
        model: str | Path | None = None,
        target_model: str | Path | None = None,
        device: str = "cpu",
        compressor: Compressor | None = None,
        counter: TokenCounter | None = None,
        tuning: dict[str, Any] | None = None,
        max_wait_s: float | None = None,
        reuse_examples: bool = True,
    ) -> None:
        if max_wait_s is not None and max_wait_s < 0:
            raise ConfigError(
                f"stage compress: max_wait_s must be >= 0, got {max_wait_s}", param="max_wait_s"
            )
        self.max_wait_s = max_wait_s
        self.backlog = ScorerBacklog()
        self.reuse_examples = reuse_examples
        self.examples = ExampleMemo()
        self.defaults = _spec_defaults(rate, target_tokens, mode, min_prompt_tokens, last_user, protect)
        self.roles = tuple(roles)
        self.min_block_tokens = min_block_tokens
        self._counter = counter
        self._target_model = target_model
        if compressor is None:
            config = LinguaConfig(
                protect_numbers=protect_numbers, protect_entities=protect_entities, **(tuning or {})
            )
            from tokenlean.compressors.scorer import CausalLMScorer

            scorer = CausalLMScorer(model, device=device)
            compressor = LinguaCompressor(scorer=scorer, counter=_LazyCounter(self), config=config)
        self.compressor = compressor

    @property
    def counter(self) -> TokenCounter:
        """The target tokenizer's counter, loaded on first use."""
        if self._counter is None:
            self._counter = shared_token_counter(self._target_model)
        return self._counter

    async def warm_up(self) -> None:
        """Load the token counter and the scorer before the first long prompt needs them: one small
        compression, off the event loop."""
        await asyncio.to_thread(self.counter.count, WARM_UP_TEXT)
        await asyncio.to_thread(self.compressor.compress, [WARM_UP_TEXT], rate=0.5)

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        """Compress the request's context blocks, then call the rest of the pipeline."""
        options = parse_request_options(request.option(self.name), self.defaults)
        if options is None:
            return await call_next(request)
        started = time.perf_counter()
        compressed, data = await asyncio.to_thread(self._compress, request, options)
        ms = (time.perf_counter() - started) * 1000
        response = await call_next(compressed if compressed is not None else request)
        action = "compressed" if compressed is not None else "skipped"
        return response.with_event(Event(self.name, action, round(ms, 3), data))

    def _compress(self, request: Request, options: CompressOptions) -> tuple[Request | None, dict[str, Any]]:
        """Runs in a worker thread: split, check the size, compress, rebuild."""
        count = self.counter.count
        split = split_request(
            request,
            count,
            roles=self.roles,
            min_block_tokens=self.min_block_tokens,
            last_user=options.last_user,
        )
        before = count(join_prompt(split.instruction, split.blocks, split.question))
        if before < options.min_prompt_tokens or not split.blocks:
            reason = "short" if before < options.min_prompt_tokens else "no blocks"
            return None, {"reason": reason, "tokens_before": before, "tokens_after": before}
        examples, key = self._examples(request, split, options)
        scorer_free = examples == len(split.blocks) and self.examples.has(key)
        if not scorer_free:
            admitted, wait = self.backlog.admit(before, self.max_wait_s)
            if not admitted:
                waits = None if wait is None else round(wait, 2)  # None: busy, no speed measured yet
                return None, {
                    "reason": "busy",
                    "tokens_before": before,
                    "tokens_after": before,
                    "wait_s": waits,
                }
        try:
            blocks, data = self._compress_blocks(split, options, examples, key, before)
        finally:
            if not scorer_free:
                self.backlog.finish(before)
        after = count(join_prompt(split.instruction, [b for b in blocks if b], split.question))
        dropped = sum(1 for b in blocks if not b)
        return rebuild_request(request, split, blocks), {
            "tokens_before": before,
            "tokens_after": after,
            "tokens_saved": before - after,
            "ratio": round(before / max(after, 1), 3),
            "blocks": len(split.blocks),
            "blocks_dropped": dropped,
            **data,
        }

    def _examples(
        self, request: Request, split: ChatSplit, options: CompressOptions
    ) -> tuple[int, tuple[str, ...]]:
        """How many leading blocks are worked examples, and the memo key of their compressed text.

        The key is the digest of the prompt up to the last example (everything before them
        included), the rate and the protected strings: what the compressed text depends on. A
        request that asks for ``mode: question`` gets its examples compressed with its question.
        """
        if not self.reuse_examples or options.rate is None or options.mode == "question":
            return 0, ()
        count = leading_examples(split.blocks)
        if not count:
            return 0, ()
        return count, (prefix_digests(request, split)[count - 1], repr(options.rate), *options.protect)

    def _compress_blocks(
        self, split: ChatSplit, options: CompressOptions, examples: int, key: tuple[str, ...], whole: int
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """The compressed blocks: the examples from the memo (or computed once), the rest per request.

        ``whole`` is the request's token count; the block budget is only worked out when the
        scorer runs (a memo miss, or blocks after the examples), so a memo hit counts nothing more.
        """
        mode = options.mode if split.question or options.mode != "question" else "plain"
        if not examples:
            blocks = self._run(
                split.blocks,
                split.instruction,
                split.question,
                options,
                mode,
                rate=options.rate,
                target_tokens=options.target_tokens,
            )
            return blocks, {"mode": mode}
        head, rest = split.blocks[:examples], split.blocks[examples:]
        budget = self._block_budget(split, options, whole) if rest else None

        def compute() -> tuple[str, ...]:
            rate, _ = budget or self._block_budget(split, options, whole)
            return self._run(head, "", "", options, "plain", rate=rate)

        compressed, hit = self.examples.compressed(key, compute)
        data: dict[str, Any] = {
            "examples": examples,
            "examples_memo": "hit" if hit else "miss",
            "mode": "plain",
        }
        if budget is not None:
            rate, fixed = budget
            target = round(fixed + rate * self.counter.count(BLOCK_SEPARATOR.join(rest)))
            compressed += self._run(
                rest, split.instruction, split.question, options, mode, target_tokens=target
            )
            data["mode"] = mode
        return compressed, data

    def _block_budget(self, split: ChatSplit, options: CompressOptions, whole: int) -> tuple[float, int]:
        """The blocks' keep rate that meets the request's rate with instruction and question whole,
        and the tokens of those two.

        The request that first compresses an example run sets its rate; later ones reuse that text,
        so their ratios differ from the rate by their questions' lengths only.
        """
        assert options.rate is not None  # examples are only reused under a rate
        count = self.counter.count
        fixed = count(join_prompt(split.instruction, [], split.question))
        blocks = count(BLOCK_SEPARATOR.join(split.blocks))
        return min(1.0, max(0.05, (options.rate * whole - fixed) / max(blocks, 1))), fixed

    def _run(
        self,
        blocks: Sequence[str],
        instruction: str,
        question: str,
        options: CompressOptions,
        mode: str,
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
    ) -> tuple[str, ...]:
        """One call of the compressor; its blocks, aligned with ``blocks`` (``""`` for a dropped one)."""
        result = self.compressor.compress(
            blocks,
            instruction=instruction,
            question=question,
            rate=rate,
            target_tokens=target_tokens,
            protect=options.protect,
            **({"mode": mode} if isinstance(self.compressor, LinguaCompressor) else {}),
        )
        return result.blocks


def _spec_defaults(
    rate: float | None,
    target_tokens: int | None,
    mode: str,
    min_prompt_tokens: int,
    last_user: str,
    protect: Sequence[str],
) -> CompressOptions:
    """The spec's options, checked with the per-request rules but raised as ``ConfigError``."""
    raw = {
        "rate": None if target_tokens is not None else rate,
        "target_tokens": target_tokens,
        "mode": mode,
        "min_prompt_tokens": min_prompt_tokens,
        "last_user": last_user,
        "protect": list(protect),
    }
    try:
        parsed = parse_request_options({k: v for k, v in raw.items() if v is not None}, CompressOptions())
    except BadRequestError as exc:
        raise ConfigError(f"stage compress: {exc.message}", param=exc.param) from exc
    assert parsed is not None  # "off" is not a spec option
    return parsed


class _LazyCounter:
    """The stage's target counter, resolved when the compressor first counts (in the worker thread)."""

    def __init__(self, stage: CompressionStage) -> None:
        self._stage = stage

    def count(self, text: str) -> int:
        """Tokens of ``text`` in the stage's target tokenizer."""
        return self._stage.counter.count(text)
