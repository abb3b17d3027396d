"""The upstream SSE reader: events split at any byte, with any of the three line ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tokenlean.backends.openai_wire import retry_after, sse_data

EVENTS = [b'{"a": 1}', b'{"b": 2}', b"line one\nline two", b"[DONE]"]


def body(line_end: bytes) -> bytes:
    parts = [
        b": keep-alive" + line_end + line_end,
        b"data: " + EVENTS[0] + line_end + line_end,
        b"event: message" + line_end + b"data:" + EVENTS[1] + line_end + line_end,
        b"data: line one" + line_end + b"data: line two" + line_end + line_end,
        b"data: [DONE]" + line_end + line_end,
    ]
    return b"".join(parts)


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
async def test_every_split_and_line_end_gives_the_same_events(line_end: bytes, size: int) -> None:
    assert [p async for p in sse_data(pieces(body(line_end), size))] == EVENTS


async def test_a_crlf_split_across_two_reads_does_not_end_an_event() -> None:
    reads = [b"data: " + EVENTS[0] + b"\r", b"\ndata: more\r", b"\n\r\n"]

    async def split() -> AsyncIterator[bytes]:
        for read in reads:
            yield read

    assert [p async for p in sse_data(split())] == [EVENTS[0] + b"\nmore"]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({}) is None
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert retry_after({"retry-after": "soon"}) is None
