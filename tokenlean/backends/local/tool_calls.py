"""Reading a row's output back as an OpenAI tool call.

A row decoded under a tool-call grammar writes ``{"name": ..., "arguments": {...}}``. That text
is never sent as content: when the row ends it becomes one ``tool_calls`` entry (an id, the
function name, the arguments as a JSON string) and the finish reason ``tool_calls``. Under
``tool_choice: "auto"`` the model may answer in text instead; the first visible character
decides (a call begins with ``{``), and from then on text streams as usual.

Streaming sends the call as one delta when the row ends (id, name and the whole arguments string);
OpenAI's clients accept that as a complete delta sequence. Output cut short by ``max_tokens``
cannot be parsed as a call and is returned as text with finish reason ``length``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ToolCallReader", "parse_tool_call"]


def parse_tool_call(text: str, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The call in ``text`` (OpenAI's shape, with a fresh id), or None when it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, Mapping) or value.get("name") not in names:
        return None
    arguments = value.get("arguments")
    if not isinstance(arguments, Mapping):
        return None
    return {
        "id": "call_" + uuid.uuid4().hex[:24],
        "type": "function",
        "function": {"name": value["name"], "arguments": json.dumps(arguments, ensure_ascii=False)},
    }


@dataclass(slots=True)
class ToolCallReader:
    """One row's output under tools: holds back a call's text, lets plain text through."""

    names: tuple[str, ...]
    auto: bool = False
    mode: str = "undecided"  # "undecided" | "call" | "text"
    held: list[str] = field(default_factory=list)

    def feed(self, text: str) -> str:
        """The part of ``text`` that may be sent as content now."""
        if self.mode == "text":
            return text
        self.held.append(text)
        if self.mode == "undecided":
            seen = "".join(self.held).lstrip()
            if seen:
                self.mode = "text" if self.auto and not seen.startswith("{") else "call"
            if self.mode == "text":
                released, self.held = "".join(self.held), []
                return released
        return ""

    def finish(self, finish_reason: str | None) -> tuple[str, tuple[dict[str, Any], ...], str | None]:
        """Content still to send, the tool calls, and the finish reason, once the row has ended."""
        held, self.held = "".join(self.held), []
        if self.mode == "text" or not held.strip():
            return held, (), finish_reason
        call = parse_tool_call(held, self.names) if finish_reason == "stop" else None
        if call is None:
            return held, (), finish_reason
        return "", ({"index": 0, **call},), "tool_calls"
