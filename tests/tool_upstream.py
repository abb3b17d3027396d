"""A scripted OpenAI-compatible upstream that answers with real tool calls and JSON, on a real socket.

For what a 135M model cannot be asked to do reliably (pick the right tool, fill its arguments
from the question), this server answers as a capable model would, by rule: a request with
``tools`` gets a call of the named tool (``tool_choice``), or of the tool whose name the last user
turn mentions, or of the first tool, with arguments built from the tool's JSON schema (integers
take the first number in the question); ``response_format`` gets a JSON object with the schema's
(or the question's quoted) keys; after a tool result it answers in text. It streams tool calls as
OpenAI does (id and name first, arguments in fragments), returns ``n`` choices and logprobs, adds
vendor fields (``stop_reason``, ``system_fingerprint``, ``prompt_logprobs`` when asked) so that
pass-through is visible, and records every body it received (``calls``).

It tests tokenlean's plumbing (every field in, every field out), never a model's quality.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "scripted-model"


class ToolUpstream:
    """The scripted upstream app and the request bodies it received."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )

    async def _models(self, request: HTTPRequest) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def _chat(self, request: HTTPRequest) -> Response:
        body = await request.json()
        self.calls.append(body)
        choices = [self._choice(body, i) for i in range(int(body.get("n") or 1))]
        usage = {"prompt_tokens": _words(json.dumps(body["messages"])), "completion_tokens": 0}
        usage["completion_tokens"] = sum(_words(c["message"]["content"] or "") + 1 for c in choices)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            return StreamingResponse(_stream(body, choices, usage), media_type="text/event-stream")
        answer: dict[str, Any] = {"id": "chatcmpl-scripted", "object": "chat.completion", "created": 1,
                                  "model": MODEL, "choices": choices, "usage": usage,
                                  "system_fingerprint": "fp_scripted"}  # fmt: skip
        if body.get("prompt_logprobs") is not None:
            answer["prompt_logprobs"] = [None, {"7": {"logprob": -1.5, "rank": 1, "decoded_token": "x"}}]
        return JSONResponse(answer)

    def _choice(self, body: dict[str, Any], index: int) -> dict[str, Any]:
        tool = _chosen_tool(body)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if tool is not None:
            arguments = json.dumps(_value(tool.get("parameters") or {}, _question(body)), ensure_ascii=False)
            call = {"id": f"call_{next(self._ids)}", "type": "function",
                    "function": {"name": tool["name"], "arguments": arguments}}  # fmt: skip
            message["tool_calls"] = [call]
            finish = "tool_calls"
        else:
            message["content"] = _text(body)
            finish = "stop"
            for stop in body.get("stop") or []:
                if isinstance(stop, str) and stop in message["content"]:
                    message["content"], finish = message["content"].split(stop)[0], "stop"
        choice = {"index": index, "message": message, "finish_reason": finish, "stop_reason": "scripted"}
        if body.get("logprobs"):
            words = (message["content"] or "").split()
            choice["logprobs"] = {"content": [{"token": w, "logprob": -0.5, "bytes": None,
                                               "top_logprobs": []} for w in words]}  # fmt: skip
        return choice


def _question(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _chosen_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        return next((t for t in tools if t["name"] == choice["function"]["name"]), None)
    last = (body.get("messages") or [{}])[-1]
    if choice != "required" and last.get("role") == "tool":
        return None  # a tool answered: now the model answers in text
    question = _question(body)
    return next((t for t in tools if t["name"] in question), tools[0])


def _text(body: dict[str, Any]) -> str:
    response_format = body.get("response_format") or {}
    question = _question(body)
    if response_format.get("type") == "json_schema":
        return json.dumps(
            _value(response_format["json_schema"].get("schema") or {}, question), ensure_ascii=False
        )
    if response_format.get("type") == "json_object":
        keys = re.findall(r"'(\w+)'", question) or ["answer"]
        return json.dumps({key: f"scripted {key}" for key in keys})
    last = (body.get("messages") or [{}])[-1]
    if last.get("role") == "tool":
        return f"The tool answered {last.get('content')!s}."
    return "Hello! I am a scripted model. " + " ".join(question.split()[:12])


def _value(schema: dict[str, Any], question: str, defs: dict[str, Any] | None = None) -> Any:
    """A value of JSON ``schema`` (integers from the question's first number)."""
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return _value(defs[schema["$ref"].split("/")[-1]], question, defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _value(options[0], question, defs)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        return {name: _value(sub, question, defs) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_value(schema.get("items") or {}, question, defs)]
    if kind in ("integer", "number"):
        number = re.search(r"-?\d+", question)
        return int(number.group()) if number else 1
    if kind == "boolean":
        return True
    quoted = re.search(r"'([^']+)'", question)  # a name the question spells out, unicode and all
    return quoted.group(1) if quoted else "scripted"


async def _stream(
    body: dict[str, Any], choices: list[dict[str, Any]], usage: dict[str, Any]
) -> AsyncIterator[str]:
    def sse(choice: dict[str, Any] | None, **top: Any) -> str:
        data = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
                "choices": [choice] if choice else [], **top}  # fmt: skip
        return f"data: {json.dumps(data)}\n\n"

    for choice in choices:
        i, message = choice["index"], choice["message"]
        yield sse({"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
        for word in re.findall(r"\s*\S+", message["content"] or ""):
            yield sse({"index": i, "delta": {"content": word}, "finish_reason": None})
        for position, call in enumerate(message.get("tool_calls") or []):
            head = {"index": position, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
            yield sse({"index": i, "delta": {"tool_calls": [head]}, "finish_reason": None})
            arguments = call["function"]["arguments"]
            for start in range(0, len(arguments), 7):  # arguments arrive in fragments
                piece = {"index": position, "function": {"arguments": arguments[start : start + 7]}}
                yield sse({"index": i, "delta": {"tool_calls": [piece]}, "finish_reason": None})
        yield sse(
            {"index": i, "delta": {}, "finish_reason": choice["finish_reason"], "stop_reason": "scripted"}
        )
    if (body.get("stream_options") or {}).get("include_usage"):
        yield sse(None, usage=usage)
    yield "data: [DONE]\n\n"


def _words(text: str) -> int:
    return max(1, len(text.split()))


class ToolUpstreamServer:
    """``ToolUpstream`` under uvicorn on 127.0.0.1 in a daemon thread (a free port)."""

    def __init__(self) -> None:
        self.upstream = ToolUpstream()
        config = uvicorn.Config(
            self.upstream.app, host="127.0.0.1", port=0, log_level="error", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("scripted tool upstream did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        """The ``/v1`` base URL."""
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
