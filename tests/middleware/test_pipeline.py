"""Pipeline semantics with a scripted fake backend: order, policy, events, streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import BackendError, BadRequestError, ConfigError, StageError
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Chunk, Event, Message, Request, Response


def _request(text: str = "hello world", **kw: object) -> Request:
    return Request(messages=(Message("user", text),), model="fake", **kw)  # type: ignore[arg-type]


class Tag:
    """Appends its tag to the user turn on the way in and to the event list on the way out."""

    name: ClassVar[str] = "tag"

    def __init__(self, tag: str, log: list[str]) -> None:
        self.tag, self.log = tag, log
        self.name = tag  # type: ignore[misc]

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        self.log.append(f"in:{self.tag}")
        inner = request.replace(messages=[Message("user", request.last_user_text + " " + self.tag)])
        response = await call_next(inner)
        self.log.append(f"out:{self.tag}")
        return response.with_event(Event(self.tag, "tagged", data={"tokens_saved": 1}))


class Broken:
    name: ClassVar[str] = "broken"

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        raise RuntimeError("stage bug")


class RejectsInput:
    name: ClassVar[str] = "strict"

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        raise BadRequestError("unknown pool 'x'", param="tokenlean.strict.pool")


class PassThrough:
    name: ClassVar[str] = "pass"

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        return await call_next(request)


class Upper:
    """Needs the text: reads the stream and returns it upper-cased."""

    name: ClassVar[str] = "upper"

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        response = await (await call_next(request)).aread()
        return response.replace(choices=tuple(c.__class__(c.index, c.text.upper()) for c in response.choices))


async def test_stages_run_outermost_first_and_events_are_recorded() -> None:
    log: list[str] = []
    backend = FakeBackend()
    pipeline = Pipeline(backend, [Tag("a", log), Tag("b", log)])
    response = await pipeline(_request())
    assert log == ["in:a", "in:b", "out:b", "out:a"]
    assert backend.requests[0].last_user_text == "hello world a b"
    assert response.text == "hello world a b"
    actions = [(e.stage, e.action) for e in response.events]
    assert actions == [("b", "tagged"), ("b", "timing"), ("a", "tagged"), ("a", "timing")]


async def test_failing_stage_is_bypassed_by_default_and_the_answer_still_arrives() -> None:
    backend = FakeBackend()
    response = await Pipeline(backend, [Broken()])(_request())
    assert response.text == "hello world"
    bypass = [e for e in response.events if e.action == "bypassed"]
    assert bypass and "stage bug" in bypass[0].data["error"]
    assert len(backend.requests) == 1


async def test_raise_policy_propagates_the_stage_error_typed() -> None:
    with pytest.raises(StageError, match="stage bug") as info:
        await Pipeline(FakeBackend(), [Broken()], policies={"broken": "raise"})(_request())
    assert info.value.stage == "broken" and isinstance(info.value.__cause__, RuntimeError)


async def test_bad_request_from_a_stage_is_never_bypassed() -> None:
    backend = FakeBackend()
    with pytest.raises(BadRequestError, match="unknown pool"):
        await Pipeline(backend, [RejectsInput()])(_request())
    assert backend.requests == []


async def test_backend_failure_is_not_retried_through_a_bypass() -> None:
    calls = 0

    def failing(request: Request) -> str:
        nonlocal calls
        calls += 1
        raise BackendError("upstream down")

    with pytest.raises(BackendError):
        await Pipeline(FakeBackend(failing), [PassThrough()])(_request())
    assert calls == 1


async def test_policy_for_unknown_stage_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nope"):
        Pipeline(FakeBackend(), [PassThrough()], policies={"nope": "raise"})


async def test_streams_pass_through_unbuffered() -> None:
    produced: list[str] = []

    async def source() -> AsyncIterator[Chunk]:
        for word in ["one", " two", " three"]:
            produced.append(word)
            yield Chunk(0, word)
        yield Chunk(0, "", "stop")

    class StreamBackend(FakeBackend):
        async def complete(self, request: Request) -> Response:
            return Response(model="fake", stream=source())

    response = await Pipeline(StreamBackend(), [PassThrough(), PassThrough()])(_request(stream=True))
    assert response.is_streaming and produced == []  # nothing read before the client reads
    first = await response.stream.__anext__()  # type: ignore[union-attr]
    assert first.text == "one" and produced == ["one"]


async def test_a_stage_that_needs_the_text_reads_the_stream() -> None:
    response = await Pipeline(FakeBackend(), [Upper()])(_request("quiet words", stream=True))
    assert response.text == "QUIET WORDS"


async def test_request_is_immutable_and_replace_copies() -> None:
    request = _request()
    changed = request.replace(max_tokens=3)
    assert request.max_tokens is None and changed.max_tokens == 3
    with pytest.raises(AttributeError):
        request.max_tokens = 5  # type: ignore[misc]


async def test_an_error_from_below_keeps_its_cause_through_every_stage() -> None:
    """A backend error translating a foreign one (an httpx error, the user's own exception) reaches
    the caller with that original as ``__cause__``, however many stages it came up through."""
    original = ConnectionResetError("reset by peer")

    def failing(request: Request) -> str:
        raise BackendError("upstream failed") from original

    with pytest.raises(BackendError) as caught:
        await Pipeline(FakeBackend(failing), [PassThrough(), PassThrough()])(_request())
    assert caught.value.__cause__ is original


class Loading:
    """A stage with a ``warm_up``: records it, or fails it when told to."""

    def __init__(self, name: str, log: list[str], *, fails: bool = False) -> None:
        self.name, self.log, self.fails = name, log, fails

    async def warm_up(self) -> None:
        if self.fails:
            raise RuntimeError(f"{self.name} cannot load")
        self.log.append(f"warm:{self.name}")

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        return await call_next(request)


async def test_warm_up_reaches_every_stage_that_has_one_in_order() -> None:
    log: list[str] = []
    stages = [Loading("a", log), Tag("plain", log), Loading("b", log)]
    await Pipeline(FakeBackend(), stages).warm_up()  # type: ignore[list-item]
    assert log == ["warm:a", "warm:b"]


async def test_a_stage_that_cannot_warm_up_follows_its_policy(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    stages = [Loading("a", log, fails=True), Loading("b", log)]
    await Pipeline(FakeBackend(), stages).warm_up()  # type: ignore[list-item]  # bypass: logged, the rest warm
    assert log == ["warm:b"] and "stage a did not warm up" in caplog.text
    with pytest.raises(RuntimeError, match="a cannot load"):
        await Pipeline(FakeBackend(), stages, policies={"a": "raise"}).warm_up()  # type: ignore[list-item]
