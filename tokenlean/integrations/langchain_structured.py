"""``bind_tools`` and ``with_structured_output`` for ``TokenleanChatModel``, as OpenAI's integration does them.

Tools are converted to OpenAI tool definitions (``convert_to_openai_tool``) and bound as call
arguments, so they travel as the request's ``tools`` / ``tool_choice`` through the pipeline to the
backend; whether the backend can honour them is its ``Capabilities`` (a 400 naming the field when
not). Structured output is one of three methods: ``json_schema`` (``response_format`` with the
schema: constrained decoding on the embedded model, structured outputs on vLLM), ``function_calling``
(one forced tool call) or ``json_mode`` (``response_format: json_object``, schema in the prompt's
hands).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

from tokenlean.errors import BadRequestError

__all__ = ["StructuredMethod", "openai_tool_choice", "openai_tools", "structured_runnable"]

StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]
ToolLike = dict[str, Any] | type | Callable[..., Any] | BaseTool


def openai_tools(tools: Sequence[ToolLike], *, strict: bool | None = None) -> list[dict[str, Any]]:
    """Each tool (pydantic model, function, ``BaseTool``, dict) as an OpenAI tool definition."""
    return [convert_to_openai_tool(tool, strict=strict) for tool in tools]


def openai_tool_choice(choice: Any, tools: Sequence[Mapping[str, Any]]) -> str | dict[str, Any] | None:
    """LangChain's ``tool_choice`` spellings in OpenAI's: ``"any"``/``True`` -> required or the one tool."""
    names = [tool["function"]["name"] for tool in tools]
    if choice is None or choice is False:
        return None
    if choice == "any" or choice is True:
        return _named(names[0]) if choice is True and len(names) == 1 else "required"
    if choice in ("auto", "none", "required"):
        return str(choice)
    if isinstance(choice, str):
        if choice not in names:
            raise BadRequestError(f"tool_choice names {choice!r}, not one of the tools", param="tool_choice")
        return _named(choice)
    if isinstance(choice, Mapping):
        return dict(choice)
    raise BadRequestError(f"tool_choice: unsupported value {choice!r}", param="tool_choice")


def _named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def structured_runnable(
    model: Any,
    schema: Mapping[str, Any] | type,
    *,
    method: StructuredMethod,
    include_raw: bool,
    strict: bool | None,
) -> Runnable[LanguageModelInput, Any]:
    """``model`` bound to produce ``schema``'s shape, then parsed (``include_raw``: raw, parsed, error)."""
    pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
    if method == "function_calling":
        tool = convert_to_openai_tool(schema, strict=strict)
        name = tool["function"]["name"]
        bound = model.bind_tools([schema], tool_choice=name, strict=strict, **_tracing(schema, method))
        parser: Runnable[Any, Any] = (
            PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            if pydantic
            else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        )
    else:
        response_format: dict[str, Any] = {"type": "json_object"}
        if method == "json_schema":
            json_schema = convert_to_json_schema(dict(schema) if isinstance(schema, Mapping) else schema)
            spec: dict[str, Any] = {"name": json_schema.get("title") or "output", "schema": json_schema}
            if strict is not None:
                spec["strict"] = strict
            response_format = {"type": "json_schema", "json_schema": spec}
        bound = model.bind(response_format=response_format, **_tracing(schema, method))
        parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()  # type: ignore[arg-type]
    if not include_raw:
        return bound | parser  # type: ignore[no-any-return]
    parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    failed = RunnablePassthrough.assign(parsed=lambda _: None)
    with_fallback = parsed.with_fallbacks([failed], exception_key="parsing_error")
    return RunnableMap(raw=bound) | with_fallback


def _tracing(schema: Mapping[str, Any] | type, method: str) -> dict[str, Any]:
    """The ``ls_structured_output_format`` LangChain's tracing reads (not sent to the backend)."""
    try:
        formatted = convert_to_openai_tool(schema)
    except Exception:  # noqa: BLE001 - tracing metadata only
        return {}
    return {"ls_structured_output_format": {"kwargs": {"method": method}, "schema": formatted}}
