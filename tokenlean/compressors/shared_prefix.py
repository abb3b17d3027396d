"""Shared prefixes: context that many requests send verbatim is compressed once and reused.

Few-shot examples (a chain-of-thought prompt, a classification template) arrive again and again
at the start of requests. Compressing them per request, with each request's question, has two
costs: the scorer runs on the same text every time (seconds of CPU per request), and every
request's prefix comes out different, so the upstream's prefix cache (vLLM's automatic prefix
caching, the embedded backend's KV reuse, a paid API's cached-token discount) never matches.

So the stage remembers a digest of each request's text up to the end of each context block. When
a new request's leading blocks were already sent, in the same order after the same text, by an
earlier request, and they read as worked examples (``looks_like_demonstrations``), they are
compressed *without* the question (LLMLingua's own setting for demonstrations: perplexity alone,
at the request's rate) and the result is kept, so every later request gets the same bytes without
running the scorer. Blocks after the shared run are compressed with the question as usual.

Only examples: a document sent again with a new question ("chat with this file") keeps
question-aware compression, because without the question the answer survives less often (HotpotQA,
30 contexts at 2x: 23 kept the answer without the question, 27 with it). The first request of a
template still pays the scorer and is compressed with its question: a block's first sighting
cannot tell a template from a one-off.

Known failure mode: the example test reads a shared label (``Question:``, ``Review:``) at the
start of most blocks; retrieved passages all opening with the same label that is not a document
word (say ``Snippet:``) are taken for examples and compressed without the question.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["MIN_SHARED_TOKENS", "SharedPrefixMemo", "SharedRun", "looks_like_demonstrations"]

MIN_SHARED_TOKENS = 256  # below this a shared run saves too little prefill to give up the question
SEEN_ENTRIES = 4096  # block digests remembered (a digest is 32 bytes)
MEMO_ENTRIES = 64  # compressed shared runs kept (a few kB of text each)
_LABEL = re.compile(r"\s*([A-Za-z][A-Za-z0-9 ]{0,24}):")
DOCUMENT_LABELS = frozenset({"article", "context", "doc", "document", "passage", "source", "text", "title"})


def looks_like_demonstrations(blocks: Sequence[str]) -> bool:
    """Whether ``blocks`` read as worked examples: at least two, and 80% of them, open with one label.

    Few-shot blocks repeat a format (``Question:``, ``Q:``, ``Review:``, ``Input:``); retrieved
    documents open with their titles. Labels that name documents (``Passage:``, ``Document:``)
    are not taken as examples: those blocks keep question-aware compression.
    """
    labels = [match.group(1).strip().lower() for block in blocks if (match := _LABEL.match(block))]
    if len(blocks) < 2 or not labels:
        return False
    label, times = Counter(labels).most_common(1)[0]
    return label not in DOCUMENT_LABELS and times >= max(2, 0.8 * len(blocks))


@dataclass(frozen=True, slots=True)
class SharedRun:
    """The leading blocks an earlier request also sent: how many, and the memo key of their text."""

    blocks: int
    digest: str


class SharedPrefixMemo:
    """Which block prefixes were seen before, and the compressed text of shared runs (bounded LRUs).

    Thread-safe: the stage compresses in worker threads. Two requests that need the same shared
    run at once compute it once; the second waits for the first's result.
    """

    def __init__(self, *, seen_entries: int = SEEN_ENTRIES, memo_entries: int = MEMO_ENTRIES) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._memo: OrderedDict[tuple[str, ...], tuple[str, ...]] = OrderedDict()
        self._computing: dict[tuple[str, ...], threading.Lock] = {}
        self._seen_entries = seen_entries
        self._memo_entries = memo_entries
        self._lock = threading.Lock()

    def shared_run(self, digests: Sequence[str]) -> SharedRun:
        """The longest leading run of blocks whose prefix digest was seen; then remember them all.

        ``digests[b]`` covers the request's text up to the end of block ``b``, so a seen digest
        implies every block before it matched too.
        """
        with self._lock:
            shared = 0
            for index, digest in enumerate(digests):
                if digest in self._seen:
                    shared = index + 1
            for digest in digests:
                self._seen[digest] = None
                self._seen.move_to_end(digest)
            while len(self._seen) > self._seen_entries:
                self._seen.popitem(last=False)
        return SharedRun(shared, digests[shared - 1] if shared else "")

    def compressed(
        self, key: tuple[str, ...], compute: Callable[[], tuple[str, ...]]
    ) -> tuple[tuple[str, ...], bool]:
        """The memoised compressed blocks under ``key`` (and ``True``), or ``compute()``'s (``False``)."""
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key], True
            gate = self._computing.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._memo:
                    return self._memo[key], True
            try:
                blocks = compute()
            finally:
                with self._lock:
                    self._computing.pop(key, None)
            with self._lock:
                self._memo[key] = blocks
                while len(self._memo) > self._memo_entries:
                    self._memo.popitem(last=False)
        return blocks, False

    def has(self, key: tuple[str, ...]) -> bool:
        """Whether the compressed run under ``key`` is already kept (no scorer work needed)."""
        with self._lock:
            return key in self._memo
