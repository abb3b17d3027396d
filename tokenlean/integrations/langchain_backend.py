"""Any LangChain chat model as the backend of a tokenlean pipeline (``LangChainBackend``).

A user keeps the chat model object they have (OpenAI, Anthropic, Ollama, a fake) and puts
tokenlean's stages in front of it; ``TokenleanChatModel.around`` builds both in one call.
Text only: it declares no tool, response-format or non-text-part support, so the pipeline
refuses such requests with a 400 naming the field instead of dropping them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage

from tokenlean.errors import BadRequestError
from tokenlean.integrations.function import backend_error
from tokenlean.middleware.stage import Capabilities
from tokenlean.middleware.types import Choice, Chunk, Request, Response, Usage

__all__ = ["LangChainBackend"]

_FIELDS = ("max_tokens", "temperature", "top_p", "seed")


class LangChainBackend:
    """Any LangChain chat model as a tokenlean ``Backend``.

    ``max_tokens``, ``temperature``, ``top_p`` and ``seed`` are forwarded as call keyword
    arguments when set (as the OpenAI-style integrations accept them); pass
    ``forward_params=False`` for a model that rejects them. Its errors become tokenlean's.
    """

    capabilities = Capabilities(streaming=True, logprobs=False, n=False, batching=False)

    def __init__(
        self, chat_model: BaseChatModel, *, name: str | None = None, forward_params: bool = True
    ) -> None:
        self.chat_model = chat_model
        model = getattr(chat_model, "model_name", None) or getattr(chat_model, "model", None)
        self.name = name or (model if isinstance(model, str) and model else chat_model._llm_type)
        self.forward_params = forward_params

    def models(self) -> list[str]:
        """The wrapped model's name."""
        return [self.name]

    async def aclose(self) -> None:
        """The chat model belongs to the caller; nothing is closed here."""

    async def complete(self, request: Request) -> Response:
        """Invoke (or stream) the wrapped model on ``request``; ``n`` copies are invoked concurrently."""
        messages, kwargs = _langchain_messages(request), self._kwargs(request)
        if request.stream:
            if request.n != 1:
                raise BadRequestError("a LangChain backend streams one choice at a time", param="n")
            return Response(model=self.name, stream=self._stream(messages, kwargs))
        replies = await asyncio.gather(*(self._invoke(messages, kwargs) for _ in range(request.n)))
        choices = tuple(
            Choice(i, _text(m), m.response_metadata.get("finish_reason") or "stop")
            for i, m in enumerate(replies)
        )
        return Response(model=self.name, choices=choices, usage=sum((_usage(m) for m in replies), Usage()))

    def _kwargs(self, request: Request) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"stop": list(request.stop) or None}
        if self.forward_params:
            kwargs.update(
                {name: getattr(request, name) for name in _FIELDS if getattr(request, name) is not None}
            )
        return kwargs

    async def _invoke(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> BaseMessage:
        try:
            return await self.chat_model.ainvoke(messages, **kwargs)
        except Exception as exc:
            raise backend_error(exc) from exc

    async def _stream(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AsyncIterator[Chunk]:
        usage, finish = Usage(), None
        try:
            async for piece in self.chat_model.astream(messages, **kwargs):
                usage = usage + _usage(piece)
                finish = piece.response_metadata.get("finish_reason") or finish
                if text := _text(piece):
                    yield Chunk(0, text)
        except Exception as exc:
            raise backend_error(exc) from exc
        yield Chunk(0, "", finish or "stop")
        yield Chunk(usage=usage)


def _langchain_messages(request: Request) -> list[BaseMessage]:
    if request.prompt is not None:
        return [HumanMessage(request.prompt)]
    kinds: dict[str, type[BaseMessage]] = {
        "system": SystemMessage,
        "user": HumanMessage,
        "assistant": AIMessage,
    }
    return [
        kinds[m.role](content=m.content, name=m.name)
        if m.role in kinds
        else ChatMessage(role=m.role, content=m.content)
        for m in request.messages
    ]


def _text(message: BaseMessage) -> str:
    """Text of a model's reply; non-text blocks (reasoning, tool calls) are not part of the answer."""
    if isinstance(message.content, str):
        return message.content
    parts = [
        p if isinstance(p, str) else p.get("text", "") for p in message.content if isinstance(p, (str, dict))
    ]
    return "".join(p for p in parts if isinstance(p, str))


def _usage(message: BaseMessage) -> Usage:
    metadata = getattr(message, "usage_metadata", None) or {}
    return Usage(int(metadata.get("input_tokens", 0)), int(metadata.get("output_tokens", 0)))
