"""The pure parts of structured output: schema closing, tool-call reading, penalties, request checks."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from tokenlean.backends.local.grammar import closed
from tokenlean.backends.local.penalties import penalties_for
from tokenlean.backends.local.structured import chat_messages, refuse_unreadable_parts, structured_plan
from tokenlean.backends.local.tool_calls import ToolCallReader, parse_tool_call
from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Message, Request

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def test_closed_schema_forbids_unlisted_keys_but_keeps_valid_outputs_valid() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}}},
        "allOf": [{"properties": {"c": {"type": "string"}}}],
    }
    tight = closed(schema)
    assert tight["additionalProperties"] is False
    assert tight["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in tight["allOf"][0]  # closing a branch would forbid "a"
    jsonschema.validate({"a": {"b": 1}}, tight)
    jsonschema.validate({"a": {"b": 1}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"a": {"b": 1, "x": 2}}, tight)
    named = closed({"type": "object", "properties": {"properties": {"type": "string"}}})
    assert named["properties"] == {"properties": {"type": "string"}}  # a key named "properties" stays a key


def _merged(deltas: list[dict[str, Any]]) -> tuple[str, str]:
    from tokenlean.middleware.types import merge_tool_call_deltas

    (call,) = merge_tool_call_deltas(deltas)
    return call["function"]["name"], call["function"]["arguments"]


def test_tool_call_reader_streams_a_call_as_deltas() -> None:
    call, deltas = ToolCallReader(("lookup", "other")), list[dict[str, Any]]()
    for piece in ['{"na', 'me": "lookup", "argu', 'ments": {"q', '": "x"}']:
        text, new = call.feed(piece)
        assert text == "" and len(new) <= 1  # one entry per call in a chunk (clients read two as two calls)
        deltas.extend(new)
    assert deltas[0]["id"].startswith("call_") and deltas[0]["function"]["name"] == "lookup"
    assert _merged(deltas) == ("lookup", '{"q": "x"')  # the last "}" may still close the call
    deltas.extend(call.feed("}")[1])
    text, last, reason = call.finish("stop")
    assert text == "" and reason == "tool_calls"
    assert _merged([*deltas, *last]) == ("lookup", '{"q": "x"}')
    assert len(deltas) >= 3  # head, then the arguments in pieces


def test_tool_call_reader_lets_text_through_and_keeps_cut_calls() -> None:
    auto = ToolCallReader(("lookup",), auto=True)
    assert auto.feed(" ") == ("", ()) and auto.feed("Hello") == (" Hello", ()) and auto.feed("!") == ("!", ())
    assert auto.finish("stop") == ("", (), "stop")
    early = ToolCallReader(("lookup",))
    early.feed('{"name": "loo')
    assert early.finish("length") == ('{"name": "loo', (), "length")  # never became a call: text
    late = ToolCallReader(("lookup",))
    _, deltas = late.feed('{"name": "lookup", "arguments": {"q": "x')
    text, rest, reason = late.finish("length")
    assert text == "" and reason == "length" and _merged([*deltas, *rest]) == ("lookup", '{"q": "x')
    assert parse_tool_call('{"name": "other", "arguments": {}}', ("lookup",)) is None


def test_tool_choice_and_parts_are_checked() -> None:
    named = {"type": "function", "function": {"name": "missing"}}
    with pytest.raises(BadRequestError) as caught:
        structured_plan(Request(messages=(Message("user", "hi"),), tools=(TOOL,), tool_choice=named))
    assert caught.value.param == "tool_choice"
    with pytest.raises(BadRequestError) as caught:
        structured_plan(Request(messages=(Message("user", "hi"),), response_format={"type": "yaml"}))
    assert caught.value.param == "response_format.type"
    audio = Message(
        "user", "", parts=({"type": "text", "text": ""}, {"type": "input_audio", "input_audio": {}})
    )
    with pytest.raises(BadRequestError) as caught:
        refuse_unreadable_parts(Request(messages=(audio,)))
    assert caught.value.param == "messages.0.content"


def test_tools_and_history_reach_the_prompt_as_text() -> None:
    history = (
        Message("user", "find x"),
        Message(
            "assistant",
            "",
            tool_calls=({"id": "c1", "function": {"name": "lookup", "arguments": '{"q":"x"}'}},),
        ),
        Message("tool", "x is 1", tool_call_id="c1"),
    )
    request = Request(messages=history, tools=(TOOL,), tool_choice="required")
    plan = structured_plan(request)
    turns = chat_messages(request, plan)
    assert turns[0]["role"] == "system" and '"lookup"' in turns[0]["content"]
    assert turns[2] == {"role": "assistant", "content": '{"name": "lookup", "arguments": {"q": "x"}}'}
    assert turns[3] == {"role": "tool", "content": "x is 1"}
    assert plan.constrained and plan.tool_names == ("lookup",)
    assert not structured_plan(Request(messages=history, tools=(TOOL,), tool_choice="none")).constrained


def test_penalties_follow_openai_definition() -> None:
    import torch

    request = Request(extra={"presence_penalty": 0.5, "frequency_penalty": 1.0, "logit_bias": {"2": 3}})
    penalties = penalties_for(request, vocab_size=4)
    assert penalties is not None
    shaped = penalties.shape(torch.zeros(4), [1, 1, 3])
    assert shaped.tolist() == [0.0, -2.5, 3.0, -1.5]
    assert penalties_for(Request(extra={"presence_penalty": 0}), vocab_size=4) is None
    with pytest.raises(BadRequestError) as caught:
        penalties_for(Request(extra={"logit_bias": {"9": 1}}), vocab_size=4)
    assert caught.value.param == "logit_bias"


def _accepts(compiler: object, grammar: str, text: str) -> bool:
    """Whether the grammar's matcher takes ``text`` (tokenised by SmolLM2) and may end there."""
    constraint = compiler.constraint(grammar)  # type: ignore[attr-defined]
    tokens = compiler.tokenizer.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
    return bool(constraint.matcher.consume_tokens(tokens) and constraint.matcher.is_accepting())


def test_tool_grammar_takes_only_calls_of_the_listed_tools() -> None:
    from transformers import AutoTokenizer

    from tokenlean.backends.local.grammar import GrammarCompiler
    from tokenlean.models import resolve_model_dir

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_dir(None)))
    compiler = GrammarCompiler(tokenizer, frozenset({tokenizer.eos_token_id}), len(tokenizer))
    bare = {"type": "function", "function": {"name": "ping"}}  # no parameters: arguments are {}
    grammar = structured_plan(
        Request(messages=(Message("user", "hi"),), tools=(TOOL, bare), tool_choice="required")
    )
    assert grammar.grammar is not None
    assert _accepts(compiler, grammar.grammar, '{"name": "ping", "arguments": {}}')
    assert _accepts(compiler, grammar.grammar, '{"name": "lookup", "arguments": {"q": 1}}')  # open parameters
    assert not _accepts(compiler, grammar.grammar, '{"name": "ping", "arguments": {"x": 1}}')
    assert not _accepts(compiler, grammar.grammar, '{"name": "other", "arguments": {}}')


def test_auto_grammar_takes_text_or_a_call() -> None:
    from transformers import AutoTokenizer

    from tokenlean.backends.local.grammar import GrammarCompiler
    from tokenlean.models import resolve_model_dir

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_dir(None)))
    compiler = GrammarCompiler(tokenizer, frozenset({tokenizer.eos_token_id}), len(tokenizer))
    ask = Request(messages=(Message("user", "hi"),), tools=(TOOL,), tool_choice="auto")
    free = structured_plan(ask).grammar
    assert free is not None and structured_plan(ask).tool_auto
    compiler.check(free, "tools")
    assert _accepts(compiler, free, "Hello there.\nBye")
    assert _accepts(compiler, free, '{"name": "lookup", "arguments": {"q": 1}}')
    assert not _accepts(compiler, free, '{"name": "nope", "arguments": {}}')
    person = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": person}}
    either = structured_plan(ask.replace(response_format=fmt)).grammar
    assert either is not None
    compiler.check(either, "tools")
    assert _accepts(compiler, either, '{"age": 3}')
    assert _accepts(compiler, either, '{"name": "lookup", "arguments": {}}')
    assert not _accepts(compiler, either, "Hello")
