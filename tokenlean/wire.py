"""OpenAI wire models and their conversion to and from tokenlean's ``Request``/``Response``.

The models accept unknown fields (``extra="allow"``) and pass them to the backend untouched
(``Request.extra``): vLLM's extras such as ``top_k`` or ``prompt_logprobs`` must survive the
proxy. Known fields are validated strictly enough that a bad value gets a 400 naming it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Choice, Chunk, Message, Request, Response

__all__ = [
    "ChatCompletionRequest",
    "CompletionRequest",
    "ErrorResponse",
    "chat_chunk",
    "chat_response",
    "check_json_values",
    "completion_chunk",
    "completion_response",
    "to_request",
]

MAX_N = 16
MAX_STOP = 4
MAX_TOKENS = 2**31 - 1  # vLLM and torch count tokens in 32-bit ints; larger is never a real request
MAX_DEPTH = 64  # nesting of pass-through fields and stage options (vLLM's guided_json schemas fit)


class _ContentPart(BaseModel):
    """One part of a list ``content``: ``text``, ``image_url``, ``input_audio``, ``file``, ... (kept as sent)."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class _Function(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)


class ToolCallFunction(_Function):
    """The function an assistant turn called, with its arguments as a JSON string."""

    arguments: str


class ToolCall(BaseModel):
    """An assistant turn's tool call, as the model produced it (sent back in the history)."""

    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class FunctionDefinition(_Function):
    """A callable tool: its name, what it does, and the JSON schema of its arguments."""

    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = Field(default=None, strict=True)


class Tool(BaseModel):
    """One entry of ``tools``."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDefinition


class NamedToolChoice(BaseModel):
    """``tool_choice`` naming the function the model must call."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: _Function


class JsonSchemaFormat(BaseModel):
    """``response_format.json_schema``: the schema the answer must follow."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str = Field(min_length=1)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = Field(default=None, strict=True)


class ResponseFormat(BaseModel):
    """``response_format``: plain text, any JSON object, or JSON following ``json_schema``."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a json_schema object")
        return self


class ChatMessage(BaseModel):
    """One message of a chat request; list-of-parts content keeps its parts (text parts joined)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[_ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text: a string, or its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")

    def to_message(self) -> Message:
        """The ``Message`` a stage sees; parts, tool calls and other fields kept as sent."""
        parts = None
        if isinstance(self.content, list):
            parts = tuple(p.model_dump(exclude_unset=True) for p in self.content)
        return Message(
            self.role,
            self.text(),
            self.name,
            parts=parts,
            tool_calls=tuple(c.model_dump(exclude_unset=True) for c in self.tool_calls or ()),
            tool_call_id=self.tool_call_id,
            extra=dict(self.model_extra or {}),
        )


class StreamOptions(BaseModel):
    """OpenAI ``stream_options``."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool = Field(default=False, strict=True)


class _SamplingFields(BaseModel):
    """Fields shared by chat and text completions.

    Numbers and booleans are strict: ``"5"``, ``5.0`` or ``false`` for ``max_tokens`` is the
    caller's mistake (OpenAI rejects it too), not something to coerce silently.
    """

    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS, strict=True)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, gt=0, le=1, strict=True)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, strict=True)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=MAX_N, strict=True)
    stream: bool = Field(default=False, strict=True)
    stream_options: StreamOptions | None = None
    user: str | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100, strict=True)]] | None = None
    tokenlean: dict[str, Any] | None = None  # extra_body={"tokenlean": {...}}: per-call stage options

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if isinstance(value, list) and any(not s for s in value) or value == "":
            raise ValueError("stop sequences must not be empty")
        return value


class ChatCompletionRequest(_SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = Field(default=False, strict=True)
    top_logprobs: int | None = Field(default=None, ge=0, le=20, strict=True)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self) -> ChatCompletionRequest:
        """A named ``tool_choice`` must name one of ``tools`` (OpenAI refuses it too)."""
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools or ()}
            if self.tool_choice.function.name not in names:
                raise ValueError(f"tool_choice names {self.tool_choice.function.name!r}, not one of tools")
        return self


class CompletionRequest(_SamplingFields):
    """``POST /v1/completions`` (legacy text completion)."""

    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=20, strict=True)
    echo: bool = Field(default=False, strict=True)


class ErrorDetail(BaseModel):
    """OpenAI's error object (documents the 4xx/5xx answers in the OpenAPI schema)."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {message, type, param, code}}``."""

    error: ErrorDetail


_KNOWN = set(ChatCompletionRequest.model_fields) | set(CompletionRequest.model_fields)
# Validated here but acted on by the backend only: passed on in ``Request.extra`` as sent.
_PASSED_ON = ("user", "presence_penalty", "frequency_penalty", "logit_bias")


def check_json_values(value: Any, param: str) -> None:
    """Reject what JSON text can carry but no backend can take: NaN/Infinity and deep nesting.

    The JSON parser accepts ``NaN`` and ``1e999`` (infinity) in untyped fields; passed through, they
    break later and far from the cause (httpx refuses to encode them, so the caller would see a
    502 for its own input). Nesting is bounded so walking a value never exhausts the stack.
    Iterative on purpose: the depth check must not itself recurse.
    """
    stack: list[tuple[Any, str, int]] = [(value, param, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise BadRequestError(f"{path}: NaN and Infinity are not valid JSON numbers", param=path)
        if isinstance(item, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                field = ".".join(path.split(".")[: param.count(".") + 1 + bool(param)])  # not 64 ".0"s
                raise BadRequestError(
                    f"{field}: nested deeper than the limit of {MAX_DEPTH} levels", param=field
                )
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend(
                (child, f"{path}.{key}" if path else str(key), depth + 1)
                for key, child in pairs
                if isinstance(child, (dict, list, tuple, float))
            )


def to_request(
    body: ChatCompletionRequest | CompletionRequest, *, tenant: str | None, request_id: str
) -> Request:
    """Convert a validated wire request into a ``Request`` (unknown fields go to ``extra``)."""
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    extra = {k: v for k, v in (body.model_extra or {}).items() if k not in _KNOWN}
    check_json_values(extra, "")
    check_json_values(body.tokenlean or {}, "tokenlean")
    check_json_values(body.stream_options.model_extra if body.stream_options else {}, "stream_options")
    if isinstance(body, CompletionRequest) and body.echo:
        extra["echo"] = True
    extra.update({k: getattr(body, k) for k in _PASSED_ON if getattr(body, k) is not None})
    common: dict[str, Any] = {
        "model": body.model,
        "max_tokens": body.max_tokens if body.max_tokens is not None else body.max_completion_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "seed": body.seed,
        "stop": stop,
        "n": body.n,
        "stream": body.stream,
        "extra": extra,
        "options": body.tokenlean or {},
        "tenant": tenant,
        "request_id": request_id,
    }
    if isinstance(body, ChatCompletionRequest):
        check_json_values([m.model_dump(exclude_unset=True) for m in body.messages], "messages")
        check_json_values([t.model_dump() for t in body.tools or ()], "tools")
        check_json_values(_dump(body.response_format), "response_format")
        return Request(
            messages=tuple(m.to_message() for m in body.messages),
            logprobs=body.logprobs,
            top_logprobs=body.top_logprobs,
            tools=tuple(t.model_dump(exclude_unset=True) for t in body.tools or ()),
            tool_choice=_dump(body.tool_choice),
            parallel_tool_calls=body.parallel_tool_calls,
            response_format=_dump(body.response_format),
            **common,
        )
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise BadRequestError("prompt: exactly one prompt per request is supported", param="prompt")
        prompt = prompt[0]
    return Request(
        prompt=prompt, logprobs=body.logprobs is not None, top_logprobs=body.logprobs or None, **common
    )


def _dump(value: BaseModel | str | None) -> Any:
    """A validated sub-object back as the JSON the client sent (by alias, unset fields left out)."""
    return value.model_dump(exclude_unset=True, by_alias=True) if isinstance(value, BaseModel) else value


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
            delta["tool_calls"] = [dict(call) for call in chunk.tool_calls]
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
