"""The rows ``LocalBackend`` is decoding together, and how rows join them between steps.

Why iteration-level scheduling (Orca, OSDI '22; vLLM's continuous batching): with a batch formed
only when the worker is free, a request that arrives one step after a batch started waits for the
whole batch to finish, which at 160 tokens is seconds on this CPU. Requests that pass through
stages first (a cache lookup, a router) reach the engine a few milliseconds apart, so they missed
each other's batch and queued behind it. Here a newcomer is prefilled on its own, then joins the
running batch at the next step boundary.

How rows of different lengths share one cache: every row is left-padded. Joining pads the shorter
of the two caches on the left (zero keys and values, mask 0) and concatenates along the batch axis;
each row keeps its own positions, so the padding changes no row's attention. A row handed over
from the single-row path (``single_row.py``, drafting) joins the same way. When rows leave, the
columns that are padding for every row left are cut, so the width stays that of the longest row
running, however long the batch runs.

State between steps: every row's next token is chosen and already sent to its caller
(``pending``) but not yet run through the model; ``mask`` and ``positions`` describe what the
cache holds. Only caches of plain full-attention layers join (a sliding-window layer keeps a
window, not the prefix, so it cannot be padded); the backend decodes such rows without joining.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tokenlean.backends.local.decoding import RowDecoder

__all__ = ["Entry", "Forward", "RunningBatch", "left_pad"]

Entry = tuple[Any, int, RowDecoder]  # (job, row index within the job, row)
Forward = Callable[[Any, Any, Any, Any], Any]  # (ids, mask, positions, cache) -> last logits per row
Step = Callable[[Entry, Any], int]  # choose and send one row's next token


@dataclass(eq=False)
class RunningBatch:
    """Rows decoding together: their shared cache and the token each runs next."""

    entries: list[Entry]
    cache: Any
    mask: Any  # [rows, cached positions]: 1 where a row has a token, 0 for its left padding
    positions: Any  # [rows, 1]: the position of each row's last cached token
    pending: list[int]

    @classmethod
    def prefill(
        cls, entries: list[Entry], prompts: Sequence[Sequence[int]], forward: Forward, pad_id: int
    ) -> tuple[RunningBatch, Any]:
        """Run the prompts as one left-padded batch; return it (nothing pending yet) and its logits."""
        from transformers import DynamicCache

        ids, mask = left_pad(prompts, pad_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = forward(ids, mask, positions, cache)
        return cls(entries, cache, mask, positions[:, -1:], []), logits

    @classmethod
    def of_one(cls, entry: Entry, cache: Any, cached_tokens: int, pending: int) -> RunningBatch:
        """One row whose cache holds ``cached_tokens`` tokens and whose next token is ``pending``."""
        batch = cls.of_rows([entry], cache, cached_tokens)
        batch.pending = [pending]
        return batch

    @classmethod
    def of_rows(cls, entries: list[Entry], cache: Any, cached_tokens: int) -> RunningBatch:
        """Rows whose caches (one batch row each) hold the same ``cached_tokens`` tokens; nothing pending."""
        import torch

        mask = torch.ones(len(entries), cached_tokens, dtype=torch.long)
        positions = torch.full((len(entries), 1), cached_tokens - 1, dtype=torch.long)
        return cls(entries, cache, mask, positions, [])

    def choose(self, logits: Any, step: Step) -> None:
        """Choose every row's next token from ``logits`` (row order) and drop the rows that ended."""
        tokens = [step(entry, logits[k]) for k, entry in enumerate(self.entries)]
        keep = [k for k, (_, _, row) in enumerate(self.entries) if not row.done]
        self.pending = [tokens[k] for k in keep]
        if len(keep) == len(self.entries):
            return
        self.entries = [self.entries[k] for k in keep]
        if keep:
            import torch

            index = torch.tensor(keep)
            self.cache.batch_select_indices(index)
            self.mask, self.positions = self.mask[index], self.positions[index]
            self._drop_shared_padding()

    def _drop_shared_padding(self) -> None:
        """Cut the leading cache columns that are padding for every row still running.

        Why: a batch kept fed by new requests never ends, and each step adds a column while each
        newcomer is padded to the batch's width, so without this the width only grows: every row
        then pays, in attention and in the cache copy each step makes, for the longest prompt the
        batch ever held and for every step it ever ran. Rows keep their own positions, so cutting
        columns nobody attends to changes no row's output. Slicing makes views; the next step's
        cache update copies only the columns kept.
        """
        used = self.mask.any(dim=0)
        first = int(used.to(self.mask.dtype).argmax())  # the first column some row attends to
        if first == 0:
            return
        for layer in self.cache.layers:
            layer.keys = layer.keys[..., first:, :]
            layer.values = layer.values[..., first:, :]
        self.mask = self.mask[:, first:]

    def advance(self, forward: Forward) -> Any:
        """Run every row's pending token; return the logits for the token after it."""
        import torch

        ids = torch.tensor([[token] for token in self.pending])
        self.mask = torch.cat([self.mask, torch.ones(len(self.pending), 1, dtype=self.mask.dtype)], dim=1)
        self.positions = self.positions + 1
        return forward(ids, self.mask, self.positions, self.cache)

    def absorb(self, other: RunningBatch) -> None:
        """Take ``other``'s rows into this batch (both must have every row's next token pending)."""
        import torch

        if not other.entries:  # every row of ``other`` ended on its first token
            return
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, width), _pad_left(theirs.keys, width)])
            mine.values = torch.cat([_pad_left(mine.values, width), _pad_left(theirs.values, width)])
        self.mask = torch.cat([_pad_left(self.mask, width), _pad_left(other.mask, width)])
        self.positions = torch.cat([self.positions, other.positions])
        self.entries += other.entries
        self.pending += other.pending


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Token ids right-aligned in one tensor, and the mask that marks the real tokens."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, sequence in enumerate(sequences):
        ids[i, width - len(sequence) :] = torch.tensor(list(sequence), dtype=torch.long)
        mask[i, width - len(sequence) :] = 1
    return ids, mask


def _pad_left(tensor: Any, width: int) -> Any:
    """``tensor`` with zeros prepended along its sequence axis (dim 1 of a mask, -2 of keys)."""
    import torch

    axis = 1 if tensor.dim() == 2 else -2
    missing = width - tensor.shape[axis]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=axis)
