"""One upstream answer in flight: deadlines, error translation, and the stream after its first item.

Shared by ``OpenAIBackend`` (chunks) and the proxy's byte relay (raw event payloads,
``tokenlean/proxy/relay.py``): both open a stream inside the retried attempt, read its first item
there, and hand the rest to an ``UpstreamStream``, which is never retried and always frees its
replica. Errors are translated here, at the boundary: connection failure →
``BackendUnavailableError``, connect/read/total timeout → ``BackendTimeoutError``, an error
event inside a stream → ``UpstreamStatusError``, anything else → ``BackendError``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from tokenlean.backends.replicas import Replica, ReplicaSet
from tokenlean.errors import BackendError, BackendTimeoutError, BackendUnavailableError, UpstreamStatusError

__all__ = [
    "Progress",
    "StreamOwner",
    "UpstreamStream",
    "drain",
    "first_read",
    "stream_error",
    "translate",
    "within",
]

T = TypeVar("T")


class StreamOwner(Protocol):
    """What an ``UpstreamStream`` needs from its backend: the replicas and the failure record."""

    replicas: ReplicaSet

    def failed(self, replica: Replica, exc: BaseException) -> BackendError: ...


async def within(deadline: float, awaitable: Awaitable[T]) -> T:
    """Await with an absolute loop-time deadline; ``TimeoutError`` when it passes."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout_at(deadline):
            return await awaitable
    remaining = deadline - asyncio.get_running_loop().time()  # pragma: no cover - Python 3.10
    return await asyncio.wait_for(awaitable, max(remaining, 0.0))  # pragma: no cover


def translate(exc: BaseException, url: str) -> BackendError:
    """An aiohttp or asyncio failure as the matching tokenlean error."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, aiohttp.ServerTimeoutError):  # connect or read timeout (a TimeoutError too)
        return BackendTimeoutError(f"upstream {url} timed out ({type(exc).__name__})")
    if isinstance(exc, TimeoutError):  # within's deadline: the request's whole budget is spent
        return BackendTimeoutError(f"upstream {url} timed out (total timeout)", deadline_passed=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return BackendUnavailableError(f"cannot connect to upstream {url}: {exc}")
    return BackendError(f"upstream {url} failed: {type(exc).__name__}: {exc}")


class Progress:
    """How far one attempt got: once the answer's first byte is in, it is no longer retried."""

    __slots__ = ("first_byte",)

    def __init__(self) -> None:
        self.first_byte = False


def stream_error(error: Any) -> UpstreamStatusError:
    """An error event inside an SSE stream (vLLM sends one when generation fails mid-way)."""
    error = error if isinstance(error, dict) else {"message": str(error)}
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return UpstreamStatusError(f"upstream stream failed: {error.get('message', '')}", upstream_status=status)


async def drain(events: AsyncIterator[bytes]) -> None:
    async for _ in events:
        pass


async def first_read(
    replica: Replica, items: AsyncGenerator[T, None]
) -> tuple[Replica, T | None, AsyncGenerator[T, None]]:
    """A streamed attempt's first item (``None``: the stream is empty) and the rest.

    Reading it is part of the retried attempt; when it fails the stream is closed here, so the
    upstream response is released before the next try.
    """
    try:
        first = await items.__anext__()
    except StopAsyncIteration:
        return replica, None, items
    except BaseException:
        await items.aclose()
        raise
    return replica, first, items


class UpstreamStream(Generic[T]):
    """A stream after its first item was read (the retried part): that item, then the rest.

    Relayed as it comes and never retried. A class rather than an async generator so that
    ``aclose`` always closes the upstream response and frees the replica, even when the caller
    stops before reading past the first item (an unstarted generator's ``finally`` never runs).
    The items are ``Chunk``s here and raw event payloads on the proxy's fast path (``RawStream``).
    """

    def __init__(
        self, backend: StreamOwner, replica: Replica, first: T | None, rest: AsyncGenerator[T, None]
    ) -> None:
        self._backend = backend
        self._replica: Replica | None = replica
        self._first = first
        self._rest = rest

    def __aiter__(self) -> UpstreamStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            return await self._rest.__anext__()
        except StopAsyncIteration:
            self._release()
            raise
        except Exception as exc:
            replica = self._release()
            if replica is None:
                raise
            raise self._backend.failed(replica, exc) from exc

    async def aclose(self) -> None:
        """Close the upstream response now (a client that went away): vLLM stops generating."""
        try:
            await self._rest.aclose()
        finally:
            self._release()

    def _release(self) -> Replica | None:
        replica, self._replica = self._replica, None
        if replica is not None:
            self._backend.replicas.release(replica)
        return replica
