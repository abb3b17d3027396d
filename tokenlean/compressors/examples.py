"""Worked examples at the start of a prompt: compressed once, without the question, and reused.

Few-shot examples (a chain-of-thought prompt, a classification template) arrive again and again
at the start of requests. Compressing them with each request's question, as documents are, has
three costs: the scorer runs on the same text every time (a second or more of CPU per request);
every request's prefix comes out different, so the upstream's prefix cache (vLLM's automatic
prefix caching, the embedded backend's KV reuse, a paid API's cached-token discount) never
matches; and question mode keeps a few blocks whole and drops the rest, which suits documents but
not examples (on the GSM8K 8-shot prompt at 2x it kept 54% of the solutions' numbers, plain mode
85%: ``python -m bench.compress_examples``).

So the leading blocks that read as examples (``leading_examples``: at least two, each opening with
the same label such as ``Question:`` or ``Review:``) are compressed the way LLMLingua compresses
demonstrations: by perplexity alone (plain mode), at the block rate the request's rate needs. The
result is kept under a digest of the prompt up to the last example, so every later request that
sends the same text before its own question gets the same bytes without running the scorer.
Blocks after the examples (a document, say) are compressed with the question as usual.

Known failure mode: the test reads labels, not meaning. Retrieved passages that all open with the
same label that is not a document word (say ``Snippet:``) are taken for examples and compressed
without the question, where the answer survives less often (HotpotQA at 2x: 21 of 30 contexts
without the question, 30 of 30 with it).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

__all__ = ["DOCUMENT_LABELS", "ExampleMemo", "leading_examples"]

MEMO_ENTRIES = 64  # compressed example runs kept (a few kB of text each)
_LABEL = re.compile(r"\s*([A-Za-z][A-Za-z0-9 ]{0,24}):")
DOCUMENT_LABELS = frozenset({"article", "context", "doc", "document", "passage", "source", "text", "title"})


def _label(block: str) -> str | None:
    match = _LABEL.match(block)
    return match.group(1).strip().lower() if match else None


def leading_examples(blocks: Sequence[str]) -> int:
    """How many leading blocks read as worked examples: a run of two or more opening with one label.

    Few-shot blocks repeat a format (``Question:``, ``Q:``, ``Review:``, ``Input:``); retrieved
    documents open with their titles. Labels that name documents (``Passage:``, ``Document:``)
    are not taken as examples: those blocks keep question-aware compression.
    """
    first = _label(blocks[0]) if blocks else None
    if first is None or first in DOCUMENT_LABELS:
        return 0
    run = next((i for i, block in enumerate(blocks) if _label(block) != first), len(blocks))
    return run if run >= 2 else 0


class ExampleMemo:
    """Compressed example runs by key, in a bounded LRU.

    Thread-safe: the stage compresses in worker threads. Two requests that need the same run at
    once compute it once; the second waits for the first's result.
    """

    def __init__(self, *, entries: int = MEMO_ENTRIES) -> None:
        self._memo: OrderedDict[tuple[str, ...], tuple[str, ...]] = OrderedDict()
        self._computing: dict[tuple[str, ...], threading.Lock] = {}
        self._entries = entries
        self._lock = threading.Lock()

    def compressed(
        self, key: tuple[str, ...], compute: Callable[[], tuple[str, ...]]
    ) -> tuple[tuple[str, ...], bool]:
        """The kept blocks under ``key`` (and ``True``), or ``compute()``'s, now kept (and ``False``)."""
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
                while len(self._memo) > self._entries:
                    self._memo.popitem(last=False)
        return blocks, False

    def has(self, key: tuple[str, ...]) -> bool:
        """Whether the run under ``key`` is already kept (no scorer work needed)."""
        with self._lock:
            return key in self._memo
