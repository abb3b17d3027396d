"""Draft-model drafting: a second, cheaper local model proposes tokens greedily.

Technique: speculative decoding with a draft model (Leviathan et al., ICML 2023; Chen et al.,
2023). The draft may use another tokenizer (as transformers' assisted generation allows since
"universal assisted generation"): the draft then works on text — the target's tokens so far are
decoded and re-tokenised for the draft, and the drafted text is re-tokenised for the target.
Drafts are greedy, i.e. a point mass, so the verification rule is the same as for prompt lookup.

Known failure mode: the draft must be much cheaper per token than the target. On a CPU a 135M
model costs about as much per step as a 270M one (both are bound by per-step overhead, not
arithmetic), so drafting with SmolLM2-135M for Gemma-3-270M does not pay there; the adaptive
switch sees the measured ``cost`` and turns it off. It pays where the target is large or runs on
a GPU. Re-tokenisation at text boundaries can also produce drafts the target never accepts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tokenlean.backends.local.kv import crop_to, forward_tokens, is_sliding, new_cache
from tokenlean.backends.local.packed import use_fast_kernels
from tokenlean.backends.local.prefix_cache import common_prefix

__all__ = ["DraftModel", "DraftModelDrafter"]


class DraftModel:
    """A loaded draft model and how it relates to the target (same vocabulary or not)."""

    def __init__(
        self,
        model_dir: str | Path,
        target_tokenizer: Any,
        *,
        cost: float | None = None,
        fast_kernels: bool = True,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(self.model_dir))
        loaded: Any = AutoModelForCausalLM.from_pretrained(str(self.model_dir), dtype=torch.float32)
        self.model: Any = loaded.eval()
        if fast_kernels:  # the same kernels as the target (see LocalBackend)
            use_fast_kernels(self.model)
        self.same_vocab = self.tokenizer.get_vocab() == target_tokenizer.get_vocab()
        self.cost = cost  # draft seconds per token / target seconds per decode step; None until measured

    def calibrate(self, target_model: Any, steps: int = 4) -> float:
        """Measure ``cost`` once (median of a few one-token steps of each model) unless it was given."""
        if self.cost is None:
            draft = _step_seconds(self.model, steps)
            target = _step_seconds(target_model, steps)
            self.cost = draft / max(target, 1e-9)
        return self.cost


def _step_seconds(model: Any, steps: int) -> float:
    import torch

    cache, times = new_cache(model), []
    with torch.inference_mode():
        forward_tokens(model, cache, list(range(10, 42)))
        for i in range(steps):
            started = time.perf_counter()
            forward_tokens(model, cache, [100 + i])
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


class DraftModelDrafter:
    """One request's draft-model session: keeps the draft's KV cache in step with the target.

    ``prompt_ids`` are the target's prompt tokens; ``draft_prompt_ids`` the same prompt in the
    draft's tokenizer (only used when the vocabularies differ).
    """

    name = "model"

    def __init__(self, draft: DraftModel, target_tokenizer: Any, prompt_ids: Sequence[int],
                 draft_prompt_ids: Sequence[int] | None = None) -> None:  # fmt: skip
        self.draft, self.target_tokenizer = draft, target_tokenizer
        self.prompt_len = len(prompt_ids)
        self.draft_prompt = list(prompt_ids if draft.same_vocab else draft_prompt_ids or [])
        self.cache = new_cache(draft.model)
        self.ids: list[int] = []  # the draft tokens the cache holds
        self.sliding = is_sliding(self.cache)
        self._fed = 0  # tokens run since the last crop (a sliding cache can only drop those)
        self.cost = draft.cost or 0.0
        self.step_cost = self.cost  # each proposal first runs the tokens accepted since the last one

    def propose(self, context: Sequence[int], budget: Callable[[int], int]) -> tuple[list[int], int]:
        """Draft ``budget(0)`` target tokens to follow ``context`` (prompt + generated); quality 0
        (a model draft has no match length, see ``adaptive.py``)."""
        return self.draft_tokens(context, budget(0)), 0

    def draft_tokens(self, context: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` target tokens to follow ``context``."""
        if k <= 0:
            return []
        if self.draft.same_vocab:
            return self._generate(list(context), k)
        generated = list(context[self.prompt_len :])
        text = self.target_tokenizer.decode(generated, skip_special_tokens=True)
        wanted = self.draft_prompt + list(self.draft.tokenizer.encode(text, add_special_tokens=False))
        drafted = self._generate(wanted, k)
        draft_text = self.draft.tokenizer.decode(drafted, skip_special_tokens=True)
        return _retokenise(self.target_tokenizer, generated, draft_text)[:k]

    def _generate(self, wanted: list[int], k: int) -> list[int]:
        """Greedy ``k`` tokens after ``wanted``, reusing the cached common prefix."""
        import torch

        if not wanted:
            return []
        common = common_prefix(self.ids, wanted)
        common = min(common, len(wanted) - 1)  # at least one token must run to give logits
        if self.sliding and len(self.ids) - common > self._fed:
            self.cache, common = new_cache(self.draft.model), 0
        drafted: list[int] = []
        with torch.inference_mode():
            crop_to(self.cache, common)
            logits = forward_tokens(self.draft.model, self.cache, wanted[common:])
            for _ in range(k):
                drafted.append(int(torch.argmax(logits[-1])))
                if len(drafted) == k:
                    break
                logits = forward_tokens(self.draft.model, self.cache, drafted[-1:])
        self.ids = wanted + drafted[:-1]
        self._fed = len(self.ids) - common
        return drafted


def _retokenise(tokenizer: Any, generated: list[int], draft_text: str) -> list[int]:
    """The target tokens of ``draft_text`` as it continues ``generated``.

    Tokenising the draft alone would lose the joins (a leading space merges into the next word),
    so the last few generated tokens are re-encoded with it and kept only if they come back the same.
    """
    if not draft_text:
        return []
    tail = generated[-4:]
    ids = list(tokenizer.encode(tokenizer.decode(tail) + draft_text, add_special_tokens=False))
    if tail and ids[: len(tail)] == tail:
        return ids[len(tail) :]
    return list(tokenizer.encode(draft_text, add_special_tokens=False))
