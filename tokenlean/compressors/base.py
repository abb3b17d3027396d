"""The ``Compressor`` protocol, its result, and the budget arithmetic every compressor shares.

A compressor takes a prompt in three parts (an instruction, context blocks such as documents or
demonstrations, and a question) and returns a shorter one under a token budget. The budget is set
by ``rate`` (kept fraction of the whole prompt, LLMLingua's convention: 0.5 is 2x) or by
``target_tokens``, and it is counted in the tokenizer of the model that will read the prompt
(``tokenlean.tokens``), not in the scorer's or in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tokenlean.errors import ConfigError

__all__ = ["BLOCK_SEPARATOR", "CompressionResult", "Compressor", "join_prompt", "resolve_target"]

BLOCK_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class CompressionResult:
    """What a compression produced, with the figures a caller reports.

    ``blocks[i]`` is the compressed text of input block ``i`` (``""`` when the block was dropped
    whole), so a caller that split a chat request into blocks can put each one back where it was.
    Token counts are in the target tokenizer and cover the whole prompt (instruction, blocks,
    question), as ``prompt`` joins them.
    """

    prompt: str
    blocks: tuple[str, ...]
    instruction: str = ""
    question: str = ""
    origin_tokens: int = 0
    compressed_tokens: int = 0
    kept_blocks: tuple[int, ...] = ()
    ms: float = 0.0
    details: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Original over compressed tokens (2.0 means the prompt is half as long)."""
        return self.origin_tokens / max(self.compressed_tokens, 1)


@runtime_checkable
class Compressor(Protocol):
    """Shortens a prompt under a budget; implementations are synchronous and CPU/GPU bound.

    The stage runs ``compress`` in a worker thread (``asyncio.to_thread``), so a compressor may
    block; it must not touch the event loop.
    """

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
        """Compress ``blocks`` (instruction and question kept) to ``rate`` or ``target_tokens``."""
        ...


def join_prompt(instruction: str, blocks: Sequence[str], question: str) -> str:
    """The prompt as the target model reads it: non-empty parts joined by blank lines."""
    parts = [instruction, *blocks, question]
    return BLOCK_SEPARATOR.join(part for part in parts if part.strip())


def resolve_target(origin_tokens: int, rate: float | None, target_tokens: int | None) -> int:
    """The token budget for the whole prompt from ``rate`` or ``target_tokens`` (exactly one).

    ``ConfigError`` for values no caller could mean; the stage checks per-request options before
    this and raises ``BadRequestError`` naming the option.
    """
    if (rate is None) == (target_tokens is None):
        raise ConfigError("give exactly one of rate and target_tokens", param="rate")
    if target_tokens is not None:
        if isinstance(target_tokens, bool) or not isinstance(target_tokens, int) or target_tokens <= 0:
            raise ConfigError(
                f"target_tokens must be a positive integer, got {target_tokens!r}", param="target_tokens"
            )
        return min(target_tokens, origin_tokens)
    assert rate is not None
    if isinstance(rate, bool) or not 0 < rate <= 1:
        raise ConfigError(f"rate must be in (0, 1], got {rate!r}", param="rate")
    return max(1, round(origin_tokens * rate))
