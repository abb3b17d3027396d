"""Retrieval drafting (REST): copy the continuation of the current suffix from stored text.

Technique: REST, Retrieval-Based Speculative Decoding (He et al., NAACL 2024): instead of a draft
model, look the last few generated tokens up in a datastore of existing text and propose what
followed them there. Here the datastore holds two kinds of text:

- previous outputs of the backend (``DraftDatastore``, bounded, oldest dropped first): answers to
  recurring questions, boilerplate, templated replies;
- per-request hints: the response cache's near-miss answers (a similar question's cached answer,
  not similar enough to serve) or a client's OpenAI ``prediction``. A stage attaches them with
  ``with_draft_hints(request, texts)``; the backend reads them with ``request_hints(request)``.

Known failure mode: retrieved text that merely shares a phrase drafts a continuation the target
does not want; like prompt lookup, it is verified (output unchanged) and switched off per request
by the adaptive switch when it stops paying. The datastore is an exact n-gram index (REST uses a
suffix array and a draft tree; one path per step keeps verification a single sequence).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tokenlean.backends.local.drafting.lookup import NgramIndex
from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Request

__all__ = ["HINTS_OPTION", "DraftDatastore", "RetrievalDrafter", "request_hints", "with_draft_hints"]

HINTS_OPTION = "draft_hints"


class DraftDatastore:
    """Token sequences of earlier outputs, indexed by n-gram; bounded by ``max_tokens``.

    Thread-safe: the backend's worker thread adds outputs while another component (the response
    cache) may add texts it holds. The interface is two calls: ``add(token_ids)`` and
    ``propose(context, k)``.
    """

    def __init__(self, *, max_tokens: int = 50_000, min_ngram: int = 3, max_ngram: int = 5) -> None:
        self.max_tokens, self.min_ngram, self.max_ngram = max_tokens, min_ngram, max_ngram
        self._docs: OrderedDict[int, list[int]] = OrderedDict()
        self._index: dict[tuple[int, ...], tuple[int, int]] = {}  # n-gram -> (doc, index of successor)
        self._size = 0
        self._next_id = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._size

    def add(self, token_ids: Sequence[int]) -> None:
        """Store one output; sequences shorter than an n-gram plus one token are not worth it."""
        ids = list(token_ids)
        if len(ids) <= self.min_ngram or len(ids) > self.max_tokens:
            return
        with self._lock:
            doc, self._next_id = self._next_id, self._next_id + 1
            self._docs[doc] = ids
            self._size += len(ids)
            for end in range(self.min_ngram, len(ids)):
                for n in range(self.min_ngram, min(self.max_ngram, end) + 1):
                    self._index[tuple(ids[end - n : end])] = (doc, end)
            while self._size > self.max_tokens:
                _, dropped = self._docs.popitem(last=False)
                self._size -= len(dropped)

    def clear(self) -> None:
        """Forget every stored output."""
        with self._lock:
            self._docs.clear()
            self._index.clear()
            self._size = 0

    def propose(self, context: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens that followed the longest suffix of ``context`` in a stored output."""
        found = self.match(context) if k > 0 else None
        return found[0][found[1] : found[1] + k] if found else []

    def match(self, context: Sequence[int]) -> tuple[list[int], int, int] | None:
        """``(output, start, n)``: a stored output (never changed once stored), where the longest
        matching suffix of ``context`` continues in it, and that suffix's length."""
        with self._lock:
            for n in range(min(self.max_ngram, len(context)), self.min_ngram - 1, -1):
                key = tuple(context[-n:])
                hit = self._index.get(key)
                if hit is None:
                    continue
                doc = self._docs.get(hit[0])
                if doc is None:  # evicted: drop the stale entry
                    del self._index[key]
                    continue
                return doc, hit[1], n
        return None


class RetrievalDrafter:
    """One request's retrieval drafter: its hints first (most specific), then the datastore."""

    name = "retrieval"
    cost = 0.0
    step_cost = 0.0

    def __init__(self, datastore: DraftDatastore | None, hints: Iterable[Sequence[int]] = ()) -> None:
        self.datastore = datastore
        self.hints: list[NgramIndex] = []
        for ids in hints:
            index = NgramIndex(min_ngram=2, max_ngram=5)
            index.extend(ids)
            self.hints.append(index)

    @property
    def has_text(self) -> bool:
        """Whether there is anything to retrieve from."""
        return bool(self.hints) or (self.datastore is not None and len(self.datastore) > 0)

    def propose(self, context: Sequence[int], budget: Callable[[int], int]) -> tuple[list[int], int]:
        """A draft from the hints, else from the datastore, and its match quality (see ``lookup.py``)."""
        for index in self.hints:
            found = index.match(context)
            if found is not None:
                start, matched = found
                return index.tokens[start : start + budget(matched)], matched
        stored = self.datastore.match(context) if self.datastore is not None else None
        if stored is None:
            return [], 0
        doc, start, matched = stored
        return doc[start : start + budget(matched)], matched


def with_draft_hints(request: Request, texts: Iterable[str]) -> Request:
    """A copy of ``request`` carrying ``texts`` for the retrieval drafter (e.g. near-miss answers)."""
    hints = (*_as_list(request.option(HINTS_OPTION), f"tokenlean.{HINTS_OPTION}"), *texts)
    return request.replace(options={**request.options, HINTS_OPTION: hints})


def request_hints(request: Request) -> list[str]:
    """The texts a request offers for drafting: ``draft_hints`` and an OpenAI ``prediction``."""
    hints = _as_list(request.option(HINTS_OPTION), f"tokenlean.{HINTS_OPTION}")
    prediction = request.extra.get("prediction")
    if prediction is not None:
        hints.append(_prediction_text(prediction))
    return [text for text in hints if text]


def _as_list(value: Any, param: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value)
    raise BadRequestError("must be a string or a list of strings", param=param)


def _prediction_text(prediction: Any) -> str:
    """OpenAI Predicted Outputs: ``{"type": "content", "content": str | [{"type": "text", "text": ...}]}``."""
    content = prediction.get("content") if isinstance(prediction, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text") for part in content if isinstance(part, dict)]
        if all(isinstance(part, str) for part in parts):
            return "".join(parts)  # type: ignore[arg-type]
    raise BadRequestError('prediction must be {"type": "content", "content": ...}', param="prediction")
