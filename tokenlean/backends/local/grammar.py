"""Grammar-constrained decoding for the embedded backend: JSON mode, JSON schemas, tool calls.

Why llguidance: measured on this CPU with SmolLM2's 49,152-token vocabulary (``bench/structured.py``
has the in-loop figures), its token mask costs ~14 µs median / ~80 µs mean per token and a new
JSON schema compiles in under a millisecond, against a ~33 ms decode step. xgrammar's masks are
faster still (~3 µs) but its wheel requires triton and apache-tvm-ffi; llguidance has no Python
dependencies and its matcher offers what a custom decode loop wants (``consume_token``,
``rollback``, ``validate_tokens``).

How it fits the loop: a ``GrammarConstraint`` travels with one row (one of ``RowDecoder.shapers``).
Before each choice it sets every token the grammar forbids to ``-inf`` (per row, before
sampling, so greedy, sampling, top-p and logprobs all see the constrained distribution); each
token the row keeps is fed to the matcher. End-of-sequence is allowed only where the grammar
accepts, so a row ends exactly when its JSON is complete. Speculative drafting is turned off for
constrained rows (their drafts are not checked against the grammar).

Failure modes: the matcher's tokenizer view is built once per backend on first use (~1 s, plus
~1.5 s for the first mask while llguidance indexes the vocabulary). A schema llguidance cannot
compile is the caller's 400 naming the field. ``max_tokens`` can still cut JSON short (finish
reason ``length``), as with OpenAI.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from tokenlean.errors import BadRequestError

__all__ = ["JSON_OPTIONS", "GrammarCompiler", "GrammarConstraint", "json_grammar"]

# One fixed layout, as ``json.dumps`` writes it: a small model left free to choose whitespace
# can wander into endless newlines; fixed separators also make tool-call text predictable.
JSON_OPTIONS: Any = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}


def json_grammar(schema: Mapping[str, Any]) -> str:
    """The llguidance grammar (serialised) for JSON following ``schema``."""
    import llguidance

    return str(llguidance.LLMatcher.grammar_from_json_schema(closed(schema), defaults=JSON_OPTIONS))


_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SUBSCHEMAS = ("items", "prefixItems", "anyOf", "oneOf", "not", "additionalProperties", "if", "then", "else")


def closed(schema: Any) -> Any:
    """``schema`` with objects that list ``properties`` closed to other keys (unless it says otherwise).

    Why: JSON Schema allows unlisted keys by default, and SmolLM2 takes the chance to pad tool
    arguments with invented fields until ``max_tokens`` cuts the JSON. Every output of the closed
    schema is valid under the original, so this narrows the choice without breaking validity.
    ``allOf`` branches are left open: closing each would forbid the other branches' keys.
    """
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):  # name -> schema
            result[key] = {name: closed(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMAS:
            result[key] = closed(value)
        else:
            result[key] = value
    if "properties" in result and "additionalProperties" not in result and "patternProperties" not in result:
        result["additionalProperties"] = False
    return result


class GrammarCompiler:
    """Turns grammars into per-row constraints for one tokenizer; thread-safe, built lazily.

    The tokenizer view (llguidance's ``LLTokenizer``) is the expensive part and is shared; each
    ``constraint`` call makes a fresh matcher (about a millisecond for a schema of ten fields).
    """

    def __init__(self, tokenizer: Any, eos_ids: frozenset[int], vocab_size: int) -> None:
        self.tokenizer, self.eos_ids, self.vocab_size = tokenizer, eos_ids, vocab_size
        self._lltokenizer: Any = None
        self._lock = threading.Lock()

    def lltokenizer(self) -> Any:
        """llguidance's view of the vocabulary (built on first use, then kept)."""
        with self._lock:
            if self._lltokenizer is None:
                import llguidance.hf

                self._lltokenizer = llguidance.hf.from_tokenizer(
                    self.tokenizer, n_vocab=self.vocab_size, eos_token=sorted(self.eos_ids)
                )
            return self._lltokenizer

    def check(self, grammar: str, param: str) -> None:
        """Raise ``BadRequestError`` naming ``param`` when llguidance rejects ``grammar``."""
        import llguidance

        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self.lltokenizer())
        if is_error:
            raise BadRequestError(f"{param}: cannot be enforced: {'; '.join(messages)}", param=param)

    def shapers(self, grammar: str | None, rows: int, param: str, first: Any = None) -> list[tuple[Any, ...]]:
        """Each row's shapers: ``first`` (penalties, shared) then its own matcher for ``grammar``.

        The grammar is checked first (a 400 naming ``param``); its mask comes last, so no bias can
        bring back a token the grammar forbids.
        """
        shared = (first,) if first is not None else ()
        if grammar is None:
            return [shared for _ in range(rows)]
        self.check(grammar, param)
        return [(*shared, self.constraint(grammar)) for _ in range(rows)]

    def constraint(self, grammar: str) -> GrammarConstraint:
        """A fresh matcher for one row, positioned at the start of the grammar."""
        import llguidance

        matcher = llguidance.LLMatcher(self.lltokenizer(), grammar, log_level=0)
        if matcher.is_error():
            raise BadRequestError(f"grammar error: {matcher.get_error()}", param="response_format")
        return GrammarConstraint(matcher, min(self.eos_ids) if self.eos_ids else 0)


class GrammarConstraint:
    """One row's grammar state: masks logits before each choice, consumes each kept token."""

    def __init__(self, matcher: Any, eos_id: int) -> None:
        self.matcher, self.eos_id = matcher, eos_id
        self.masks = 0  # how many masks were computed (the bench counts them)

    def shape(self, logits: Any, token_ids: list[int]) -> Any:
        """``logits`` (1-D) with every token the grammar forbids next set to ``-inf`` (a copy)."""
        import numpy as np
        import torch

        self.masks += 1
        vocab = logits.shape[-1]
        if self.matcher.is_error():  # cannot happen for tokens chosen under the mask: end the row
            allowed = np.zeros(vocab, dtype=bool)
            allowed[self.eos_id] = True
        else:
            bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
            allowed = np.unpackbits(bits, bitorder="little").astype(bool)
            if allowed.shape[0] < vocab:  # the model's head is wider than the tokenizer
                allowed = np.concatenate([allowed, np.zeros(vocab - allowed.shape[0], dtype=bool)])
            allowed = allowed[:vocab]
        return logits.masked_fill(~torch.from_numpy(allowed), float("-inf"))

    def accept(self, token: int) -> None:
        """Feed a kept token to the matcher (a refused one leaves it in its error state: EOS next)."""
        self.matcher.consume_token(token)

    @property
    def finished(self) -> bool:
        """The grammar admits nothing more (only end-of-sequence)."""
        return bool(self.matcher.is_stopped())


def schema_text(schema: Mapping[str, Any]) -> str:
    """A schema as compact text for a prompt (the model reads what it must produce)."""
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
