"""The single-sequence decode path of ``LocalBackend``: KV prefix reuse and speculative drafting.

Speculation verifies a draft for one sequence in one forward pass; in a batch every row would
have drafts of different lengths and acceptances, so the batched loop in ``local.py`` stays plain
and a batch of exactly one row (a request alone in its batch, with ``n=1``) comes here. The same
holds for prefix reuse: a row's cache is taken from, and given back to, the ``PrefixCache``.
A row here gives way when another request arrives: it stops drafting and joins a batch with the
newcomer (``Handover``, ``running.py``), since a waiting request costs more than a lost draft.

One step: the drafters propose up to ``k`` tokens after the sequence so far; the target runs over
``[last token] + draft`` once; ``verify_*`` decides how many drafted tokens stand and the next
token; the cache is cropped back to the accepted tokens. Without a draft the step is a plain
one-token step. Papers and failure modes: ``tokenlean/backends/local/drafting/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tokenlean.backends.local.decoding import RowDecoder
from tokenlean.backends.local.drafting.lookup import PromptLookupDrafter
from tokenlean.backends.local.drafting.model import DraftModel, DraftModelDrafter
from tokenlean.backends.local.drafting.retrieval import DraftDatastore, RetrievalDrafter
from tokenlean.backends.local.drafting.session import Drafter, DraftPolicy, DraftSession
from tokenlean.backends.local.drafting.verify import verify_greedy, verify_sampled
from tokenlean.backends.local.kv import crop_to, forward_tokens, is_sliding, new_cache
from tokenlean.backends.local.prefix_cache import PrefixCache
from tokenlean.middleware.types import Event, Request

__all__ = ["DraftPlan", "Handover", "SingleRowDecoder"]


@dataclass(frozen=True, slots=True)
class DraftPlan:
    """What one request asked for: the mode, its hint token ids, the request (for the draft model)."""

    mode: str
    hints: tuple[tuple[int, ...], ...] = ()
    request: Request | None = None


@dataclass(frozen=True, slots=True)
class Handover:
    """A row leaving the single-row path mid-way: its cache, the tokens it holds, the next token.

    ``token`` was already chosen and sent to the caller but not yet run through the model.
    """

    cache: Any
    cached_tokens: int
    token: int


class SingleRowDecoder:
    """Decodes one row with prefix reuse and drafting; owned by the backend's worker thread."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        policy: DraftPolicy,
        prefix_cache: PrefixCache | None,
        datastore: DraftDatastore | None,
        draft_model: DraftModel | None,
        context_length: int,
        encode_for_draft: Callable[[Request], list[int]] | None = None,
    ) -> None:
        self.model, self.tokenizer, self.policy = model, tokenizer, policy
        self.prefix_cache, self.datastore, self.draft_model = prefix_cache, datastore, draft_model
        self.context_length = context_length
        self.encode_for_draft = encode_for_draft

    def run(self, prompt: list[int], row: RowDecoder, plan: DraftPlan,
            emit: Callable[[int], None], cancelled: Callable[[], bool],
            others_waiting: Callable[[], bool] = lambda: False) -> tuple[list[Event], Handover | None]:  # fmt: skip
        """Generate ``row``, calling ``emit`` per accepted token; return the events.

        When ``others_waiting()`` turns true mid-row (another request reached the engine), the row
        stops drafting and is handed over (``Handover``) to be decoded in a batch with them, unless
        its cache has sliding layers, which cannot join a batch (``running.py``).
        """
        events: list[Event] = []
        cache, reused = self._start(prompt, events)
        logits = forward_tokens(self.model, cache, prompt[reused:])
        cache_ids = list(prompt)
        session = self._session(prompt, row, plan)
        token = row.choose(logits[-1])
        emit(token)
        can_join = not is_sliding(cache)
        handover = None
        while not row.done:
            if cancelled():
                row.force_finish("cancelled")
                break
            if can_join and others_waiting():
                handover = Handover(cache, len(cache_ids), token)
                break
            token = self._step(cache, cache_ids, token, prompt, row, session, emit)
        if session is not None:
            events.append(session.event())
        if handover is None and self.prefix_cache is not None and row.finish_reason != "cancelled":
            self.prefix_cache.put(cache_ids, cache)
        return events, handover

    def _start(self, prompt: list[int], events: list[Event]) -> tuple[Any, int]:
        """A cache holding the longest reusable prefix of ``prompt`` (or an empty one)."""
        if self.prefix_cache is None:
            return new_cache(self.model), 0
        taken = self.prefix_cache.take(prompt)
        cache, reused = taken if taken is not None else (new_cache(self.model), 0)
        action = "hit" if reused else "miss"
        events.append(
            Event("prefix", action, data={"reused_tokens": reused, "prefill_tokens": len(prompt) - reused})
        )
        return cache, reused

    def _step(self, cache: Any, cache_ids: list[int], token: int, prompt: list[int], row: RowDecoder,
              session: DraftSession | None, emit: Callable[[int], None]) -> int:  # fmt: skip
        """One forward pass (plain or verifying a draft); returns the last emitted token."""
        draft, slot = self._propose(session, prompt, row, len(cache_ids))
        logits = forward_tokens(self.model, cache, [token, *draft], keep=len(draft) + 1)
        cache_ids.append(token)
        if not draft:
            crop_to(cache, len(cache_ids))  # a no-op, except that sliding layers trim to their window
            token = row.choose(logits[-1])
            emit(token)
            return token
        if row.settings.greedy:
            accepted, token = verify_greedy(logits, draft)
        else:
            accepted, token = verify_sampled(logits, draft, row.distribution, row.generator)
        assert session is not None
        cache_ids.extend(draft[:accepted])
        crop_to(cache, len(cache_ids))
        emitted = 0
        for position, chosen in enumerate([*draft[:accepted], token]):
            row.note_logprobs(logits[position], chosen)
            emit(chosen)
            emitted += 1
            if row.done:
                break
        # only drafted tokens that reached the answer count: none past EOS, a stop or max_tokens
        session.record(slot, len(draft), min(accepted, emitted))
        return token

    def _propose(self, session: DraftSession | None, prompt: list[int], row: RowDecoder,
                 cached: int) -> tuple[list[int], int]:  # fmt: skip
        if session is None or not session.active:
            return [], -1
        # room for the draft and the token after it, within max_tokens and the context
        limit = min(row.settings.max_tokens - len(row.token_ids) - 1, self.context_length - cached - 2)
        return session.propose([*prompt, *row.token_ids], limit)

    def _session(self, prompt: list[int], row: RowDecoder, plan: DraftPlan) -> DraftSession | None:
        drafters = self._drafters(prompt, row, plan)
        return DraftSession(drafters, self.policy) if drafters else None

    def _drafters(self, prompt: list[int], row: RowDecoder, plan: DraftPlan) -> list[Drafter]:
        """The drafters ``plan.mode`` asks for, in order of preference."""
        mode, drafters = plan.mode, list[Drafter]()
        if mode in ("auto", "lookup"):
            drafters.append(
                PromptLookupDrafter(
                    min_ngram=self.policy.lookup_min_ngram, max_ngram=self.policy.lookup_max_ngram
                )
            )
        if mode in ("auto", "retrieval"):
            # a seeded sample must not depend on what earlier requests left in the datastore
            store = None if (row.settings.seed is not None and not row.settings.greedy) else self.datastore
            retrieval = RetrievalDrafter(store, plan.hints)
            if retrieval.has_text or mode == "retrieval":
                drafters.append(retrieval)
        if mode in ("auto", "model") and self.draft_model is not None:
            drafters.append(self._model_drafter(prompt, plan))
        return drafters

    def _model_drafter(self, prompt: Sequence[int], plan: DraftPlan) -> DraftModelDrafter:
        assert self.draft_model is not None
        draft_prompt = None
        if not self.draft_model.same_vocab and plan.request is not None and self.encode_for_draft is not None:
            draft_prompt = self.encode_for_draft(plan.request)
        return DraftModelDrafter(self.draft_model, self.tokenizer, prompt, draft_prompt)
