"""Token information from a small causal LM: the one expensive part of LLMLingua-style compression.

Every score is a surprisal, ``-log p(token | what precedes it)`` in nats. Two access patterns
cover the algorithm, each with as few forward passes as it allows:

- ``score_blocks``: independent sequences (each context block, optionally followed by a suffix
  such as the question) in length-sorted, padded micro-batches; one pass gives every block
  token's surprisal *and* the suffix's log-likelihood given the block (LongLLMLingua's ranking).
- ``stream``: one left-to-right sequence scored segment by segment on a KV cache, where the
  caller prunes the cache to the tokens it kept (``ScoringStream.keep``). Each segment is thus
  scored conditioned on the already-compressed text before it (LLMLingua's iterative
  compression) without re-running the compressed prefix: the library re-encodes every segment
  once more after compressing it; here the dropped entries are cut out of the cache instead.
  Kept tokens retain their original positions (gaps in RoPE positions), an approximation the
  LLMLingua authors also make when they evict cache entries.

Any local Hugging Face causal LM folder works; the default is the embedded SmolLM2. Weights load
lazily on first use. Known failure mode: the scores are those of a 135M model, so "surprising"
means surprising to it (rare words, digits, names), which is a proxy for "informative", not a
measure of what the reading model needs.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BlockScores", "CausalLMScorer", "ScoringStream"]

_LOGIT_CHUNK = 512  # positions per lm_head call: bounds the (positions x vocabulary) logits buffer


@dataclass(frozen=True, slots=True)
class BlockScores:
    """Surprisal of each block token given the block's own prefix, and the suffix's mean log-prob."""

    surprisal: np.ndarray
    suffix_logprob: float


def _cpu_has_amx_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 matrices in hardware (AMX tiles).

    AVX512-BF16 alone is not enough: on a Xeon with it but without AMX, one 900-token scoring pass
    took 4.50 s in bfloat16 against 2.98 s in float32 (one thread; 2.52 against 1.80 s on two),
    2026-12-08, so bfloat16 there is about 1.4x slower, not faster.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


class CausalLMScorer:
    """A causal LM used only to score tokens (never to generate).

    ``dtype="auto"`` picks bfloat16 on a CPU with AMX bf16 tiles (about twice as fast as float32
    there, and surprisal ranks barely move) and float32 otherwise; on CUDA it picks bfloat16.
    ``max_batch_tokens`` bounds a padded micro-batch of ``score_blocks``.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        max_batch_tokens: int = 2048,
    ) -> None:
        self.model_ref = model
        self.device = device
        self.dtype = dtype
        self.max_batch_tokens = max_batch_tokens
        self._lock = threading.RLock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._cache_kwarg = "past_key_values"
        self.start_id = 0

    def load(self) -> None:
        """Load tokenizer and weights once (thread-safe); later calls return at once."""
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM

            from tokenlean.models import load_pretrained

            self._tokenizer, model = load_pretrained(
                self.model_ref, AutoModelForCausalLM, self._torch_dtype(torch)
            )
            self._model = model.to(self.device)
            params = inspect.signature(self._model.base_model.forward).parameters
            self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
            self.start_id = self._start_token()

    def _torch_dtype(self, torch: Any) -> Any:
        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        if self.device.startswith("cuda") or _cpu_has_amx_bf16():
            return torch.bfloat16
        return torch.float32

    def _start_token(self) -> int:
        """A document-start token, so the first real token has a context to be scored against."""
        tok = self._tokenizer
        endoftext = tok.convert_tokens_to_ids("<|endoftext|>")
        if isinstance(endoftext, int) and tok.convert_ids_to_tokens(endoftext) == "<|endoftext|>":
            return endoftext
        return int(tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id)

    @property
    def tokenizer(self) -> Any:
        """The scorer's (fast) tokenizer; loads the model on first access."""
        self.load()
        return self._tokenizer

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` (no special tokens) and each token's character span."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(span) for span in enc["offset_mapping"]]

    # -- batched independent sequences -------------------------------------------------------

    def score_blocks(self, blocks: Sequence[Sequence[int]], suffix: Sequence[int] = ()) -> list[BlockScores]:
        """Score ``[start] + block + suffix`` for every block in padded, length-sorted micro-batches."""
        self.load()
        order = sorted(range(len(blocks)), key=lambda i: len(blocks[i]))
        results: dict[int, BlockScores] = {}
        batch: list[int] = []
        for index in order:
            width = len(blocks[index]) + len(suffix) + 1
            if batch and width * (len(batch) + 1) > self.max_batch_tokens:
                results.update(self._score_batch(batch, blocks, suffix))
                batch = []
            batch.append(index)
        if batch:
            results.update(self._score_batch(batch, blocks, suffix))
        return [results[i] for i in range(len(blocks))]

    def _score_batch(
        self, indices: list[int], blocks: Sequence[Sequence[int]], suffix: Sequence[int]
    ) -> dict[int, BlockScores]:
        import torch

        rows = [[self.start_id, *blocks[i], *suffix] for i in indices]
        width = max(len(row) for row in rows)
        pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else self.start_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        with self._lock, torch.inference_mode():
            hidden = self._model.base_model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False
            ).last_hidden_state
            out: dict[int, BlockScores] = {}
            for r, index in enumerate(indices):
                n = len(rows[r])
                surprisal = self._surprisal(hidden[r, : n - 1], ids[r, 1:n])
                n_block = len(blocks[index])
                tail = surprisal[n_block:]
                out[index] = BlockScores(surprisal[:n_block], float(-tail.mean()) if len(tail) else 0.0)
        return out

    def _surprisal(self, hidden: Any, targets: Any) -> np.ndarray:
        """``-log p(targets[i])`` from the hidden states that predict them, in lm_head chunks."""
        import torch

        head = self._model.get_output_embeddings()
        targets = targets.to(hidden.device)
        parts = []
        for start in range(0, hidden.shape[0], _LOGIT_CHUNK):
            logits = head(hidden[start : start + _LOGIT_CHUNK]).float()
            chosen = logits.gather(-1, targets[start : start + _LOGIT_CHUNK, None]).squeeze(-1)
            parts.append(torch.logsumexp(logits, dim=-1) - chosen)
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return torch.cat(parts).cpu().numpy().astype(np.float32)

    # -- one sequence on a pruned KV cache ------------------------------------------------------

    def stream(self, prefix: Sequence[int] = ()) -> ScoringStream:
        """A scoring stream whose context starts with ``[start] + prefix`` (kept whole)."""
        self.load()
        stream = ScoringStream(self)
        stream.feed([self.start_id, *prefix])
        return stream


class ScoringStream:
    """Scores segments left to right; ``keep`` drops the last segment's unkept tokens from the cache.

    Two ways to condition on the compressed prefix. ``keep(mask)`` cuts the dropped entries out
    of the KV cache (no extra pass; the kept entries were computed while the dropped tokens were
    still there, so some of their information lingers). ``keep(mask, reencode=True)`` rolls the
    cache back and runs the kept tokens again at contiguous positions, exactly as the reading
    model will see them, for one extra pass over the kept tokens only.

    Not thread-safe on its own: the scorer's lock is taken for each forward pass, so streams of
    concurrent requests interleave pass by pass instead of running the CPU twice over. Measured
    against the alternative (passes of concurrent requests at once, one torch thread each while
    another is in flight): 8 HotpotQA contexts, 4 at a time, finished in 16.0 s instead of 20.4 s,
    but in ``bench.e2e`` on the embedded model the lean profile's p50 ratio rose from 0.52 / 0.54
    to 0.70 / 0.83, because concurrent scoring took the CPU that short requests' decoding needed.
    """

    def __init__(self, scorer: CausalLMScorer) -> None:
        from transformers import DynamicCache

        self._scorer = scorer
        self._cache: Any = DynamicCache()
        self._next_position = 0
        self._last_hidden: Any = None
        self._segment_start = 0  # cache length before the last scored segment
        self._segment_position = 0  # position of the last segment's first token
        self._segment_ids: list[int] = []

    def feed(self, ids: Sequence[int]) -> None:
        """Run ``ids`` through the model as context that is kept whole (a prefix)."""
        self.score(ids)

    def score(self, ids: Sequence[int]) -> np.ndarray:
        """Surprisal of each of ``ids`` given everything kept so far; appends them to the cache."""
        import torch

        scorer = self._scorer
        if not ids:
            return np.zeros(0, dtype=np.float32)
        input_ids = torch.tensor([list(ids)], dtype=torch.long, device=scorer.device)
        with scorer._lock, torch.inference_mode():
            self._segment_start = self._cache_length()
            self._segment_position, self._segment_ids = self._next_position, list(ids)
            hidden = self._forward(input_ids)
            if self._last_hidden is None:
                tail = scorer._surprisal(hidden[:-1], input_ids[0, 1:])
                surprisal = np.concatenate([[np.nan], tail]).astype(np.float32)
            else:
                predictors = torch.cat([self._last_hidden[None], hidden[:-1]])
                surprisal = scorer._surprisal(predictors, input_ids[0])
            self._last_hidden = hidden[-1]
        return surprisal

    def _forward(self, input_ids: Any) -> Any:
        import torch

        scorer = self._scorer
        n = input_ids.shape[1]
        positions = torch.arange(self._next_position, self._next_position + n, device=scorer.device)[None]
        kwargs = {scorer._cache_kwarg: self._cache, "position_ids": positions, "use_cache": True}
        self._next_position += n
        return scorer._model.base_model(input_ids=input_ids, **kwargs).last_hidden_state[0]

    def keep(self, mask: Sequence[bool] | np.ndarray, *, reencode: bool = False) -> None:
        """Keep only the masked tokens of the last scored segment as context for what follows."""
        import torch

        keep = np.asarray(mask, dtype=bool)
        if keep.all():
            return
        with self._scorer._lock, torch.inference_mode():
            if reencode:
                _select_cache(self._cache, torch.arange(self._segment_start, device=self._scorer.device))
                self._next_position = self._segment_position
                kept = [t for t, k in zip(self._segment_ids, keep, strict=True) if k]
                if kept:
                    ids = torch.tensor([kept], dtype=torch.long, device=self._scorer.device)
                    self._last_hidden = self._forward(ids)[-1]
                return
            offsets = torch.as_tensor(np.nonzero(keep)[0], dtype=torch.long)
            index = torch.cat([torch.arange(self._segment_start), self._segment_start + offsets])
            _select_cache(self._cache, index.to(self._scorer.device))

    def _cache_length(self) -> int:
        return int(self._cache.get_seq_length()) if self._last_hidden is not None else 0


def _select_cache(cache: Any, index: Any) -> None:
    """Keep the cache entries at ``index`` (sequence axis) in every layer, in place.

    transformers >= 4.56 keeps per-layer ``keys``/``values``; older 4.x keeps ``key_cache`` and
    ``value_cache`` lists. Both are handled; anything else is an error the pipeline bypasses.
    """
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys.index_select(-2, index)
                layer.values = layer.values.index_select(-2, index)
        return
    if hasattr(cache, "key_cache"):
        for i in range(len(cache.key_cache)):
            cache.key_cache[i] = cache.key_cache[i].index_select(-2, index)
            cache.value_cache[i] = cache.value_cache[i].index_select(-2, index)
        return
    raise TypeError(f"cannot prune a {type(cache).__name__}: unknown KV cache layout")
