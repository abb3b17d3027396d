"""Speculative drafting: cheap drafts verified by the target model, output unchanged.

Drafters (used by ``LocalBackend``'s single-sequence path): prompt lookup (``lookup.py``),
retrieval from earlier outputs and per-request hints (``retrieval.py``, REST), a draft model with
the same or another tokenizer (``model.py``). ``verify.py`` keeps greedy output identical and
sampling on the target distribution; ``adaptive.py`` turns a drafter off when it stops paying;
``session.py`` is one request's drafting. vLLM's ``--speculative-config`` and acceptance counters
live in ``tokenlean/backends/vllm_speculative.py``. See docs/speculative.md.
"""

from tokenlean.backends.local.drafting.adaptive import AdaptiveSwitch
from tokenlean.backends.local.drafting.lookup import NgramIndex, PromptLookupDrafter
from tokenlean.backends.local.drafting.retrieval import (
    DraftDatastore,
    RetrievalDrafter,
    request_hints,
    with_draft_hints,
)
from tokenlean.backends.local.drafting.session import DRAFT_MODES, DraftPolicy, DraftSession, parse_draft_mode

__all__ = [
    "DRAFT_MODES",
    "AdaptiveSwitch",
    "DraftDatastore",
    "DraftPolicy",
    "DraftSession",
    "NgramIndex",
    "PromptLookupDrafter",
    "RetrievalDrafter",
    "parse_draft_mode",
    "request_hints",
    "with_draft_hints",
]
