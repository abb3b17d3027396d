"""How a stream's chunks fold into whole choices (the fold ``Response.aread`` and the cache's tee
share)."""

from __future__ import annotations

from tokenlean.middleware.types import ChoiceAssembly, Chunk, Event, Usage


def _call_delta(index: int, **fields: object) -> dict[str, object]:
    return {"index": index, **fields}


def test_text_tool_calls_logprobs_and_vendor_fields_join_per_choice() -> None:
    assembly = ChoiceAssembly(Usage())
    for chunk in (
        Chunk(0, "Hel", logprobs=({"token": "Hel"},), extra={"delta": {"reasoning_content": "th"}}),
        Chunk(1, "Other"),
        Chunk(0, "lo", logprobs=({"token": "lo"},), extra={"delta": {"reasoning_content": "ink"}}),
        Chunk(0, tool_calls=(_call_delta(0, id="c1", function={"name": "get", "arguments": '{"a"'}),)),
        Chunk(0, tool_calls=(_call_delta(0, function={"arguments": ": 1}"}),)),
        Chunk(0, "", "tool_calls", extra={"stop_reason": 7}),
        Chunk(1, "", "length"),
        Chunk(usage=Usage(3, 4), events=(Event("cache", "stored"),)),
    ):
        assembly.add(chunk)

    first, second = assembly.choices()
    assert (first.text, first.finish_reason) == ("Hello", "tool_calls")
    assert first.logprobs == ({"token": "Hel"}, {"token": "lo"})
    assert first.tool_calls == (
        {"id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"a": 1}'}},
    )
    assert first.extra == {"message": {"reasoning_content": "think"}, "stop_reason": 7}
    assert (second.text, second.finish_reason, second.logprobs, second.tool_calls) == (
        "Other",
        "length",
        None,
        (),
    )
    assert assembly.usage == Usage(3, 4)
    assert [e.action for e in assembly.events] == ["stored"]
    assert assembly.finished == {0, 1}


def test_an_unfinished_choice_is_not_finished_and_reads_as_stop() -> None:
    assembly = ChoiceAssembly(Usage(1, 1))
    assembly.add(Chunk(0, "half an ans"))

    assert assembly.finished == frozenset()
    (choice,) = assembly.choices()
    assert (choice.text, choice.finish_reason) == ("half an ans", "stop")
    assert assembly.usage == Usage(1, 1)


def test_choices_can_be_asked_for_by_index_including_ones_never_seen() -> None:
    assembly = ChoiceAssembly(Usage())
    assembly.add(Chunk(1, "b", "stop"))

    missing, seen = assembly.choices(range(2))
    assert (missing.index, missing.text) == (0, "")
    assert (seen.index, seen.text) == (1, "b")
