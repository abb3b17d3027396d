"""Reading a row's output back as an OpenAI tool call, streamed as tool-call deltas.

A row decoded under a tool-call grammar writes ``{"name": "<tool>", "arguments": {...}}`` in one
fixed layout (``grammar.JSON_OPTIONS``). That text is never sent as content. Once the name is
complete, a first delta carries the call's id, type and name; then the arguments stream as they
grow (one character held back: the final ``}`` closes the call, not the arguments). When the row
ends, the finish reason becomes ``tool_calls``. Under ``tool_choice: "auto"`` the model may answer
in text instead: the first visible character decides (a call begins with ``{``), and from then on
text streams as usual.

Output cut short by ``max_tokens`` keeps finish reason ``length``: a call whose name had been
sent keeps its partial arguments (as OpenAI does); text that never became a call is sent as text.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolCallReader", "parse_tool_call"]

_HEAD = re.compile(r'\s*\{"name": "((?:[^"\\]|\\.)*)", "arguments": ')


def _call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


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
        "id": _call_id(),
        "type": "function",
        "function": {"name": value["name"], "arguments": json.dumps(arguments, ensure_ascii=False)},
    }


Deltas = tuple[dict[str, Any], ...]


@dataclass(slots=True)
class ToolCallReader:
    """One row's output under tools: turns a call's text into deltas, lets plain text through."""

    names: tuple[str, ...]
    auto: bool = False
    mode: str = "undecided"  # "undecided" | "call" | "text"
    held: str = ""
    arguments_at: int = -1  # where the arguments begin in ``held`` once the head was sent
    sent: int = 0  # characters of the arguments already sent

    def feed(self, text: str) -> tuple[str, Deltas]:
        """The content that may be sent now, and the tool-call deltas."""
        if self.mode == "text":
            return text, ()
        self.held += text
        if self.mode == "undecided" and self.held.lstrip():
            self.mode = "text" if self.auto and not self.held.lstrip().startswith("{") else "call"
            if self.mode == "text":
                released, self.held = self.held, ""
                return released, ()
        return "", self._call_deltas(final=False) if self.mode == "call" else ()

    def _call_deltas(self, final: bool) -> Deltas:
        deltas: list[dict[str, Any]] = []
        if self.arguments_at < 0:
            head = _HEAD.match(self.held)
            if head is None:
                return ()
            self.arguments_at = head.end()
            name = json.loads(f'"{head.group(1)}"')
            deltas.append(
                {
                    "index": 0,
                    "id": _call_id(),
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
            )
        arguments = self.held[self.arguments_at :]
        end = len(arguments) if final else len(arguments) - 1  # the last "}" may close the call
        if end > self.sent:
            if deltas:  # one entry per call in a chunk: the head carries the first arguments
                deltas[0]["function"]["arguments"] = arguments[self.sent : end]
            else:
                deltas.append({"index": 0, "function": {"arguments": arguments[self.sent : end]}})
            self.sent = end
        return tuple(deltas)

    def finish(self, finish_reason: str | None) -> tuple[str, Deltas, str | None]:
        """Content still to send, the last deltas, and the finish reason, once the row has ended."""
        if self.mode == "call" and finish_reason == "stop" and parse_tool_call(self.held, self.names):
            self.held = self.held.rstrip()[:-1]  # the call's closing brace: the rest are its arguments
            return "", self._call_deltas(final=True), "tool_calls"
        if self.arguments_at >= 0:  # cut short after the name was sent: the partial arguments follow
            return "", self._call_deltas(final=True), finish_reason
        held, self.held = self.held, ""
        return held, (), finish_reason
