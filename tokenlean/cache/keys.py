"""Cache keys that never collide wrongly.

A widely used semantic cache keys on the last message only, so a request with another system
prompt (or another conversation history) receives an answer written for a different context. Here
every key covers everything that changes the answer, after canonicalisation:

* the **exact key** hashes the scope (tenant and namespace), the model, the whole message list
  (roles, names, text, non-text parts, tool calls and tool call ids) or the text prompt, the
  sampling parameters that matter, and the tools, tool choice and response format;
* the **context key** hashes the same things except the text of the final user turn. The semantic
  lookup only compares requests with an identical context key, so a paraphrase can only ever be
  answered from an entry written for the same system prompt, history and parameters. A request
  with tools, a JSON response format or non-text parts has no context key: it is matched exactly.

Canonicalisation keeps what can change an answer and drops what cannot: line endings, trailing
blanks and runs of blank lines are normalised, but indentation is kept (it is meaning in code);
JSON options are compared with sorted keys and numbers as floats (``0`` == ``0.0``); under greedy
decoding (temperature 0) ``top_p`` and ``seed`` do not change the output and are dropped; the
order of ``stop`` sequences does not matter. Whether the answer is streamed is not part of the key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenlean.middleware.types import Message, Request

__all__ = ["RequestKeys", "canonical_json", "canonical_text", "request_keys"]

#: OpenAI fields that never change the generated text (bookkeeping and transport only).
IGNORED_EXTRA = frozenset({"user", "metadata", "stream_options", "store", "service_tier", "tokenlean"})

_TRAILING_BLANKS = re.compile(r"[ \t\f\v]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")
_VERSION = 2  # bump when the key layout changes, so old entries stop matching


@dataclass(frozen=True, slots=True)
class RequestKeys:
    """The keys of one request within one scope.

    ``context`` is None when the request has no final user turn to compare by meaning (a legacy
    text prompt, or a conversation that ends on an assistant or tool message): such a request
    is only ever matched exactly.
    """

    exact: str
    context: str | None
    query: str
    scope: str


def canonical_text(text: str) -> str:
    """Text with line endings, trailing blanks and blank-line runs normalised; indentation kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_BLANKS.sub("\n", text + "\n")
    return _BLANK_RUNS.sub("\n\n", text).strip()


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys and every number as a float, so equal values hash equally."""
    return json.dumps(_canonical_value(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_value(v) for v in value]
    return str(value)


def _sampling(request: Request) -> dict[str, Any]:
    """The parameters that change the answer, canonicalised."""
    greedy = request.temperature == 0
    extra = {k: v for k, v in request.extra.items() if k not in IGNORED_EXTRA}
    return {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": None if greedy else request.top_p,
        "seed": None if greedy else request.seed,
        "stop": sorted(set(request.stop)),
        "n": request.n,
        "logprobs": request.logprobs,
        "top_logprobs": request.top_logprobs if request.logprobs else None,
        "tools": list(request.tools),
        "tool_choice": request.tool_choice,
        "parallel_tool_calls": request.parallel_tool_calls,
        "response_format": request.response_format,
        "extra": extra,
    }


def _message_key(message: Message) -> list[Any]:
    """A message as the key sees it: role, name, text, and what else can change the answer.

    Non-text parts (an image, an audio clip), tool calls in the history, the id a tool turn
    answers and the message's other fields are hashed as sent; a plain text turn keys as before.
    """
    key: list[Any] = [message.role, message.name or "", canonical_text(message.content)]
    others = [p for p in message.parts or () if p.get("type") != "text"]
    if others or message.tool_calls or message.tool_call_id or message.extra:
        key.append([others, list(message.tool_calls), message.tool_call_id, dict(message.extra)])
    return key


def _digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def request_keys(request: Request, *, tenant: str | None, namespace: str) -> RequestKeys:
    """The exact and context keys of ``request`` inside the scope ``(tenant, namespace)``."""
    scope = _digest({"v": _VERSION, "tenant": tenant or "", "namespace": namespace})
    messages = [_message_key(m) for m in request.messages]
    base = {"v": _VERSION, "scope": scope, "model": request.model, "params": _sampling(request)}
    prompt = canonical_text(request.prompt) if request.prompt is not None else None
    exact = _digest({**base, "messages": messages, "prompt": prompt})
    if prompt is not None or not messages or messages[-1][0] != "user" or request.structured_features:
        # No meaning-based match: a tool call's arguments or a JSON answer's values are taken from
        # the exact wording (a paraphrase naming another city must not get this city's call).
        return RequestKeys(exact, None, prompt if prompt is not None else "", scope)
    final = messages[-1]
    context = _digest({**base, "messages": messages[:-1], "final": ["user", final[1]]})
    return RequestKeys(exact, context, final[2], scope)
