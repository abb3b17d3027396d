"""Prompt-lookup drafting: propose the continuation of the latest earlier match of the last n tokens.

Technique: prompt lookup decoding (Saxena, 2023; upstreamed in transformers as
``prompt_lookup_num_tokens`` and in vLLM as the ``ngram`` proposer). Summaries, quotes, RAG
answers and edits copy long spans of their input, so the tokens that followed the last
occurrence of the current n-gram are likely to come next; the target model verifies them in one
forward pass, so a wrong guess costs only the wider pass, never the output.

Known failure mode: on open-ended text there is little to copy; short n-grams ("of the") then
match by chance and their continuations are rejected, costing verification work for nothing.
The adaptive switch (``adaptive.py``) turns the drafter off for a request when that happens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["NgramIndex", "PromptLookupDrafter"]


class NgramIndex:
    """Where each n-gram of a growing token sequence occurred with a token after it.

    Updated incrementally as tokens are appended (one dict write per n-gram size per token), so a
    lookup costs a few dict reads however long the prompt is. When the suffix occurs several times
    (a question repeating words of the passage, the answer repeating itself), the occurrence whose
    preceding tokens agree longest with the context wins, the latest on a tie: it is the one being
    copied, not a chance repeat of a short phrase.
    """

    candidates = 16  # occurrences compared per lookup (the latest ones)
    horizon = 32  # tokens compared backwards to rank them

    def __init__(self, min_ngram: int = 2, max_ngram: int = 4) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("need 1 <= min_ngram <= max_ngram")
        self.min_ngram, self.max_ngram = min_ngram, max_ngram
        self.tokens: list[int] = []
        self._after: dict[tuple[int, ...], list[int]] = {}  # n-gram -> indices of the tokens that followed it

    def extend(self, tokens: Sequence[int]) -> None:
        """Append ``tokens``, indexing every n-gram that now has a successor."""
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens) - 1  # the new token is the successor of the n-grams ending before it
            for n in range(self.min_ngram, self.max_ngram + 1):
                if end - n >= 0:
                    self._after.setdefault(tuple(self.tokens[end - n : end]), []).append(end)

    def sync(self, context: Sequence[int]) -> None:
        """Catch up with ``context``, which must extend the tokens already indexed."""
        if len(context) > len(self.tokens):
            self.extend(context[len(self.tokens) :])

    def match(self, context: Sequence[int]) -> tuple[int, int] | None:
        """``(start, matched)``: where the best earlier occurrence of ``context``'s suffix continues, and
        how many tokens of ``context`` it agrees with (the n-gram plus the agreement before it).

        ``context`` may be the indexed sequence itself (prompt lookup) or another one (hints).
        """
        for n in range(min(self.max_ngram, len(context)), self.min_ngram - 1, -1):
            starts = self._after.get(tuple(context[-n:]))
            if starts:
                agreed, start = max((self._agreement(context, s, n), s) for s in starts[-self.candidates :])
                return start, n + agreed
        return None

    def propose(self, context: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` indexed tokens that followed the best occurrence of ``context``'s longest suffix n-gram."""
        found = self.match(context) if k > 0 else None
        return self.tokens[found[0] : found[0] + k] if found else []

    def _agreement(self, context: Sequence[int], start: int, n: int) -> int:
        """How many tokens before the matched n-gram also agree (up to ``horizon``)."""
        agreed = 0
        while agreed < self.horizon:
            mine, theirs = start - n - 1 - agreed, len(context) - n - 1 - agreed
            if mine < 0 or theirs < 0 or self.tokens[mine] != context[theirs]:
                break
            agreed += 1
        return agreed


class PromptLookupDrafter:
    """Drafts by copying from the request's own prompt and the text generated so far.

    One instance per request (it indexes that request's tokens). ``cost`` is the drafter's own
    time per drafted token relative to one decode step of the target: a few dict reads, i.e. ~0.
    Unigram matches are looked up too (``min_ngram=1``): after the model has put in a word of its
    own, the next token often resumes a copy that only one token can find. They are the least
    reliable class, and the adaptive switch drafts for them only while they pay.
    """

    name = "lookup"
    cost = 0.0
    step_cost = 0.0

    def __init__(self, *, min_ngram: int = 1, max_ngram: int = 4) -> None:
        self.index = NgramIndex(min_ngram, max_ngram)

    def propose(self, context: Sequence[int], budget: Callable[[int], int]) -> tuple[list[int], int]:
        """A draft to follow ``context`` (prompt + generated tokens) and its match quality.

        ``budget(quality)`` says how many tokens a draft whose source agrees with the last
        ``quality`` tokens is worth (``adaptive.py``).
        """
        self.index.sync(context)
        found = self.index.match(context)
        if found is None:
            return [], 0
        start, matched = found
        return self.index.tokens[start : start + budget(matched)], matched
