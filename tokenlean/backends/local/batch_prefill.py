"""Prefilling the requests that start or join a running batch, reusing cached prompt prefixes.

Why: under concurrency rows decode in batches, and a batch's rows used to neither read nor fill
the ``PrefixCache`` (only a request decoding alone did), so concurrent requests that send the same
few-shot examples or long system prompt each prefilled it in full, and each newcomer's prefill
paused the running rows for that long. Now a request whose prompt starts with a cached prefix
runs only the rest of its prompt, on a copy of that prefix's cache; the others run as one
left-padded batch, and each of their prompts is kept for later requests.

A model with sliding-window layers (Gemma 3) gets no prefix cache here: the single-row path
refuses to keep such caches, and a batch's plain cache must not be handed to it as one. A job
with ``n`` rows runs its prompt once and repeats the cache per row. The reused keys and
values come from a different pass shape than a full prefill, so logits can differ in the last
float bits, as on the single-row path (docs/speculative.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenlean.backends.local.jobs import Job
from tokenlean.backends.local.kv import forward_tokens
from tokenlean.backends.local.prefix_cache import PrefixCache, row_cache
from tokenlean.backends.local.running import Entry, Forward, RunningBatch
from tokenlean.middleware.types import Event

__all__ = ["BatchPrefill"]


@dataclass(frozen=True)
class BatchPrefill:
    """Prefills entries into a ``RunningBatch`` with every row's first token chosen and sent."""

    model: Any
    forward: Forward
    step: Callable[[Entry, Any], int]
    pad_id: int
    prefix_cache: PrefixCache | None

    def __call__(self, entries: list[Entry]) -> RunningBatch:
        warm: list[RunningBatch] = []
        cold: list[Entry] = []
        for job, rows in _by_job(entries):
            reused = self._reuse(job, rows)
            if reused is None:
                cold += rows
            else:
                warm.append(reused)
        batches = ([self._prefill_cold(cold)] if cold else []) + warm
        running = next((b for b in batches if b.entries), batches[0])
        for other in batches:
            if other is not running:
                running.absorb(other)
        return running

    def _reuse(self, job: Job, rows: list[Entry]) -> RunningBatch | None:
        """The job's rows on a cached prefix of its prompt, or None (a miss, or no prefix cache)."""
        if self.prefix_cache is None:
            return None
        prompt = job.prompt_ids
        taken = self.prefix_cache.take(prompt)
        reused = taken[1] if taken is not None else 0
        job.events = [_prefix_event(reused, len(prompt))]
        if taken is None:
            return None
        cache = taken[0]
        logits = forward_tokens(self.model, cache, prompt[reused:])[-1:]
        if len(rows) > 1:
            cache.batch_repeat_interleave(len(rows))
            logits = logits.repeat(len(rows), 1)  # a row's sampler may write to its logits
        batch = RunningBatch.of_rows(rows, cache, len(prompt))
        batch.choose(logits, self.step)
        return batch

    def _prefill_cold(self, entries: list[Entry]) -> RunningBatch:
        """The entries' prompts as one left-padded batch; each prompt is kept for later requests."""
        prompts = [job.prompt_ids for job, _, _ in entries]
        fresh, logits = RunningBatch.prefill(entries, prompts, self.forward, self.pad_id)
        if self.prefix_cache is not None:
            for row, (job, index, _) in enumerate(entries):
                # a job's rows share one prompt; a prompt too short to be kept is not copied
                if index == 0 and len(job.prompt_ids) >= self.prefix_cache.min_tokens:
                    self.prefix_cache.put(job.prompt_ids, row_cache(fresh.cache, row, len(job.prompt_ids)))
        fresh.choose(logits, self.step)
        return fresh


def _by_job(entries: list[Entry]) -> list[tuple[Job, list[Entry]]]:
    groups: dict[int, tuple[Job, list[Entry]]] = {}
    for entry in entries:
        groups.setdefault(id(entry[0]), (entry[0], []))[1].append(entry)
    return list(groups.values())


def _prefix_event(reused: int, prompt_tokens: int) -> Event:
    action = "hit" if reused else "miss"
    return Event("prefix", action, data={"reused_tokens": reused, "prefill_tokens": prompt_tokens - reused})
