"""LangChain in both directions: a chat model that runs a tokenlean pipeline, and any LangChain
chat model as the backend of one.

``TokenleanChatModel`` implements langchain-core's ``BaseChatModel`` template hooks. The async
hooks (``_agenerate``, ``_astream``) are the implementation; the sync hooks (``_generate``,
``_stream``) only hand the same coroutine to the one sync bridge (``run_sync``), so there is no
second copy of the logic, and ``ainvoke``/``astream`` never take a detour through a thread.
Per-call options come from ``config={"metadata": {"tokenlean": {...}}}`` (or ``.bind(tokenlean=
{...})``) and become ``Request.options``; each answer carries ``usage_metadata`` and, in
``response_metadata["tokenlean"]["events"]``, what the stages did.

``LangChainBackend`` turns the other way: a user keeps the chat model object they have (OpenAI,
Anthropic, Ollama, a fake) and puts tokenlean's stages in front of it; ``TokenleanChatModel.around``
builds both in one call.

Known limits: text content only (image parts are refused by name); tool calls and structured
output are not carried through the pipeline; one generation per call when streaming.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field

from tokenlean.errors import BadRequestError
from tokenlean.integrations.convert import flatten_content, load_spec, merge_options, parse_options
from tokenlean.integrations.function import backend_error
from tokenlean.middleware.pipeline import FailurePolicy, Pipeline
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.stage import Backend, Capabilities, Stage
from tokenlean.middleware.sync import iterate_sync, run_sync
from tokenlean.middleware.types import Choice, Chunk, Message, Request, Response, Usage
from tokenlean.wire import events_json

__all__ = ["LangChainBackend", "TokenleanChatModel"]

_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant", "system": "system",
          "developer": "developer", "tool": "tool", "function": "tool"}  # fmt: skip
_FIELDS = ("max_tokens", "temperature", "top_p", "seed")
# langchain-core >= 1.0 marks a stream's closing chunk; without the mark it appends an empty one.
_LAST: dict[str, Any] = {"chunk_position": "last"} if "chunk_position" in AIMessageChunk.model_fields else {}


class TokenleanChatModel(BaseChatModel):
    """A LangChain chat model whose every call goes through a tokenlean ``Pipeline``."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    pipeline: Pipeline
    model_name: str = Field(default="", alias="model")
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    tenant: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """Default per-stage options; a call's ``metadata["tokenlean"]`` wins field by field."""

    @classmethod
    def from_spec(
        cls,
        spec: PipelineSpec | Mapping[str, Any] | str | Path | None = None,
        *,
        backend: Backend | None = None,
        **fields: Any,
    ) -> TokenleanChatModel:
        """Build the pipeline a spec (object, dict or YAML/JSON path) declares; ``backend`` overrides its own.

        No spec: the lean default profile (docs/profiles.md) around the embedded model.
        """
        return cls(
            pipeline=load_spec(spec if spec is not None else {"profile": "lean"}).build(backend), **fields
        )

    @classmethod
    def around(
        cls,
        chat_model: BaseChatModel,
        *,
        stages: Sequence[Stage] = (),
        policies: Mapping[str, FailurePolicy] | None = None,
        **fields: Any,
    ) -> TokenleanChatModel:
        """tokenlean's ``stages`` in front of an existing LangChain chat model."""
        return cls(pipeline=Pipeline(LangChainBackend(chat_model), stages, policies=policies), **fields)

    @property
    def _llm_type(self) -> str:
        return "tokenlean"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        stages = [stage.name for stage in self.pipeline.stages]
        return {
            "model_name": self.model_name,
            "stages": stages,
            "backend": type(self.pipeline.backend).__name__,
        }

    # ``stream``/``astream`` call ``_stream``/``_astream`` without the run manager that carries the
    # config's metadata, so they pass the options on as a keyword argument instead.
    def stream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """As ``BaseChatModel.stream``, with ``config["metadata"]["tokenlean"]`` applied."""
        yield from super().stream(input, config, stop=stop, **_config_options(config, kwargs))

    async def astream(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """As ``BaseChatModel.astream``, with ``config["metadata"]["tokenlean"]`` applied."""
        async for chunk in super().astream(input, config, stop=stop, **_config_options(config, kwargs)):
            yield chunk

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return run_sync(self._complete(self._request(messages, stop, run_manager, kwargs)))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await self._complete(self._request(messages, stop, run_manager, kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from iterate_sync(self._chunks(self._request(messages, stop, run_manager, kwargs, stream=True)))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in self._chunks(self._request(messages, stop, run_manager, kwargs, stream=True)):
            yield chunk

    def _request(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        kwargs: Mapping[str, Any],
        *,
        stream: bool = False,
    ) -> Request:
        """The ``Request`` for one call: model defaults, then the call's own arguments and options."""
        extra = dict(kwargs)
        extra.pop("stream", None)
        from_config = run_manager.inheritable_metadata.get("tokenlean") if run_manager else None
        options = merge_options(
            parse_options(self.options, param="options"),
            parse_options(from_config, param="metadata.tokenlean"),
            parse_options(extra.pop("tokenlean", None), param="tokenlean"),
        )
        fields = {name: extra.pop(name, getattr(self, name)) for name in _FIELDS}
        return Request(
            messages=tuple(_message(m, f"messages[{i}]") for i, m in enumerate(messages)),
            model=extra.pop("model", self.model_name),
            stop=tuple(stop if stop is not None else self.stop or ()),
            stream=stream,
            extra=extra,
            options=options,
            tenant=self.tenant,
            **fields,
        )

    async def _complete(self, request: Request) -> ChatResult:
        response = await (await self.pipeline(request)).aread()
        generations = [
            ChatGeneration(
                message=_ai_message(response, choice), generation_info={"finish_reason": choice.finish_reason}
            )
            for choice in response.choices
        ]
        usage = response.usage
        token_usage = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        return ChatResult(
            generations=generations, llm_output={"model_name": response.model, "token_usage": token_usage}
        )

    async def _chunks(self, request: Request) -> AsyncIterator[ChatGenerationChunk]:
        """The answer as LangChain chunks; usage, model and events ride on the closing chunk."""
        response = await self.pipeline(request)
        events, usage, finish = list(response.events), response.usage, None
        if response.stream is None:  # answered whole (a cache hit): one text chunk
            for choice in response.choices[:1]:
                finish = choice.finish_reason
                yield ChatGenerationChunk(message=AIMessageChunk(content=choice.text))
        else:
            async with aclosing(response.stream) as stream:  # type: ignore[type-var]
                async for chunk in stream:
                    events.extend(chunk.events)
                    usage = chunk.usage if chunk.usage is not None else usage
                    if chunk.index == 0 and chunk.finish_reason is not None:
                        finish = chunk.finish_reason
                    if chunk.index == 0 and chunk.text:
                        yield ChatGenerationChunk(message=AIMessageChunk(content=chunk.text))
        closing = response.replace(usage=usage, events=tuple(events), stream=None)
        metadata = _response_metadata(closing, finish)
        last = AIMessageChunk(
            content="", usage_metadata=_usage_metadata(usage), response_metadata=metadata, **_LAST
        )
        yield ChatGenerationChunk(message=last, generation_info={"finish_reason": finish})


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


def _config_options(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    metadata = (config or {}).get("metadata") or {}
    if "tokenlean" not in metadata:
        return kwargs
    from_config = parse_options(metadata["tokenlean"], param="metadata.tokenlean")
    return {**kwargs, "tokenlean": merge_options(from_config, parse_options(kwargs.get("tokenlean")))}


def _message(message: BaseMessage, param: str) -> Message:
    kind = message.role if isinstance(message, ChatMessage) else message.type
    role = _ROLES.get(kind)
    if role is None:
        raise BadRequestError(f"{param}: unsupported message type {kind!r}", param=param)
    return Message(role, flatten_content(message.content, param=f"{param}.content"), message.name)  # type: ignore[arg-type]


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


def _usage_metadata(usage: Usage) -> Any:
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _response_metadata(response: Response, finish: str | None) -> dict[str, Any]:
    return {
        "model_name": response.model,
        "finish_reason": finish,
        "id": response.id,
        "tokenlean": events_json(response),
    }


def _ai_message(response: Response, choice: Choice) -> AIMessage:
    usage = response.usage if choice.index == 0 else Usage()
    metadata = _response_metadata(response, choice.finish_reason)
    return AIMessage(content=choice.text, usage_metadata=_usage_metadata(usage), response_metadata=metadata)
