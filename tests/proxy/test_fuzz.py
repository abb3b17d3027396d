"""Hostile input: schema-driven fuzzing of the HTTP API, properties of the converters, explicit cases.

Three layers. schemathesis generates requests from the proxy's own OpenAPI document (valid ones
and deliberately invalid ones) and sends them in-process to the ASGI app: no answer may be a
5xx, none may hang, and every 4xx must be OpenAI's error body. hypothesis throws arbitrary JSON
at the request converters (wire models → ``Request`` → the upstream body, as httpx encodes it):
each input converts or raises a typed error, never anything else. The explicit cases pin the
limits by name (nesting, huge numbers, NaN, nulls, option size), which random search finds only
by luck. tests/proxy/test_bad_input.py holds the older cases (field types, body size, keys).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tokenlean.backends.fake import FakeBackend
from tokenlean.backends.openai_wire import error_from_body, request_body
from tokenlean.errors import TokenleanError, UpstreamStatusError
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.proxy.app import create_app
from tokenlean.wire import MAX_DEPTH, MAX_TOKENS, ChatCompletionRequest, CompletionRequest, to_request

CHAT = "/v1/chat/completions"
OK = [{"role": "user", "content": "hi"}]
ERROR_KEYS = {"message", "type", "param", "code"}

# --- schemathesis: the HTTP API from its OpenAPI document ---------------------------------------

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Pipeline(FakeBackend())))


@schema.parametrize()
@settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@pytest.mark.timeout(120)  # a hang fails the test instead of stalling the suite
def test_openapi_fuzz_no_5xx_no_hang_and_4xx_are_openai_errors(case: Any) -> None:
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = "fake"  # the only served model: otherwise every valid request is a 404
    started = time.monotonic()
    response = case.call()
    assert time.monotonic() - started < 10, "the proxy took over 10 s to answer"
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            negative_data_rejection,
            status_code_conformance,
            response_schema_conformance,
        ],
    )
    if 400 <= response.status_code < 500:
        assert set(response.json()["error"]) == ERROR_KEYS, response.text


# --- hypothesis: the request converters --------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
TEXT = st.text(max_size=12)
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"])}, optional={"text": TEXT})
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", "developer"])},
    optional={"content": TEXT | st.lists(PART, max_size=3) | st.none(), "name": TEXT},
)
# Valid values first, so that a mutation lands in an otherwise acceptable request and the
# converters run to the end; then up to three fields (known or not) replaced by arbitrary JSON.
VALID: dict[str, st.SearchStrategy[Any]] = {
    "max_tokens": st.integers(1, MAX_TOKENS),
    "max_completion_tokens": st.integers(1, MAX_TOKENS),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1, exclude_min=True),
    "seed": st.integers(0, 2**63 - 1),
    "stop": st.text(min_size=1, max_size=4) | st.lists(st.text(min_size=1, max_size=4), max_size=4),
    "n": st.integers(1, 16),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "user": TEXT,
    "tokenlean": st.dictionaries(st.text(max_size=8), JSON, max_size=3),
}
CHAT_BODY = st.fixed_dictionaries(
    {"model": TEXT, "messages": st.lists(MESSAGE, min_size=1, max_size=3)},
    optional={**VALID, "logprobs": st.booleans(), "top_logprobs": st.integers(0, 20)},
)
TEXT_BODY = st.fixed_dictionaries(
    {"model": TEXT, "prompt": TEXT | st.lists(TEXT, min_size=1, max_size=2)},
    optional={**VALID, "logprobs": st.integers(0, 20), "echo": st.booleans()},
)
FIELD_NAMES = sorted({*VALID, "model", "messages", "prompt", "logprobs", "top_logprobs", "echo"})
MUTATIONS = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), JSON, max_size=3)


@given(
    case=st.tuples(st.just(ChatCompletionRequest), CHAT_BODY)
    | st.tuples(st.just(CompletionRequest), TEXT_BODY),
    mutation=MUTATIONS,
    as_text=st.booleans(),
)
@settings(max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
def test_converters_convert_or_raise_a_typed_error(
    case: tuple[type, dict[str, Any]], mutation: dict[str, Any], as_text: bool
) -> None:
    wire, body = case
    body = {**body, **mutation}
    try:
        parsed = wire.model_validate_json(json.dumps(body)) if as_text else wire.model_validate(body)
        request = to_request(parsed, tenant=None, request_id="r")
        upstream = request_body(request, "m")
        json.dumps(upstream, allow_nan=False)  # what httpx does before sending it upstream
    except (ValidationError, TokenleanError):
        pass


@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
@settings(max_examples=200, deadline=None, database=None)
def test_raw_bytes_are_valid_or_a_validation_error(raw: bytes) -> None:
    for wire in (ChatCompletionRequest, CompletionRequest):
        try:
            wire.model_validate_json(raw)
        except ValidationError:
            pass


@given(status=st.integers(100, 599), body=st.binary(max_size=64) | JSON.map(lambda v: json.dumps(v).encode()))
@settings(max_examples=200, deadline=None, database=None)
def test_any_upstream_error_body_becomes_an_upstream_status_error(status: int, body: bytes) -> None:
    error = error_from_body(status, body)
    assert isinstance(error, UpstreamStatusError) and error.message


# --- explicit cases ----------------------------------------------------------------------------


@pytest.fixture
async def client() -> Any:
    app = create_app(Pipeline(FakeBackend()), max_option_bytes=4096)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        yield http


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert set(body) == ERROR_KEYS
    assert "Traceback" not in response.text
    return body


def _raw(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


async def test_invalid_utf8_inside_a_string_is_400_saying_so(client: httpx.AsyncClient) -> None:
    raw = b'{"model": "fake", "messages": [{"role": "user", "content": "caf\xe9 \xff"}]}'
    body = _error(await client.post(CHAT, content=raw, headers={"content-type": "application/json"}), 400)
    assert body["code"] == "invalid_json" and "unicode" in body["message"].lower()


@pytest.mark.parametrize("where", ["body", "tokenlean", "extra"])
async def test_deeply_nested_json_is_400_naming_the_limit(client: httpx.AsyncClient, where: str) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    field = {
        "body": "",
        "tokenlean": '"tokenlean": {"cache": ' + deep + "}, ",
        "extra": '"guided": ' + deep + ", ",
    }
    raw = '{"model": "fake", ' + field[where] + '"messages": [{"role": "user", "content": "hi"}]}'
    if where == "body":
        raw = deep
    body = _error(await client.post(CHAT, **_raw(raw)), 400)
    assert "recursion limit" in body["message"]
    # within the parser's reach but past the proxy's own limit: named, with the field
    medium = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    raw = '{"model": "fake", "guided": ' + medium + ', "messages": [{"role": "user", "content": "hi"}]}'
    body = _error(await client.post(CHAT, **_raw(raw)), 400)
    assert body["param"] == "guided" and f"limit of {MAX_DEPTH}" in body["message"]


async def test_deeply_nested_header_option_is_not_a_500(client: httpx.AsyncClient) -> None:
    # this was a 500: json.loads on the header value hit RecursionError
    payload = {"model": "fake", "messages": OK}
    response = await client.post(CHAT, json=payload, headers={"x-tokenlean-cache-ttl": "[" * 3000})
    assert _error(response, 400)["param"] == "tokenlean.cache.ttl"  # ttl is a number: a 400 naming it


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("max_tokens", 10**30, str(MAX_TOKENS)),
        ("max_completion_tokens", 10**30, str(MAX_TOKENS)),
        ("temperature", 1e308, "2"),
        ("seed", 10**30, str(2**63 - 1)),
        ("n", 10**30, "16"),
    ],
)
async def test_huge_numbers_are_400_naming_field_and_limit(
    client: httpx.AsyncClient, field: str, value: Any, limit: str
) -> None:
    body = _error(await client.post(CHAT, json={"model": "fake", "messages": OK, field: value}), 400)
    assert body["param"] == field and limit in body["message"]


@pytest.mark.parametrize(
    ("fragment", "param"),
    [
        ('"temperature": NaN', "temperature"),
        ('"top_k": NaN', "top_k"),
        ('"guided": {"w": [1, Infinity]}', "guided.w.1"),
        ('"tokenlean": {"cache": {"ttl": -Infinity}}', "tokenlean.cache.ttl"),
        ('"stream_options": {"include_usage": true, "x": NaN}', "stream_options.x"),
    ],
)
async def test_nan_and_infinity_are_400_naming_the_field(
    client: httpx.AsyncClient, fragment: str, param: str
) -> None:
    # Python's JSON accepts these literals; passed on, httpx refused to encode them (a 502)
    raw = '{"model": "fake", "messages": [{"role": "user", "content": "hi"}], ' + fragment + "}"
    body = _error(await client.post(CHAT, **_raw(raw)), 400)
    assert body["param"] == param, body


async def test_nan_in_a_header_option_is_400(client: httpx.AsyncClient) -> None:
    headers = {"x-tokenlean-cache-ttl": "NaN"}
    body = _error(await client.post(CHAT, json={"model": "fake", "messages": OK}, headers=headers), 400)
    assert body["param"] == "tokenlean.cache.ttl"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "fake", "messages": None}, "messages"),
        ({"model": "fake", "messages": [None]}, "messages.0"),
        ({"model": "fake", "messages": OK, "stop": [None]}, "stop.0"),
        ({"model": "fake", "messages": [{"role": "user", "content": [None]}]}, "messages.0.content.0"),
        ({"model": "fake", "messages": OK, "stop": None, "n": None}, "n"),
    ],
)
async def test_nulls_where_arrays_or_numbers_are_expected(
    client: httpx.AsyncClient, payload: dict[str, Any], param: str
) -> None:
    body = _error(await client.post(CHAT, json=payload), 400)
    assert body["param"] == param and body["message"].startswith(param + ":")


async def test_oversized_stage_options_are_413_naming_the_limit(client: httpx.AsyncClient) -> None:
    pool = "p" * 12_000  # a well-typed option (a pool name) that is simply too big
    payload = {"model": "fake", "messages": OK, "tokenlean": {"demos": {"pool": pool}}}
    body = _error(await client.post(CHAT, json=payload), 413)
    assert body["param"] == "tokenlean" and "limit of 4096" in body["message"]
    small = {"model": "fake", "messages": OK, "tokenlean": {"cache": {"ttl": 5}}}
    assert (await client.post(CHAT, json=small)).status_code == 200


async def test_unknown_path_and_method_are_openai_errors(client: httpx.AsyncClient) -> None:
    assert _error(await client.get("/v1/nothing"), 404)["code"] == "not_found"
    response = await client.delete(CHAT)
    assert _error(response, 405)["code"] == "method_not_allowed" and response.headers["allow"] == "POST"
