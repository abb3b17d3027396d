"""Prefilling the requests that start or join a running batch, reusing cached prompt prefixes.

Why: under concurrency rows decode in batches, and a batch's rows used to neither read nor fill
the ``PrefixCache`` (only a request decoding alone did), so concurrent requests that send the same
few-shot examples or long system prompt each prefilled it in full, and each newcomer's prefill
paused the running rows for that long. Now a request whose prompt starts with a cached prefix
runs only the rest of its prompt, on a copy of that prefix's cache; the others run as one
left-padded batch, and each of their prompts is kept for later requests. Requests that start
together and share a prefix nothing holds yet (a burst of requests with one new few-shot block)
run that prefix once: it is kept, and all but the first of them reuse it.

A model with sliding-window layers (Gemma 3) gets no prefix cache here: the single-row path
refuses to keep such caches, and a batch's plain cache must not be handed to it as one. A job
with ``n`` rows runs its prompt once and repeats the cache per row. The reused keys and
values come from a different pass shape than a full prefill, so logits can differ in the last
float bits, as on the single-row path (docs/speculative.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenlean.backends.local.jobs import Job
from tokenlean.backends.local.kv import forward_tokens, new_cache
from tokenlean.backends.local.prefix_cache import PrefixCache, common_prefix, copy_prefix, row_cache
from tokenlean.backends.local.running import Entry, Forward, RunningBatch
from tokenlean.middleware.types import Event

__all__ = ["BatchPrefill", "shared_prefixes"]


@dataclass(frozen=True)
class BatchPrefill:
    """Prefills entries into a ``RunningBatch`` with every row's first token chosen and sent."""

    model: Any
    forward: Forward
    step: Callable[[Entry, Any], int]
    pad_id: int
    prefix_cache: PrefixCache | None

    def __call__(self, entries: list[Entry]) -> RunningBatch:
        jobs = _by_job(entries)
        warm = self._share_prefixes(jobs)
        cold: list[Entry] = []
        for job, rows in jobs:
            if id(job) in warm:
                continue
            reused = self._reuse(job, rows)
            if reused is None:
                cold += rows
            else:
                warm[id(job)] = reused
        batches = ([self._prefill_cold(cold)] if cold else []) + list(warm.values())
        running = next((b for b in batches if b.entries), batches[0])
        for other in batches:
            if other is not running:
                running.absorb(other)
        return running

    def _share_prefixes(self, jobs: list[tuple[Job, list[Entry]]]) -> dict[int, RunningBatch]:
        """Jobs starting together whose prompts share a prefix that no cache entry holds (the same
        few-shot block sent by concurrent requests): the prefix runs once and is kept, and the
        first job of each group continues from it here (its event: a miss, since it paid for the
        prefix). The group's other jobs then hit the kept prefix in ``_reuse``."""
        if self.prefix_cache is None or len(jobs) < 2:
            return {}
        prompts = [job.prompt_ids for job, _ in jobs]
        started: dict[int, RunningBatch] = {}
        for group, length in shared_prefixes(prompts, self.prefix_cache.min_tokens):
            payer, rows = jobs[group[0]]
            if self.prefix_cache.longest(payer.prompt_ids) + self.prefix_cache.min_tokens > length:
                continue  # a kept entry already covers about as much
            cache = new_cache(self.model)
            forward_tokens(self.model, cache, payer.prompt_ids[:length])
            self.prefix_cache.put(payer.prompt_ids[:length], cache)
            payer.events = [_prefix_event(0, len(payer.prompt_ids))]
            started[id(payer)] = self._continue(payer, rows, copy_prefix(cache, length), length)
        return started

    def _reuse(self, job: Job, rows: list[Entry]) -> RunningBatch | None:
        """The job's rows on a cached prefix of its prompt, or None (a miss, or no prefix cache)."""
        if self.prefix_cache is None:
            return None
        taken = self.prefix_cache.take(job.prompt_ids)
        reused = taken[1] if taken is not None else 0
        job.events = [_prefix_event(reused, len(job.prompt_ids))]
        if taken is None:
            return None
        return self._continue(job, rows, taken[0], reused)

    def _continue(self, job: Job, rows: list[Entry], cache: Any, reused: int) -> RunningBatch:
        """The job's rows after running the rest of its prompt on ``cache`` (its first ``reused`` tokens)."""
        prompt = job.prompt_ids
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


def shared_prefixes(prompts: list[list[int]], minimum: int) -> list[tuple[list[int], int]]:
    """Groups of two or more prompts (their indexes) sharing a prefix of at least ``minimum``
    tokens, with that prefix's length: at most all but one token of each prompt (the last
    token's logits choose the first new token).

    Sorted, a run of prompts shares a prefix as long as the shortest common prefix of its
    neighbours, so the groups are runs of the sorted prompts. They are chosen to save the most
    prefill, ``(size - 1) * length`` summed over groups (dynamic programming over where runs
    end; a batch holds a few dozen prompts at most): two requests sharing a long few-shot block
    are not merged, down to the short system prompt, with a third that shares only that."""
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    links = [common_prefix(prompts[a], prompts[b]) for a, b in itertools.pairwise(order)]
    # best[i]: (prefill saved among the first i sorted prompts, where the last run starts, its prefix length)
    best: list[tuple[int, int, int]] = [(0, 0, 0)]
    for end in range(1, len(order) + 1):
        choice = (best[end - 1][0], end - 1, 0)  # the last prompt alone
        length = len(prompts[order[end - 1]]) - 1
        for first in range(end - 2, -1, -1):
            length = min(length, links[first], len(prompts[order[first]]) - 1)
            if length < minimum:
                break
            if best[first][0] + (end - first - 1) * length > choice[0]:
                choice = (best[first][0] + (end - first - 1) * length, first, length)
        best.append(choice)
    groups: list[tuple[list[int], int]] = []
    end = len(order)
    while end > 0:
        _, first, length = best[end]
        if end - first > 1:
            groups.append((sorted(order[first:end]), length))
        end = first
    return sorted(groups)


def _by_job(entries: list[Entry]) -> list[tuple[Job, list[Entry]]]:
    groups: dict[int, tuple[Job, list[Entry]]] = {}
    for entry in entries:
        groups.setdefault(id(entry[0]), (entry[0], []))[1].append(entry)
    return list(groups.values())


def _prefix_event(reused: int, prompt_tokens: int) -> Event:
    action = "hit" if reused else "miss"
    return Event("prefix", action, data={"reused_tokens": reused, "prefill_tokens": prompt_tokens - reused})
