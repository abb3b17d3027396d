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

One request model for every front-end: the call becomes the OpenAI body the proxy would receive
and goes through the same validation (``tokenlean.wire.parse_request``), so an unknown model is
``UnknownModelError`` and ``temperature=-1`` a ``BadRequestError`` naming the field, at
construction for the model's defaults and at call time for a call's arguments; unknown
constructor arguments are a ``ConfigError``. ``n``, ``logprobs``/``top_logprobs``, ``stop`` and
``seed`` reach the backend; ``bind_tools`` and ``with_structured_output`` travel as the request's
``tools``/``tool_choice``/``response_format`` and come back as ``AIMessage.tool_calls`` (streamed
as ``tool_call_chunks``) wherever the backend supports them (``Capabilities``); a backend that
does not refuses them with a 400 naming the field. Streaming yields choice 0 only (as
LangChain's streaming does).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, Field, model_validator

from tokenlean.errors import BackendTimeoutError, ConfigError
from tokenlean.integrations.convert import load_spec, merge_options, parse_options
from tokenlean.integrations.langchain_backend import LangChainBackend
from tokenlean.integrations.langchain_messages import (
    ai_chunk,
    ai_message,
    openai_messages,
    response_metadata,
    usage_metadata,
)
from tokenlean.integrations.langchain_structured import (
    StructuredMethod,
    ToolLike,
    openai_tool_choice,
    openai_tools,
    structured_runnable,
)
from tokenlean.middleware.pipeline import FailurePolicy, Pipeline
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.stage import Backend, Stage
from tokenlean.middleware.sync import iterate_sync, run_sync
from tokenlean.middleware.types import Chunk, Request, Response
from tokenlean.wire import parse_request

__all__ = ["LangChainBackend", "TokenleanChatModel"]

#: Model fields sent as request fields when set; a call's keyword argument of the same name wins.
_DEFAULTS = ("max_tokens", "temperature", "top_p", "seed", "n", "logprobs", "top_logprobs")
#: Call keyword arguments LangChain itself adds, never part of the request.
_LANGCHAIN_ONLY = ("stream", "ls_structured_output_format")
# langchain-core >= 1.0 marks a stream's closing chunk; without the mark it appends an empty one.
_LAST: dict[str, Any] = {"chunk_position": "last"} if "chunk_position" in AIMessageChunk.model_fields else {}


class TokenleanChatModel(BaseChatModel):
    """A LangChain chat model whose every call goes through a tokenlean ``Pipeline``."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    pipeline: Pipeline
    model_name: str = Field(default="", alias="model")
    """The model asked for; empty: the pipeline's first. Another name is ``UnknownModelError``."""
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    n: int = 1
    logprobs: bool | None = None
    top_logprobs: int | None = None
    streaming: bool = False
    """``invoke`` streams through the pipeline and joins the chunks (as ChatOpenAI's flag)."""
    timeout: float | None = None
    """Seconds a call may take (``asyncio`` timeout around the pipeline call); None: no limit."""
    max_retries: int | None = None
    """Accepted for ChatOpenAI compatibility only: retries are the backend's (OpenAIBackend's policy)."""
    tenant: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """Default per-stage options; a call's ``metadata["tokenlean"]`` wins field by field."""

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_arguments(cls, values: Any) -> Any:
        """An unknown constructor argument (``bogus_param=1``) is refused, not silently dropped."""
        if isinstance(values, Mapping):
            known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            unknown = sorted(str(k) for k in values if k not in known)
            if unknown:
                raise ConfigError(f"unknown argument(s) {unknown} for TokenleanChatModel", param=unknown[0])
        return values

    @model_validator(mode="after")
    def _valid_defaults(self) -> TokenleanChatModel:
        """The defaults are checked as a request would be: a bad one fails here, naming the field."""
        self._body([{"role": "user", "content": "probe"}], None, {})
        return self

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
        extra = {k: v for k, v in kwargs.items() if k not in _LANGCHAIN_ONLY}
        from_config = run_manager.inheritable_metadata.get("tokenlean") if run_manager else None
        options = merge_options(
            parse_options(self.options, param="options"),
            parse_options(from_config, param="metadata.tokenlean"),
            parse_options(extra.pop("tokenlean", None), param="tokenlean"),
        )
        request = self._body(openai_messages(messages), stop, {**extra, "stream": stream})
        return request.replace(options=options)

    def _body(
        self, messages: list[dict[str, Any]], stop: list[str] | None, call: Mapping[str, Any]
    ) -> Request:
        """The OpenAI body the proxy would receive, validated by the proxy's own code."""
        body: dict[str, Any] = {name: getattr(self, name) for name in _DEFAULTS}
        body.update(call)
        body = {k: v for k, v in body.items() if v is not None}
        served = self.pipeline.models()
        body["model"] = body.get("model") or self.model_name or (served[0] if served else "")
        body["messages"] = messages
        stop = stop if stop is not None else self.stop
        if stop:
            body["stop"] = list(stop)
        return parse_request(body, "chat", served=served, tenant=self.tenant)

    def bind_tools(
        self,
        tools: Sequence[ToolLike],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The model with ``tools`` (OpenAI definitions) bound; ``tool_choice`` as LangChain spells it.

        ``"any"``/``True`` mean "call a tool" (``required``, or the only tool by name); a tool's
        name forces that tool. The backend must support tools (``Capabilities.tools``), else the
        call is a 400 naming ``tools``.
        """
        formatted = openai_tools(tools, strict=strict)
        bound: dict[str, Any] = {"tools": formatted, **kwargs}
        choice = openai_tool_choice(tool_choice, formatted)
        if choice is not None:
            bound["tool_choice"] = choice
        if parallel_tool_calls is not None:
            bound["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(**bound)

    def with_structured_output(
        self,
        schema: Mapping[str, Any] | type,
        *,
        include_raw: bool = False,
        method: StructuredMethod | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answers parsed into ``schema`` (a pydantic model, TypedDict or JSON schema).

        ``method``: ``json_schema`` (the default when the backend supports response formats: the
        answer is constrained to the schema), ``function_calling`` (one forced tool call; the
        default otherwise) or ``json_mode``.
        """
        if kwargs:
            raise ConfigError(f"unknown argument(s) {sorted(kwargs)} for with_structured_output")
        if method is None:
            method = (
                "json_schema" if self.pipeline.backend.capabilities.response_format else "function_calling"
            )
        return structured_runnable(self, schema, method=method, include_raw=include_raw, strict=strict)

    async def _answer(self, request: Request) -> Response:
        """The pipeline's answer, within ``timeout`` (a stream: until it starts)."""
        if self.timeout is None:
            return await self.pipeline(request)
        try:
            return await asyncio.wait_for(self.pipeline(request), self.timeout)
        except TimeoutError:
            raise BackendTimeoutError(f"no answer within timeout={self.timeout} s") from None

    async def _complete(self, request: Request) -> ChatResult:
        response = await (await self._answer(request)).aread()
        generations = [
            ChatGeneration(message=ai_message(response, choice), generation_info=_info(choice.finish_reason))
            for choice in response.choices
        ]
        usage = response.usage
        token_usage = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        return ChatResult(
            generations=generations, llm_output={"model_name": response.model, "token_usage": token_usage}
        )

    async def _chunks(self, request: Request) -> AsyncIterator[ChatGenerationChunk]:
        """The answer as LangChain chunks; usage, model and events ride on the closing chunk."""
        response = await self._answer(request)
        events, usage, finish, first = list(response.events), response.usage, None, None
        if response.stream is None:  # answered whole (a cache hit): one chunk
            for first in response.choices[:1]:
                finish = first.finish_reason
                calls = tuple({**call, "index": i} for i, call in enumerate(first.tool_calls))
                if message := ai_chunk(Chunk(0, first.text, tool_calls=calls)):
                    yield ChatGenerationChunk(message=message)
        else:
            async with aclosing(response.stream) as stream:  # type: ignore[type-var]
                async for chunk in stream:
                    events.extend(chunk.events)
                    usage = chunk.usage if chunk.usage is not None else usage
                    if chunk.index != 0:
                        continue
                    finish = chunk.finish_reason or finish
                    if message := ai_chunk(chunk):
                        yield ChatGenerationChunk(message=message)
        closing = response.replace(usage=usage, events=tuple(events), stream=None)
        metadata = response_metadata(closing, first, finish)
        last = AIMessageChunk(
            content="", usage_metadata=usage_metadata(usage), response_metadata=metadata, **_LAST
        )
        yield ChatGenerationChunk(message=last, generation_info=_info(finish))


def _info(finish: str | None) -> dict[str, Any]:
    return {"finish_reason": finish}


def _config_options(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    metadata = (config or {}).get("metadata") or {}
    if "tokenlean" not in metadata:
        return kwargs
    from_config = parse_options(metadata["tokenlean"], param="metadata.tokenlean")
    return {**kwargs, "tokenlean": merge_options(from_config, parse_options(kwargs.get("tokenlean")))}
