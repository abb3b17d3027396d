"""OpenAI wire models: the request bodies tokenlean accepts, validated strictly enough that a bad
value gets a 400 naming it, and open (``extra="allow"``) so that fields tokenlean does not act on
reach the backend as they came (vLLM's ``top_k``, ``prompt_logprobs``, ``guided_json``, ...).

Tools, tool choice, response format, content parts and tool-call history are modelled so the
OpenAPI document describes them and nonsense (``response_format: {"type": "nonsense"}``) is
refused; they are passed on as sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Message

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


StopText = Annotated[str, Field(min_length=1)]  # an empty stop sequence would end every answer at once


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
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOP)] | None = None
    n: int = Field(default=1, ge=1, le=MAX_N, strict=True)
    stream: bool = Field(default=False, strict=True)
    stream_options: StreamOptions | None = None
    user: str | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100, strict=True)]] | None = None
    tokenlean: dict[str, Any] | None = None  # extra_body={"tokenlean": {...}}: per-call stage options


class ChatCompletionRequest(_SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = Field(default=False, strict=True)
    top_logprobs: int | None = Field(default=None, ge=0, le=20, strict=True)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    response_format: ResponseFormat | None = None

    def check_tool_choice(self) -> None:
        """A named ``tool_choice`` must name one of ``tools`` (OpenAI refuses it too)."""
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools or ()}
            if self.tool_choice.function.name not in names:
                name = self.tool_choice.function.name
                raise BadRequestError(f"tool_choice: {name!r} is not one of tools", param="tool_choice")


class CompletionRequest(_SamplingFields):
    """``POST /v1/completions`` (legacy text completion)."""

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]  # one prompt per request
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
