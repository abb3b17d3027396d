"""``Response`` -> OpenAI JSON: completions, chunks, and the ``tokenlean`` events field.

Everything the upstream answered goes back: tool calls (``content: null`` beside them, as OpenAI
sends), the choice's vendor fields (vLLM's ``stop_reason``), the message's and the delta's extra
fields, and the answer's top-level extras (``system_fingerprint``, ``prompt_logprobs``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tokenlean.middleware.types import Choice, Chunk, Response, join_same_index


def events_json(response: Response) -> dict[str, Any]:
    """The ``tokenlean`` field: every stage event, for clients that want to see savings."""
    return {
        "events": [
            {"stage": e.stage, "action": e.action, "ms": e.ms, **dict(e.data)} for e in response.events
        ]
    }


def _usage_json(response: Response) -> dict[str, int]:
    u = response.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def _message_json(choice: Choice) -> dict[str, Any]:
    """The answer's ``message``: text (``None`` beside tool calls, as OpenAI sends), tool calls, extras."""
    message: dict[str, Any] = {**dict(choice.extra.get("message") or {}), "role": "assistant"}
    message["content"] = choice.text if choice.text or not choice.tool_calls else None
    if choice.tool_calls:
        message["tool_calls"] = [dict(call) for call in choice.tool_calls]
    return message


def _choice_extra(extra: Mapping[str, Any], nested: str) -> dict[str, Any]:
    """A choice's vendor fields (``stop_reason``, ...), without the nested message/delta fields."""
    return {k: v for k, v in extra.items() if k != nested}


def chat_response(response: Response) -> dict[str, Any]:
    """A complete ``chat.completion`` object; the upstream's extra fields are passed back as they came."""
    choices = [
        {
            **_choice_extra(c.extra, "message"),
            "index": c.index,
            "message": _message_json(c),
            "finish_reason": c.finish_reason,
            "logprobs": {"content": list(c.logprobs)} if c.logprobs is not None else None,
        }
        for c in response.choices
    ]
    return {
        **dict(response.extra),
        "id": response.id,
        "object": "chat.completion",
        "created": response.created,
        "model": response.model,
        "choices": choices,
        "usage": _usage_json(response),
        "tokenlean": events_json(response),
    }


def completion_response(response: Response) -> dict[str, Any]:
    """A complete ``text_completion`` object."""
    choices = [
        {
            **_choice_extra(c.extra, "message"),
            "index": c.index,
            "text": c.text,
            "finish_reason": c.finish_reason,
            "logprobs": _text_logprobs(c.logprobs),
        }
        for c in response.choices
    ]
    return {
        **dict(response.extra),
        "id": response.id.replace("chatcmpl-", "cmpl-"),
        "object": "text_completion",
        "created": response.created,
        "model": response.model,
        "choices": choices,
        "usage": _usage_json(response),
        "tokenlean": events_json(response),
    }


def _text_logprobs(entries: Any) -> dict[str, Any] | None:
    if entries is None:
        return None
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs", [])} for e in entries],
    }


def chat_chunk(response: Response, chunk: Chunk, *, first: bool) -> dict[str, Any]:
    """One ``chat.completion.chunk``; the usage-only chunk has ``choices: []``."""
    body: dict[str, Any] = {
        "id": response.id,
        "object": "chat.completion.chunk",
        "created": response.created or int(time.time()),
        "model": response.model,
        "choices": [],
    }
    if chunk.usage is None or chunk.text or chunk.finish_reason or chunk.tool_calls:
        delta: dict[str, Any] = dict(chunk.extra.get("delta") or {})
        if chunk.text or not (chunk.finish_reason or chunk.tool_calls):
            delta["content"] = chunk.text
        if chunk.tool_calls:
            delta["tool_calls"] = join_same_index(chunk.tool_calls)
        if first:
            delta["role"] = "assistant"
        logprobs = {"content": list(chunk.logprobs)} if chunk.logprobs else None
        body["choices"] = [
            {
                **_choice_extra(chunk.extra, "delta"),
                "index": chunk.index,
                "delta": delta,
                "finish_reason": chunk.finish_reason,
                "logprobs": logprobs,
            }
        ]
    return body


def completion_chunk(response: Response, chunk: Chunk) -> dict[str, Any]:
    """One streamed ``text_completion`` chunk."""
    body: dict[str, Any] = {
        "id": response.id.replace("chatcmpl-", "cmpl-"),
        "object": "text_completion",
        "created": response.created,
        "model": response.model,
        "choices": [],
    }
    if chunk.usage is None or chunk.text or chunk.finish_reason:
        body["choices"] = [
            {
                **_choice_extra(chunk.extra, "delta"),
                "index": chunk.index,
                "text": chunk.text,
                "finish_reason": chunk.finish_reason,
                "logprobs": _text_logprobs(chunk.logprobs),
            }
        ]
    return body
