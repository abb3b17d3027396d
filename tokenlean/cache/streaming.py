"""Streams through the cache: tee a streamed miss, replay a hit as chunks.

A streamed miss reaches the client chunk by chunk as the model produces it (nothing is buffered
ahead of the client); a copy is kept on the side and stored only once the stream has ended
normally with every choice finished. A client that disconnects, or a backend that fails
mid-stream, leaves nothing in the cache: a half answer must never be served as a whole one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

from tokenlean.middleware.types import ChoiceAssembly, Chunk, Event, Response, Usage

__all__ = ["replay", "tee"]

_PIECE = re.compile(r"\s*\S+|\s+$")


async def tee(
    stream: AsyncIterator[Chunk],
    *,
    choices: int,
    model: str,
    on_complete: Callable[[Response], Awaitable[Event]],
) -> AsyncIterator[Chunk]:
    """Pass ``stream`` through; when it completes, call ``on_complete`` and emit its event.

    ``on_complete`` receives the whole answer as a completed ``Response`` and returns the event
    to report (stored, or why not); it runs before the stream closes, in a final chunk.
    """
    assembly = ChoiceAssembly(Usage())
    completed = False
    try:
        async for chunk in stream:
            assembly.add(chunk)
            yield chunk
        completed = True
    finally:
        if not completed:  # the client went away or the backend failed: close upstream, store nothing
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
    if assembly.finished != set(range(choices)):
        return  # the stream ended without finishing every choice: not an answer to keep
    whole = assembly.choices(range(choices))
    event = await on_complete(Response(model=model, choices=whole, usage=assembly.usage))
    yield Chunk(events=(event,))


async def replay(response: Response) -> AsyncIterator[Chunk]:
    """A completed (cached) response as a stream: word-sized pieces, tool calls, a finish chunk, usage."""
    for choice in response.choices:
        for piece in _PIECE.findall(choice.text):
            yield Chunk(choice.index, piece)
        if choice.tool_calls:
            yield Chunk(
                choice.index, tool_calls=tuple({**c, "index": i} for i, c in enumerate(choice.tool_calls))
            )
        extra = {k: v for k, v in choice.extra.items() if k != "message"}
        if "message" in choice.extra:
            extra["delta"] = choice.extra["message"]
        yield Chunk(choice.index, "", choice.finish_reason or "stop", choice.logprobs, extra=extra)
    yield Chunk(usage=response.usage)
