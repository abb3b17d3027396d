"""``@optimize`` on sync and async functions: signature kept, stages around, options, typed errors."""

from __future__ import annotations

import asyncio
import inspect
import threading
import typing
from typing import Any, ClassVar

import openai.types.chat as openai_chat
import pytest

from tokenlean.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadRequestError,
    ConfigError,
    UpstreamStatusError,
)
from tokenlean.integrations import FunctionBackend, call_options, optimize
from tokenlean.middleware.registry import register_stage
from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Choice, Request, Response


def chat_body(text: str, prompt_tokens: int = 3) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1},
    }


def test_sync_function_keeps_its_signature_and_runs_inside_the_stages(stage_types) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, float]] = []

    def ask(prompt: str, temperature: float = 0.0) -> str:
        """Ask the model."""
        seen.append((prompt, temperature))
        return f"answer to {prompt}"

    wrapped = optimize(stages=[stage_types["upper"](), stage_types["tag"]()])(ask)
    assert wrapped is not ask and wrapped.__wrapped__ is ask  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(ask)
    assert (
        typing.get_type_hints(wrapped)
        == typing.get_type_hints(ask)
        == {"prompt": str, "temperature": float, "return": str}
    )
    assert (wrapped.__name__, wrapped.__doc__) == ("ask", "Ask the model.")
    assert not inspect.iscoroutinefunction(wrapped)

    assert wrapped("hello", temperature=0.5) == "answer to HELLO"
    assert seen == [("HELLO", 0.5)]
    assert ask("plain") == "answer to plain" and seen[-1] == ("plain", 0.0)  # the original is untouched


async def test_async_function_with_messages_returns_an_openai_body(stage_types) -> None:  # type: ignore[no-untyped-def]
    received: list[list[dict[str, Any]]] = []

    @optimize(stages=[stage_types["upper"]()])
    async def chat(messages: list[dict[str, Any]], max_tokens: int = 16) -> dict[str, Any]:
        received.append(messages)
        await asyncio.sleep(0)
        return chat_body(f"{len(messages)} messages, max {max_tokens}")

    assert inspect.iscoroutinefunction(chat)
    body = await chat([{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}])
    assert received == [[{"role": "system", "content": "sys"}, {"role": "user", "content": "HI"}]]
    assert body["choices"][0]["message"]["content"] == "2 messages, max 16"
    assert body["object"] == "chat.completion" and body["usage"]["prompt_tokens"] == 3
    assert [e["stage"] for e in body["tokenlean"]["events"]][:1] == ["upper"]


def test_pydantic_return_type_and_cache_hits_keep_the_declared_shape() -> None:
    calls: list[str] = []

    class AnswerOnce:  # answers the second identical request itself, like a response cache
        name: ClassVar[str] = "once"

        def __init__(self) -> None:
            self.stored: Response | None = None

        async def __call__(self, request: Request, call_next: Handler, /) -> Response:
            if self.stored is not None:
                return self.stored
            self.stored = await call_next(request)
            return self.stored

    @optimize(stages=[AnswerOnce()])
    def ask(prompt: str) -> openai_chat.ChatCompletion:
        calls.append(prompt)
        return openai_chat.ChatCompletion.model_validate(chat_body("cached text"))

    first, second = ask("q"), ask("q")
    assert (
        isinstance(second, openai_chat.ChatCompletion) and second.choices[0].message.content == "cached text"
    )
    assert calls == ["q"] and first.choices[0].message.content == "cached text"


def test_unannotated_function_mirrors_what_it_returned() -> None:
    @optimize()
    def as_dict(prompt):  # type: ignore[no-untyped-def]
        return chat_body("d")

    @optimize()
    def as_text(prompt):  # type: ignore[no-untyped-def]
        return "t"

    assert as_dict("x")["choices"][0]["message"]["content"] == "d"
    assert as_text("x") == "t"


def test_request_fields_are_seen_by_stages_and_passthrough_arguments_travel_untouched() -> None:
    client = object()
    received: dict[str, Any] = {}

    class HalveMaxTokens:
        name: ClassVar[str] = "halve"

        async def __call__(self, request: Request, call_next: Handler, /) -> Response:
            received["extra"] = dict(request.extra)
            return await call_next(request.replace(max_tokens=(request.max_tokens or 0) // 2))

    @optimize(stages=[HalveMaxTokens()])
    def ask(prompt: str, client: object, max_tokens: int = 10, stop: list[str] | None = None) -> str:
        received.update(client=client, max_tokens=max_tokens, stop=stop)
        return "ok"

    ask("q", client, stop=["\n"])
    assert received["client"] is client and received["max_tokens"] == 5 and received["stop"] == ["\n"]
    assert "object" in received["extra"]["function_arguments"]  # a cache keys on the other arguments
    with pytest.raises(TypeError):
        ask()  # type: ignore[call-arg]


def test_methods_take_the_prompt_after_self_and_leave_self_out_of_the_key() -> None:
    keys: list[Any] = []

    class KeyRecorder:
        name: ClassVar[str] = "keys"

        async def __call__(self, request: Request, call_next: Handler, /) -> Response:
            keys.append(dict(request.extra))
            return await call_next(request)

    class Assistant:
        def __init__(self, tone: str) -> None:
            self.tone = tone

        @optimize(stages=[KeyRecorder()])
        def ask(self, prompt: str, style: str = "plain") -> str:
            return f"{self.tone}/{style}: {prompt}"

    assert Assistant("warm").ask("hi") == "warm/plain: hi"
    assert Assistant("cold").ask("hi", style="bold") == "cold/bold: hi"
    assert keys == [
        {"function_arguments": "[('style', 'plain')]"},
        {"function_arguments": "[('style', 'bold')]"},
    ]


def test_call_options_reach_stages_nest_and_stay_per_thread(stage_types) -> None:  # type: ignore[no-untyped-def]
    @optimize(stages=[stage_types["tag"]()])
    def ask(prompt: str) -> str:
        return "ok"

    def options_seen(record: Any) -> Any:
        return next(e for e in record.events if e.stage == "tag").data["options"]

    with call_options(tag={"a": 1, "b": 1}) as outer:
        ask("x")
        assert options_seen(outer) == {"a": 1, "b": 1}
        with call_options({"tag": {"b": 2}}) as inner:
            ask("y")
        assert options_seen(inner) == {"a": 1, "b": 2}
        other: list[Any] = []
        thread = threading.Thread(target=lambda: other.append(_record_in_thread(ask)))
        thread.start()
        thread.join()
        assert options_seen(other[0]) == {}  # another thread does not inherit this block's options
    assert len(outer.responses) == 2
    with call_options(tag="off") as word:  # a stage may take a plain word, as SoT's "off"
        ask("w")
    assert options_seen(word) == "off" and word.response.text == "ok"
    with pytest.raises(BadRequestError) as bad, call_options(["tag"]):  # type: ignore[arg-type]
        pass
    assert bad.value.param == "tokenlean"


def _record_in_thread(ask: Any) -> Any:
    with call_options() as record:
        ask("z")
    return record


async def test_call_options_are_per_task_for_async_functions(stage_types) -> None:  # type: ignore[no-untyped-def]
    @optimize(stages=[stage_types["tag"]()])
    async def ask(prompt: str) -> str:
        await asyncio.sleep(0.01)
        return prompt

    async def one(value: int) -> Any:
        with call_options(tag={"v": value}) as record:
            await ask(str(value))
        return next(e for e in record.events if e.stage == "tag").data["options"]

    assert list(await asyncio.gather(one(1), one(2), one(3))) == [{"v": 1}, {"v": 2}, {"v": 3}]


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (ValueError("bad json"), BackendError),
        (TimeoutError("slow"), BackendTimeoutError),
        (ConnectionRefusedError("down"), BackendUnavailableError),
        (type("APIStatusError", (Exception,), {"status_code": 503})("unavailable"), UpstreamStatusError),
    ],
)
def test_function_errors_surface_as_typed_tokenlean_errors(raised: Exception, expected: type) -> None:
    @optimize()
    def ask(prompt: str) -> str:
        raise raised

    with pytest.raises(expected) as caught:
        ask("x")
    cause = caught.value.__cause__  # asyncio copies a TimeoutError crossing from the worker thread
    assert type(caught.value) is expected and type(cause) is type(raised) and cause.args == raised.args


async def test_tokenlean_errors_pass_through_unchanged() -> None:
    error = BadRequestError("prompt too long", param="prompt")

    @optimize()
    async def ask(prompt: str) -> str:
        raise error

    with pytest.raises(BadRequestError) as caught:
        await ask("x")
    assert caught.value is error


def test_spec_builds_the_stages_around_the_function(stage_types) -> None:  # type: ignore[no-untyped-def]
    register_stage("integrations-test-upper", stage_types["upper"])

    @optimize(spec={"stages": [{"type": "integrations-test-upper", "policy": "raise"}]})
    def ask(prompt: str) -> str:
        return prompt

    assert ask("abc") == "ABC"
    assert [s.name for s in ask.pipeline.stages] == ["upper"]  # type: ignore[attr-defined]
    with call_options(upper={"enabled": False}):
        assert ask("abc") == "abc"
    with pytest.raises(ConfigError):
        optimize(spec={"backend": {"type": "fake"}, "stages": []})(lambda prompt: prompt)
    with pytest.raises(ConfigError):
        optimize(stages=[stage_types["upper"]()], spec={"stages": []})
    with pytest.raises(ConfigError):
        optimize()(lambda *, prompt: prompt)


async def test_function_backend_streams_and_fans_out_n() -> None:
    counter = iter(range(100))
    backend = FunctionBackend(lambda prompt: f"{prompt}-{next(counter)}", model="f")
    response = await backend.complete(Request(prompt="p", n=3))
    assert sorted(c.text for c in response.choices) == ["p-0", "p-1", "p-2"]
    assert [c.index for c in response.choices] == [0, 1, 2]
    streamed = await (await backend.complete(Request(prompt="s", stream=True))).aread()
    assert streamed.choices == (Choice(0, "s-3", "stop"),) and streamed.model == "f"
