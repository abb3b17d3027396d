"""Per-row decoding state for the embedded backend: sampling, stop strings, incremental text.

Kept apart from the batching loop in ``local.py`` so that each piece is small and testable: a
``RowDecoder`` knows one generated sequence (its sampling settings, its tokens, the text already
sent), and the loop only moves tensors.

Incremental detokenisation, in linear time (the prefix/read offsets of TGI and vLLM): each step
decodes only a short window — the tokens since the last settled point plus a few before it, so
that a word piece's leading space and the tokenizer's clean-up rules see their context — and
appends what the window added. A token can end in the middle of a UTF-8 character, so a window
ending in a replacement character is not settled yet and its text is held back. Re-decoding the
whole sequence each step, as this module once did, is quadratic in the output length. Stop
strings: text that could still grow into a stop string is held back until it cannot, so a client
never receives part of a stop sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RowDecoder", "SamplingSettings"]


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    """How one row picks its next token."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def greedy(self) -> bool:
        """Temperature 0 means argmax, as OpenAI and vLLM define it."""
        return self.temperature <= 0


@dataclass(slots=True)
class RowDecoder:
    """One generated sequence: chooses tokens, detects the end, yields new text."""

    settings: SamplingSettings
    tokenizer: Any
    eos_ids: frozenset[int]
    generator: Any = None
    token_ids: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the decoded text already sent
    settled: str = ""  # the text of token_ids[:read_offset], final
    prefix_offset: int = 0  # where the decode window starts (context for the new tokens)
    read_offset: int = 0  # tokens whose text is settled
    finish_reason: str | None = None
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    # logit shapers (penalties, then a grammar's mask): ``shape(logits, token_ids)``, ``accept(token)``
    shapers: tuple[Any, ...] = ()

    def choose(self, logits: Any) -> int:
        """Pick the next token from this row's last-position ``logits`` (1-D tensor)."""
        import torch

        for shaper in self.shapers:  # per row, before sampling: greedy, top-p, logprobs all see it
            logits = shaper.shape(logits, self.token_ids)
        if self.settings.greedy:
            token = int(torch.argmax(logits))
        else:
            token = int(torch.multinomial(self.distribution(logits), 1, generator=self.generator))
        self.note_logprobs(logits, token)
        return token

    def distribution(self, logits: Any) -> Any:
        """The probabilities this row samples from (temperature, then top-p), as a 1-D tensor.

        Speculative verification needs the same distribution ``choose`` samples from, so that
        accepting or resampling a drafted token keeps the output distribution unchanged.
        """
        import torch

        probs = torch.softmax(logits.float() / max(self.settings.temperature, 1e-6), dim=-1)
        if self.settings.top_p < 1.0:
            probs = _top_p_filter(probs, self.settings.top_p)
        return probs

    def note_logprobs(self, logits: Any, token: int) -> None:
        """Record ``token``'s log-probability under ``logits`` when the request asked for logprobs."""
        if self.settings.logprobs:
            self.logprobs.append(self._logprob_entry(logits, token))

    def _logprob_entry(self, logits: Any, token: int) -> dict[str, Any]:
        import torch

        log_probs = torch.log_softmax(logits.float(), dim=-1)
        entry: dict[str, Any] = {
            "token": self.tokenizer.decode([token]),
            "logprob": max(float(log_probs[token]), -9999.0),
        }
        if self.settings.top_logprobs:
            values, indices = torch.topk(log_probs, self.settings.top_logprobs)
            entry["top_logprobs"] = [
                {"token": self.tokenizer.decode([int(i)]), "logprob": float(v)}
                for v, i in zip(values, indices)
            ]
        return entry

    def advance(self, token: int) -> str:
        """Record ``token``; return the text that may be sent now (possibly empty)."""
        if token in self.eos_ids:
            self.finish_reason = "stop"
            return self._flush(self._text())
        self.token_ids.append(token)
        for shaper in self.shapers:
            shaper.accept(token)
        text = self._text()
        cut = _first_stop(text, self.settings.stop, self.sent)
        if cut is not None:
            self.finish_reason = "stop"
            return self._flush(text[:cut])
        if len(self.token_ids) >= self.settings.max_tokens:
            self.finish_reason = "length"
            return self._flush(text)
        safe = len(text) - _held_back(text, self.settings.stop)
        if text.endswith("\ufffd"):
            safe = min(safe, len(text) - 1)
        return self._flush(text[:safe]) if safe > self.sent else ""

    def force_finish(self, reason: str) -> str:
        """End the row (cancelled, context full); returns any text still held back."""
        self.finish_reason = reason
        return self._flush(self._text())

    @property
    def done(self) -> bool:
        """True once the row has a finish reason."""
        return self.finish_reason is not None

    def _text(self) -> str:
        """All text generated so far: the settled part plus what the current window adds."""
        window = self.token_ids[self.prefix_offset :]
        context = self._decode(self.token_ids[self.prefix_offset : self.read_offset])
        added = self._decode(window)[len(context) :]
        if added and not added.endswith("\ufffd"):  # a complete piece: settle it, slide the window
            self.settled += added
            self.prefix_offset, self.read_offset = self.read_offset, len(self.token_ids)
            return self.settled
        return self.settled + added

    def _decode(self, token_ids: list[int]) -> str:
        """The text of ``token_ids``, without the tokenizer's space clean-up ("it 's" → "it's"):
        a clean-up that looks across a window's start would drop settled characters (vLLM too
        streams the tokens' own text)."""
        if not token_ids:
            return ""
        return str(
            self.tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        )

    def _flush(self, text: str) -> str:
        new = text[self.sent :] if len(text) > self.sent else ""
        self.sent = max(self.sent, len(text))
        return new


def _first_stop(text: str, stops: tuple[str, ...], sent: int) -> int | None:
    """Index where the earliest stop string starts, searching only text not yet sent (+overlap)."""
    best: int | None = None
    for stop in stops:
        start = max(0, sent - len(stop) + 1)
        index = text.find(stop, start)
        if index != -1 and (best is None or index < best):
            best = index
    return best


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters could be the beginning of a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest


def _top_p_filter(probs: Any, top_p: float) -> Any:
    """Nucleus sampling: keep the smallest set of tokens whose mass reaches ``top_p``."""
    import torch

    sorted_probs, order = torch.sort(probs, descending=True)
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    keep = cumulative - sorted_probs < top_p
    keep[0] = True
    filtered = torch.zeros_like(probs)
    filtered[order[keep]] = sorted_probs[keep]
    return filtered / filtered.sum()
