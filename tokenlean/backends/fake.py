"""``FakeBackend``: a scripted backend for unit tests of pure logic (as httpx ships MockTransport).

It answers from a function of the request (or echoes the last user turn) and records every
request it saw, so tests can assert on backend traffic. It never loads a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from tokenlean.middleware.stage import Capabilities
from tokenlean.middleware.types import Choice, Chunk, Request, Response, Usage

__all__ = ["FakeBackend"]


def _echo(request: Request) -> str:
    return request.last_user_text


class FakeBackend:
    """Answer with ``reply(request)``; streams it word by word when asked to stream."""

    capabilities = Capabilities(streaming=True, logprobs=False, n=True, batching=False)

    def __init__(self, reply: Callable[[Request], str] = _echo, *, model: str = "fake") -> None:
        self.reply = reply
        self.model = model
        self.requests: list[Request] = []

    def models(self) -> list[str]:
        """The single model name this fake answers to."""
        return [self.model]

    async def complete(self, request: Request) -> Response:
        """Record ``request`` and answer it, streamed or not."""
        self.requests.append(request)
        texts = [self.reply(request) for _ in range(request.n)]
        prompt = sum(len(m.content.split()) for m in request.messages) + len((request.prompt or "").split())
        usage = Usage(prompt, sum(len(t.split()) for t in texts))
        if request.stream:
            return Response(model=self.model, stream=self._stream(texts, usage))
        choices = tuple(Choice(i, text, "stop") for i, text in enumerate(texts))
        return Response(model=self.model, choices=choices, usage=usage)

    @staticmethod
    async def _stream(texts: list[str], usage: Usage) -> AsyncIterator[Chunk]:
        for index, text in enumerate(texts):
            for position, word in enumerate(text.split(" ")):
                yield Chunk(index, word if position == 0 else " " + word)
            yield Chunk(index, "", "stop")
        yield Chunk(usage=usage)

    async def aclose(self) -> None:
        """Nothing to release."""
