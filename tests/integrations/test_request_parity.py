"""The proxy, TokenleanChatModel and @optimize validate a request the same way (issue 15).

Unit tests of pure request logic: ``FakeBackend`` (and a recording subclass that returns logprobs)
behind each front-end; the same bad value gets the same error, naming the same field.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage

from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import BadRequestError, ConfigError, UnknownModelError
from tokenlean.integrations import optimize
from tokenlean.integrations.langchain import TokenleanChatModel
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.types import Choice, Request, Response

HI = [{"role": "user", "content": "hi"}]


class _WithLogprobs(FakeBackend):
    """Answers ``n`` choices, each with one logprob entry when asked (as LocalBackend does)."""

    async def complete(self, request: Request) -> Response:
        response = await super().complete(request)
        if not request.logprobs:
            return response
        entry = {"token": "hi", "logprob": -0.1, "top_logprobs": [{"token": "hi", "logprob": -0.1}]}
        choices = tuple(Choice(c.index, c.text, c.finish_reason, (entry,)) for c in response.choices)
        return response.replace(choices=choices)


async def _proxy_error(body: dict[str, Any]) -> tuple[int, str | None]:
    from tokenlean.proxy.app import create_app

    app = create_app(Pipeline(FakeBackend()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        answer = await http.post("/v1/chat/completions", json={"model": "fake", "messages": HI, **body})
    return answer.status_code, answer.json()["error"]["param"]


@pytest.mark.parametrize(
    ("field", "value"), [("temperature", -1), ("max_tokens", 0), ("top_p", 0), ("n", 0), ("seed", -1)]
)
async def test_the_same_bad_value_is_the_same_error_everywhere(field: str, value: Any) -> None:
    assert await _proxy_error({field: value}) == (400, field)
    with pytest.raises(BadRequestError) as at_construction:
        TokenleanChatModel(pipeline=Pipeline(FakeBackend()), **{field: value})
    with pytest.raises(BadRequestError) as at_call:
        await TokenleanChatModel(pipeline=Pipeline(FakeBackend())).ainvoke("hi", **{field: value})

    decorated_field = field if field != "n" else "max_tokens"  # the function declares its fields
    decorated_value = value if field != "n" else 0

    @optimize(model="fake")
    def declared(messages: list[dict[str, str]], max_tokens: int | None = None, temperature: float | None = None,
                 top_p: float | None = None, seed: int | None = None) -> str:  # fmt: skip
        return "unused"

    with pytest.raises(BadRequestError) as decorated:
        declared(HI, **{decorated_field: decorated_value})
    assert at_construction.value.param == at_call.value.param == field
    assert decorated.value.param == decorated_field


async def test_an_unknown_model_is_refused_by_the_proxy_and_the_langchain_model() -> None:
    from tokenlean.proxy.app import create_app

    app = create_app(Pipeline(FakeBackend()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        answer = await http.post("/v1/chat/completions", json={"model": "other-model", "messages": HI})
    assert answer.status_code == 404 and answer.json()["error"]["param"] == "model"
    with pytest.raises(UnknownModelError):
        TokenleanChatModel(pipeline=Pipeline(FakeBackend()), model="other-model")
    with pytest.raises(UnknownModelError):
        await TokenleanChatModel(pipeline=Pipeline(FakeBackend())).ainvoke("hi", model="other-model")


def test_unknown_constructor_arguments_are_refused_by_name() -> None:
    with pytest.raises(ConfigError) as error:
        TokenleanChatModel(pipeline=Pipeline(FakeBackend()), bogus_param=1)
    assert error.value.param == "bogus_param"


async def test_n_logprobs_stop_and_seed_reach_the_backend_and_come_back() -> None:
    backend = _WithLogprobs()
    model = TokenleanChatModel(pipeline=Pipeline(backend), n=2, logprobs=True, top_logprobs=1, seed=7)
    result = await model.agenerate([[HumanMessage("hi there")]], stop=["END"])
    generations = result.generations[0]
    assert len(generations) == 2 and [g.text for g in generations] == ["hi there", "hi there"]
    request = backend.requests[-1]
    assert (request.n, request.logprobs, request.top_logprobs, request.seed, request.stop) == (
        2, True, 1, 7, ("END",),
    )  # fmt: skip
    logprobs = generations[0].message.response_metadata["logprobs"]["content"]
    assert logprobs[0]["token"] == "hi" and logprobs[0]["top_logprobs"][0]["logprob"] == -0.1
