"""LangChain messages <-> OpenAI's chat shapes, for ``TokenleanChatModel`` and ``LangChainBackend``.

Going in, LangChain's own converter (``convert_to_openai_messages``) turns messages into the
OpenAI JSON the proxy accepts (content blocks, an assistant's ``tool_calls``, a tool turn's
``tool_call_id``), so the same validation (``tokenlean.wire.parse_request``) reads all three
front-ends. Coming out, a choice becomes an ``AIMessage`` with ``tool_calls`` (arguments parsed;
unparseable ones in ``invalid_tool_calls``) and a streamed chunk an ``AIMessageChunk`` with
``tool_call_chunks``, as LangChain's OpenAI integration produces them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_openai_messages
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call

from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Choice, Chunk, Response, Usage, join_same_index
from tokenlean.wire import events_json

__all__ = ["ai_chunk", "ai_message", "openai_messages", "response_metadata", "usage_metadata"]


def openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """``messages`` as OpenAI chat messages; a message LangChain cannot express is a 400."""
    try:
        converted = convert_to_openai_messages(list(messages))
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise BadRequestError(f"messages: {exc}", param="messages") from None
    return [dict(m) for m in converted]


def usage_metadata(usage: Usage) -> Any:
    """LangChain's ``usage_metadata`` for ``usage``."""
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def response_metadata(response: Response, choice: Choice | None, finish: str | None) -> dict[str, Any]:
    """Model, finish reason, id, logprobs, vendor fields and the stages' events."""
    metadata: dict[str, Any] = {
        "model_name": response.model,
        "model_provider": "tokenlean",
        "finish_reason": finish,
        "id": response.id,
        "tokenlean": events_json(response),
    }
    if choice is not None:
        metadata.update({k: v for k, v in choice.extra.items() if k != "message"})
        if choice.logprobs is not None:
            metadata["logprobs"] = {"content": list(choice.logprobs)}
    return metadata


def ai_message(response: Response, choice: Choice) -> AIMessage:
    """One choice as an ``AIMessage``: text, parsed tool calls, usage (on the first) and metadata."""
    calls, invalid = [], []
    for raw in choice.tool_calls:
        try:
            parsed = parse_tool_call(dict(raw), return_id=True)
        except Exception as exc:  # noqa: BLE001 - langchain reports unparseable arguments this way
            invalid.append(make_invalid_tool_call(dict(raw), str(exc)))
            continue
        if parsed is not None:
            calls.append(parsed)
    usage = response.usage if choice.index == 0 else Usage()
    return AIMessage(
        content=choice.text,
        tool_calls=calls,
        invalid_tool_calls=invalid,
        usage_metadata=usage_metadata(usage),
        response_metadata=response_metadata(response, choice, choice.finish_reason),
    )


def ai_chunk(chunk: Chunk) -> AIMessageChunk | None:
    """A streamed piece of choice 0 as an ``AIMessageChunk`` (text and tool-call deltas), or None."""
    pieces = [_tool_call_chunk(delta) for delta in join_same_index(chunk.tool_calls)]
    if not chunk.text and not pieces:
        return None
    return AIMessageChunk(content=chunk.text, tool_call_chunks=pieces)


def _tool_call_chunk(delta: Mapping[str, Any]) -> Any:
    function = delta.get("function") or {}
    return tool_call_chunk(
        name=function.get("name"),
        args=function.get("arguments"),
        id=delta.get("id"),
        index=delta.get("index"),
    )
