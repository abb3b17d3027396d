"""x-tokenlean-* headers through the proxy: converted by the option's declared type, errors naming the path."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest
from pydantic import Field

from tokenlean.backends.fake import FakeBackend
from tokenlean.middleware.options import StageOptions, parse_call_options
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Choice, Request, Response
from tokenlean.proxy.app import create_app

CHAT = "/v1/chat/completions"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


class RepeatOptions(StageOptions):
    times: int = Field(default=1, ge=1, le=5)
    shout: bool = False


class Repeat:
    """A stage of this test only: repeats the answer ``times`` times, upper-cased if ``shout``."""

    name: ClassVar[str] = "repeat"
    options_model: ClassVar[type[RepeatOptions]] = RepeatOptions

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        options = parse_call_options(RepeatOptions, request.option(self.name), stage=self.name)
        response = await call_next(request)
        text = " ".join([response.text] * options.times)
        return response.replace(choices=(Choice(text=text.upper() if options.shout else text),))


@pytest.fixture
async def client() -> httpx.AsyncClient:  # type: ignore[misc]
    backend = FakeBackend(lambda request: "ok")
    app = create_app(Pipeline(backend, [Repeat()]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        http.backend = backend  # type: ignore[attr-defined]
        yield http


async def test_a_stage_reads_header_options_of_its_declared_types(client: httpx.AsyncClient) -> None:
    headers = {"x-tokenlean-repeat-times": "3", "x-tokenlean-repeat-shout": "true"}
    answer = await client.post(CHAT, json=BODY, headers=headers)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "OK OK OK"
    # the body wins over a header, field by field
    body = {**BODY, "tokenlean": {"repeat": {"times": 2}}}
    answer = await client.post(CHAT, json=body, headers=headers)
    assert answer.json()["choices"][0]["message"]["content"] == "OK OK"


async def test_cache_ttl_header_of_1_is_the_number_1(client: httpx.AsyncClient) -> None:
    """The bug this fixes: ``x-tokenlean-cache-ttl: 1`` was guessed to be ``True`` and refused."""
    headers = {
        "x-tokenlean-cache-ttl": "1",
        "x-tokenlean-cache-no-store": "1",
        "x-tokenlean-draft-mode": "off",
    }
    assert (await client.post(CHAT, json=BODY, headers=headers)).status_code == 200
    seen = client.backend.requests[-1]  # type: ignore[attr-defined]
    assert seen.options["cache"] == {"ttl": 1.0, "no_store": True}
    assert type(seen.options["cache"]["ttl"]) is float
    assert seen.options["draft"] == {"mode": "off"}  # no backend here reads it: kept as sent


@pytest.mark.parametrize(
    ("headers", "tokenlean", "param"),
    [
        ({"x-tokenlean-repeat-times": "many"}, None, "tokenlean.repeat.times"),
        ({"x-tokenlean-repeat-times": "9"}, None, "tokenlean.repeat.times"),
        ({"x-tokenlean-repeat-louder": "1"}, None, "tokenlean.repeat.louder"),
        ({"x-tokenlean-cache-ttl": "soon"}, None, "tokenlean.cache.ttl"),
        ({"x-tokenlean-compress-rate": "2"}, None, "tokenlean.compress.rate"),
        ({}, {"repeat": {"times": "3"}}, "tokenlean.repeat.times"),  # a body value is JSON: "3" is a string
        ({}, {"repeat": {"shout": 1}}, "tokenlean.repeat.shout"),
        ({}, {"cache": {"ttl": True}}, "tokenlean.cache.ttl"),
    ],
)
async def test_bad_options_are_400s_naming_the_path(
    client: httpx.AsyncClient, headers: dict[str, str], tokenlean: dict[str, Any] | None, param: str
) -> None:
    body = {**BODY, **({"tokenlean": tokenlean} if tokenlean else {})}
    answer = await client.post(CHAT, json=body, headers=headers)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and param in error["message"]
