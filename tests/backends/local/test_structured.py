"""Structured output and tool calls on the embedded SmolLM2 (grammar-constrained, greedy, short)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Message, Request

pytestmark = pytest.mark.slow

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
}
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}}},
    },
}


def _ask(text: str, **kw: Any) -> Request:
    return Request(messages=(Message("user", text),), max_tokens=48, temperature=0, **kw)


def _person_format() -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}


async def test_json_object_is_valid_json(local_backend) -> None:  # type: ignore[no-untyped-def]
    request = _ask("Give a JSON object with a city and its country.", response_format={"type": "json_object"})
    response = await local_backend.complete(request.replace(max_tokens=96))
    assert response.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(response.text), dict)


async def test_json_schema_output_validates(local_backend) -> None:  # type: ignore[no-untyped-def]
    response = await local_backend.complete(_ask("Describe Ada Lovelace.", response_format=_person_format()))
    assert response.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(response.text), PERSON)


async def test_streamed_constrained_request_gives_the_same_text(local_backend) -> None:  # type: ignore[no-untyped-def]
    request = _ask("Describe Alan Turing.", response_format=_person_format())
    whole = await local_backend.complete(request)
    streamed = await local_backend.complete(request.replace(stream=True))
    texts = [chunk.text async for chunk in streamed.stream if chunk.text]
    assert len(texts) > 1 and "".join(texts) == whole.text
    jsonschema.validate(json.loads(whole.text), PERSON)


async def test_batched_rows_each_follow_the_schema(local_backend) -> None:  # type: ignore[no-untyped-def]
    request = _ask("Describe a famous scientist.", response_format=_person_format())
    response = await local_backend.complete(request.replace(n=2, temperature=1.0, seed=7))
    assert len(response.choices) == 2
    for choice in response.choices:
        if choice.finish_reason == "stop":  # a sampled row may run out of tokens; a finished one is valid
            jsonschema.validate(json.loads(choice.text), PERSON)
    assert any(choice.finish_reason == "stop" for choice in response.choices)


@pytest.mark.parametrize(
    "choice, expected",
    [({"type": "function", "function": {"name": "get_time"}}, "get_time"), ("required", None)],
)
async def test_tool_choice_gives_a_well_formed_call(local_backend, choice, expected) -> None:  # type: ignore[no-untyped-def]
    request = _ask("What is the weather in Paris?", tools=(WEATHER, TIME), tool_choice=choice)
    response = await local_backend.complete(request)
    answer = response.choices[0]
    assert answer.finish_reason == "tool_calls" and answer.text == ""
    (call,) = answer.tool_calls
    assert call["type"] == "function" and call["id"].startswith("call_")
    name = call["function"]["name"]
    assert name == (expected or name) and name in ("get_weather", "get_time")
    schema = (WEATHER if name == "get_weather" else TIME)["function"]["parameters"]
    jsonschema.validate(json.loads(call["function"]["arguments"]), schema)


async def test_streamed_tool_call_arrives_as_deltas_matching_the_whole_call(local_backend) -> None:  # type: ignore[no-untyped-def]
    from tokenlean.middleware.types import merge_tool_call_deltas

    request = _ask("What is the weather in Rome?", tools=(WEATHER,), tool_choice="required")
    whole = (await local_backend.complete(request)).choices[0].tool_calls[0]
    chunks = [chunk async for chunk in (await local_backend.complete(request.replace(stream=True))).stream]
    deltas = [delta for chunk in chunks for delta in chunk.tool_calls]
    assert len(deltas) > 2 and {delta["index"] for delta in deltas} == {0}
    assert deltas[0]["function"]["name"] == "get_weather" and deltas[0]["id"].startswith("call_")
    (merged,) = merge_tool_call_deltas(deltas)
    assert merged["function"] == whole["function"]
    assert not any(chunk.text for chunk in chunks)
    assert [chunk.finish_reason for chunk in chunks if chunk.finish_reason] == ["tool_calls"]


async def test_logit_bias_forces_and_forbids_a_token(local_backend) -> None:  # type: ignore[no-untyped-def]
    plain = await local_backend.complete(_ask("What is the capital of France?").replace(max_tokens=3))
    first = local_backend.tokenizer.encode(plain.text, add_special_tokens=False)[0]
    banned = _ask("What is the capital of France?", extra={"logit_bias": {str(first): -100}})
    other = await local_backend.complete(banned.replace(max_tokens=3))
    assert local_backend.tokenizer.encode(other.text, add_special_tokens=False)[0] != first
    forced_id = local_backend.tokenizer.encode(" banana", add_special_tokens=False)[0]
    forced = _ask("What is the capital of France?", extra={"logit_bias": {str(forced_id): 100}})
    assert (await local_backend.complete(forced.replace(max_tokens=2))).text.split() == ["banana", "banana"]


async def test_unreadable_parts_and_bad_schemas_are_refused(local_backend) -> None:  # type: ignore[no-untyped-def]
    image = Message("user", "What is this?", parts=({"type": "image_url", "image_url": {"url": "x"}},))
    with pytest.raises(BadRequestError) as caught:
        await local_backend.complete(Request(messages=(image,)))
    assert caught.value.param == "messages.0.content"
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
    with pytest.raises(BadRequestError) as caught:
        await local_backend.complete(_ask("Hi", response_format=bad))
    assert caught.value.param == "response_format.json_schema.schema"


async def test_official_client_through_the_proxy(asgi_client, model_name) -> None:  # type: ignore[no-untyped-def]
    client = openai.AsyncOpenAI(api_key="k", base_url="http://proxy/v1", http_client=asgi_client)
    ask: Any = [{"role": "user", "content": "What is the weather in Oslo?"}]
    tools: Any = [WEATHER]
    answer = await client.chat.completions.create(
        model=model_name, messages=ask, tools=tools, tool_choice="required", temperature=0, max_tokens=48
    )
    (call,) = answer.choices[0].message.tool_calls or []
    assert answer.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])  # type: ignore[union-attr]
    stream = await client.chat.completions.create(
        model=model_name,
        messages=ask,
        tools=tools,
        tool_choice="required",
        temperature=0,
        max_tokens=48,
        stream=True,
    )
    parts = [
        delta
        for chunk in [c async for c in stream]
        if chunk.choices
        for delta in chunk.choices[0].delta.tool_calls or []
    ]
    assert "".join(p.function.arguments or "" for p in parts if p.function) == call.function.arguments  # type: ignore[union-attr]
    fmt: Any = _person_format()
    person = await client.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "Describe Marie Curie."}],
        response_format=fmt, temperature=0, max_tokens=48,
    )  # fmt: skip
    jsonschema.validate(json.loads(person.choices[0].message.content or ""), PERSON)
