"""What a cache store holds: one answer, its keys, its embedding, and when it expires.

The answer is kept as JSON (text, finish reason, logprobs, tool calls and vendor fields of every
choice, the model name and the usage) so any store can hold it as a string; the embedding is kept as raw float32 bytes so a
process that joins later can rebuild its vector index from the store alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from tokenlean.middleware.types import Choice, Response, Usage

__all__ = ["CacheEntry", "IndexRecord", "decode_answer", "encode_answer"]


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """The part of an entry a vector index needs: key, context, embedding, and the query text
    (kept beside the vector so the meaning guard can vet candidates without a store round trip)."""

    key: str
    context: str
    vector: bytes
    query: str


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached answer.

    ``context`` and ``vector`` are None for entries that can only be matched exactly. ``expires``
    is a Unix time (None: never). ``size`` is what eviction by bytes counts: the answer, the
    query and the vector.
    """

    key: str
    answer: str
    query: str = ""
    context: str | None = None
    vector: bytes | None = None
    created: float = 0.0
    expires: float | None = None

    @property
    def size(self) -> int:
        """Bytes this entry costs a store, roughly: answer JSON, query text and vector."""
        return len(self.answer.encode("utf-8")) + len(self.query.encode("utf-8")) + len(self.vector or b"")

    def expired(self, now: float | None = None) -> bool:
        """True once the entry's time to live has passed."""
        return self.expires is not None and (now if now is not None else time.time()) >= self.expires

    def record(self) -> IndexRecord | None:
        """The index record of this entry, or None when it is exact-only."""
        if self.context is None or self.vector is None:
            return None
        return IndexRecord(self.key, self.context, self.vector, self.query)


def encode_answer(response: Response) -> str:
    """A completed response as compact JSON (model, choices, usage)."""
    choices = [
        [
            c.index,
            c.text,
            c.finish_reason,
            list(c.logprobs) if c.logprobs is not None else None,
            [dict(call) for call in c.tool_calls],
            dict(c.extra),
        ]
        for c in response.choices
    ]
    usage = [response.usage.prompt_tokens, response.usage.completion_tokens]
    return json.dumps({"model": response.model, "choices": choices, "usage": usage}, separators=(",", ":"))


def decode_answer(answer: str) -> Response:
    """The response ``encode_answer`` stored, with a fresh id and creation time."""
    data: dict[str, Any] = json.loads(answer)
    choices = tuple(
        Choice(int(i), str(text), finish, tuple(lp) if lp is not None else None, tuple(calls), extra)
        for i, text, finish, lp, *rest in data["choices"]
        for calls, extra in [rest or ([], {})]  # entries written before tool calls were kept
    )
    prompt, completion = data["usage"]
    return Response(model=data["model"], choices=choices, usage=Usage(int(prompt), int(completion)))
