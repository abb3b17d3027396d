"""A request in flight in the embedded engine, and how its rows' output reaches the caller.

The worker thread owns the model; each request becomes a ``Job`` whose chunks go back to the
caller's event loop through an asyncio queue (thread-safe hand-off), so streaming is token by
token and a caller that went away is noticed (``cancelled``) at the next token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tokenlean.backends.local.decoding import RowDecoder
from tokenlean.backends.local.single_row import DraftPlan
from tokenlean.middleware.types import Chunk, Event, Usage

__all__ = ["Job", "eos_ids", "row_generator", "send_token"]


@dataclass(eq=False)
class Job:
    """One request in flight: its rows (n of them) and the queue its chunks go to."""

    prompt_ids: list[int]
    rows: list[RowDecoder]
    loop: asyncio.AbstractEventLoop
    chunks: asyncio.Queue[Chunk | BaseException | None]
    plan: DraftPlan = field(default_factory=lambda: DraftPlan("off"))
    events: list[Event] = field(default_factory=list)
    readers: list[Any] | None = None  # ToolCallReader per row: rows read back as tool calls
    cancelled: bool = False
    open_rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.open_rows = len(self.rows)

    def send(self, item: Chunk | BaseException | None) -> None:
        """Hand ``item`` to the caller's event loop (thread-safe); a closed loop means nobody listens."""
        try:
            self.loop.call_soon_threadsafe(self.chunks.put_nowait, item)
        except RuntimeError:
            self.cancelled = True

    def usage(self) -> Usage:
        """Prompt tokens once (as OpenAI counts them for n>1) plus every row's completion."""
        return Usage(len(self.prompt_ids), sum(len(row.token_ids) for row in self.rows))


def send_token(job: Job, index: int, row: RowDecoder, token: int) -> None:
    """Record ``token`` in ``row`` and send the text (and logprobs) it released."""
    text = row.advance(token)
    text, calls = job.readers[index].feed(text) if job.readers else (text, ())  # tool-call deltas
    logprobs = (row.logprobs[-1],) if row.settings.logprobs else None
    if text or logprobs or calls:
        job.send(Chunk(index, text, logprobs=logprobs, tool_calls=calls))


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every id that ends generation: the generation config's and the tokenizer's."""
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found


def row_generator(seed: int | None, row: int) -> Any:
    """A seeded torch generator per row (``seed + row``), so ``n`` seeded rows differ yet repeat."""
    if seed is None:
        return None
    import torch

    return torch.Generator().manual_seed(seed + row)
