"""What a request with ``response_format``, ``tools`` or content parts asks of the embedded model.

``structured_plan`` reads the request once: which grammar the rows decode under (JSON mode, a
JSON schema, a tool call, or a tool call *or* text for ``tool_choice: "auto"``), whether the
output is to be read back as a tool call, and the system text that tells the model about it.
SmolLM2's chat template knows no tools, so the tool definitions reach the model as a short
system text (``chat_messages``), and earlier tool calls and tool results as plain turns.

What the model cannot read (images, audio, files) is refused here with a 400 naming the part,
never dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenlean.backends.local.grammar import JSON_OPTIONS, json_grammar, schema_text
from tokenlean.backends.local.tool_calls import ToolCallReader
from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Message, Request

__all__ = ["StructuredPlan", "chat_messages", "refuse_unreadable_parts", "structured_plan"]

_ANY_OBJECT: dict[str, Any] = {"type": "object"}
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}  # closed: the call's arguments are {}


@dataclass(frozen=True, slots=True)
class StructuredPlan:
    """How one request's rows decode: ``grammar`` (None: free text), tool names to parse calls of."""

    grammar: str | None = None
    tool_names: tuple[str, ...] = ()  # non-empty: the output is read back as a tool call
    tool_auto: bool = False  # the model may answer in text instead of calling
    system_text: str = ""
    param: str = "response_format"  # the field a grammar error is blamed on

    @property
    def constrained(self) -> bool:
        """Rows decode under a grammar."""
        return self.grammar is not None

    def readers(self, rows: int) -> list[ToolCallReader] | None:
        """One tool-call reader per row when the output is to be read back as a call."""
        return (
            [ToolCallReader(self.tool_names, self.tool_auto) for _ in range(rows)]
            if self.tool_names
            else None
        )


def refuse_unreadable_parts(request: Request) -> None:
    """Raise ``BadRequestError`` for the first content part that is not text."""
    for i, message in enumerate(request.messages):
        for j, part in enumerate(message.parts or ()):
            kind = part.get("type")
            if kind != "text":
                raise BadRequestError(
                    f"messages[{i}].content[{j}]: the embedded model reads text only; "
                    f"a {kind!r} part is not supported",
                    param=f"messages.{i}.content",
                )


def structured_plan(request: Request) -> StructuredPlan:
    """The grammar and prompt additions for ``request`` (a plain request gets the empty plan)."""
    choice = request.tool_choice if request.tool_choice is not None else ("auto" if request.tools else "none")
    answer = _answer_schema(request.response_format)
    if not request.tools or choice == "none":
        if answer is None:
            return StructuredPlan()
        schema, note = answer
        return StructuredPlan(
            json_grammar(schema), system_text=note, param="response_format.json_schema.schema"
        )
    tools = _tools_by_name(request.tools)
    names = tuple(_called_names(choice, tools))
    call = _call_schema({name: tools[name] for name in names})
    listing = _tool_listing(tools, choice, names)
    if choice != "auto":
        return StructuredPlan(json_grammar(call), names, system_text=listing, param="tools")
    alternative = "TEXT" if answer is None else "answer"
    lark = f"start: call | {alternative}\ncall: %json {json.dumps({**call, 'x-guidance': JSON_OPTIONS})}\n"
    if answer is None:
        lark += "TEXT: /[^{\\s][\\s\\S]*/\n"  # text that does not begin like a call
    else:
        lark += f"answer: %json {json.dumps({**answer[0], 'x-guidance': JSON_OPTIONS})}\n"
        listing += "\n" + answer[1]
    return StructuredPlan(_lark_grammar(lark), names, tool_auto=True, system_text=listing, param="tools")


def _lark_grammar(lark: str) -> str:
    import llguidance

    return str(llguidance.LLMatcher.grammar_from_lark(lark))


def _answer_schema(response_format: Mapping[str, Any] | None) -> tuple[dict[str, Any], str] | None:
    """The schema a ``response_format`` asks for, and the system text that says so."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return dict(_ANY_OBJECT), "Answer with a single JSON object."
    if kind != "json_schema":
        raise BadRequestError(f"response_format.type: unknown type {kind!r}", param="response_format.type")
    spec = (response_format or {}).get("json_schema")
    if not isinstance(spec, Mapping):
        raise BadRequestError("response_format.json_schema: an object is required", param="response_format")
    schema = spec.get("schema")
    if schema is None:
        return dict(_ANY_OBJECT), "Answer with a single JSON object."
    if not isinstance(schema, Mapping):
        raise BadRequestError(
            "response_format.json_schema.schema: must be an object",
            param="response_format.json_schema.schema",
        )
    return dict(
        schema
    ), f"Answer with a single JSON object that follows this JSON schema: {schema_text(schema)}"


def _tools_by_name(tools: tuple[Mapping[str, Any], ...]) -> dict[str, Mapping[str, Any]]:
    by_name: dict[str, Mapping[str, Any]] = {}
    for i, tool in enumerate(tools):
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance(function, Mapping) or not function.get("name"):
            raise BadRequestError(f"tools[{i}]: a function tool with a name is required", param=f"tools.{i}")
        by_name[str(function["name"])] = function
    return by_name


def _called_names(choice: str | Mapping[str, Any], tools: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The tools the model may call under ``tool_choice``."""
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
        if name not in tools:
            raise BadRequestError(f"tool_choice: {name!r} is not one of tools", param="tool_choice")
        return [str(name)]
    if choice not in ("auto", "required"):
        raise BadRequestError(f"tool_choice: unknown value {choice!r}", param="tool_choice")
    return list(tools)


def _call_schema(tools: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """JSON schema of one call: ``{"name": <a tool>, "arguments": <that tool's parameters>}``."""
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": name},
                "arguments": dict(function.get("parameters") or _NO_PARAMETERS),
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name, function in tools.items()
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def _tool_listing(tools: Mapping[str, Mapping[str, Any]], choice: Any, names: tuple[str, ...]) -> str:
    """The system text that shows the model its tools and how to call one."""
    described = [
        {"name": name, "description": f.get("description", ""), "parameters": f.get("parameters") or {}}
        for name, f in tools.items()
    ]
    how = (
        'To call a tool, answer with only a JSON object: {"name": <tool name>, "arguments": <its arguments>}.'
    )
    when = {
        "auto": "Call a tool when it helps; otherwise answer in plain text.",
        "required": "Call one of the tools now.",
    }.get(choice if isinstance(choice, str) else "", f"Call the tool {names[0]} now.")
    return f"You can call these tools: {json.dumps(described, ensure_ascii=False)}\n{how}\n{when}"


def chat_messages(request: Request, plan: StructuredPlan) -> list[dict[str, str]]:
    """The turns given to the chat template: tool calls and the plan's system text as plain text."""
    turns = [{"role": m.role, "content": _turn_text(m)} for m in request.messages]
    if plan.system_text:
        if turns and turns[0]["role"] == "system":
            turns[0] = {"role": "system", "content": f"{turns[0]['content']}\n\n{plan.system_text}"}
        else:
            turns.insert(0, {"role": "system", "content": plan.system_text})
    return turns


def _turn_text(message: Message) -> str:
    """An assistant turn's calls written as the model is asked to write them."""
    calls = []
    for call in message.tool_calls:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except json.JSONDecodeError:
            arguments = function.get("arguments")
        calls.append(json.dumps({"name": function.get("name"), "arguments": arguments}, ensure_ascii=False))
    return "\n".join([message.content, *calls]) if message.content else "\n".join(calls)
