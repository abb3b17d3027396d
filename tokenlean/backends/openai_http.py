"""``OpenAIBackend``: any OpenAI-compatible server, first of all ``vllm serve``, over aiohttp.

One ``aiohttp`` session per upstream (``upstream_http.py``: why aiohttp, the pool). Non-streamed
answers are parsed whole; streamed ones are relayed chunk by chunk as each server-sent event
arrives (nothing is buffered). Several upstream URLs are replicas of one model, routed with prefix
affinity (``replicas.py``).

Retries follow the one policy in ``retry.py`` (connection failures, timeouts before the first
byte, 429/502/503/504, jittered backoff, ``Retry-After``, never past the deadline), in one loop
(``_attempts``), on another replica when there is one. A stream is retried only until its first
chunk: opening it and reading that chunk is the attempt, and what follows is relayed without
retries, because replaying a generation the client has half seen would duplicate text.

Errors are translated at this boundary (``upstream_stream.translate``): connection failure →
``BackendUnavailableError`` (503), connect/read/total timeout → ``BackendTimeoutError`` (504), an
error status → ``UpstreamStatusError`` (the upstream's 4xx kept, a 5xx made 502), a dropped
connection → ``BackendError`` (502).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp

from tokenlean.backends.openai_wire import (
    endpoint,
    error_from_body,
    parse_chunk,
    parse_completion,
    redact_error,
    request_body,
    retry_after,
    sse_data,
)
from tokenlean.backends.replicas import Replica, ReplicaSet, Routing, url_secrets
from tokenlean.backends.retry import RetryPolicy
from tokenlean.backends.upstream_http import UpstreamSessions, listed_models, model_ids
from tokenlean.backends.upstream_metrics import UpstreamMetrics, UpstreamTimer
from tokenlean.backends.upstream_stream import (
    Progress,
    UpstreamStream,
    drain,
    first_read,
    stream_error,
    translate,
    within,
)
from tokenlean.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
)
from tokenlean.middleware.stage import Capabilities
from tokenlean.middleware.types import Chunk, Request, Response

__all__ = ["OpenAIBackend", "normalize_url"]

T = TypeVar("T")


def normalize_url(url: str) -> str:
    """``http://host:8000``, ``.../v1`` and ``.../v1/`` all become ``http://host:8000/v1/``."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"upstream URL must start with http:// or https://: {url!r}", param="upstreams")
    if not url.endswith("/v1"):
        url += "/v1"
    return url + "/"


class OpenAIBackend:
    """A backend that forwards to one or more OpenAI-compatible upstreams (replicas of one model).

    ``model`` fixes the model name sent upstream; without it the request's ``model`` is sent, or,
    when that is empty, the first model the upstream lists. ``routing`` picks the replica policy
    (``"affinity"``: prefix-affine consistent hashing with bounded loads).
    """

    capabilities = Capabilities(  # tools, formats and content parts go upstream as sent
        streaming=True,
        logprobs=True,
        n=True,
        batching=True,
        tools=True,
        response_format=True,
        content_parts=None,
    )

    def __init__(
        self,
        upstreams: Sequence[str] | str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        total_timeout: float = 600.0,
        max_retries: int = 2,
        routing: Routing = "affinity",
        prefix_chars: int = 256,
        load_factor: float = 1.25,
        health_interval: float = 5.0,
        max_connections: int = 1024,
    ) -> None:
        urls = [normalize_url(u) for u in ([upstreams] if isinstance(upstreams, str) else upstreams)]
        if min(connect_timeout, read_timeout, total_timeout) <= 0 or max_retries < 0:
            raise ConfigError("timeouts must be positive and max_retries >= 0", param="timeouts")
        self.replicas = ReplicaSet(urls, routing=routing, prefix_chars=prefix_chars, load_factor=load_factor)
        self.upstream_metrics = UpstreamMetrics(self.replicas)  # latency, errors, vLLM drafting: /metrics
        self.model = model
        self.total_timeout = total_timeout
        self.retry = RetryPolicy(attempts=max_retries + 1)
        self.health_interval = health_interval
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._secrets = [s for s in [api_key or "", *(x for u in urls for x in url_secrets(u))] if s]
        self._listed = False
        self._connect_timeout = connect_timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._sessions = UpstreamSessions(timeout, self._headers, max_connections)
        self._probe_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=max(connect_timeout, 5.0)
        )
        self._monitor: asyncio.Task[None] | None = None
        self._probed_at = float("-inf")  # when the last probe started (monotonic)

    def models(self) -> list[str]:
        """The configured model, else what the upstreams listed at their last probe.

        ``models()`` is synchronous (the proxy's ``/v1/models`` and its model check call it), so
        before the first asynchronous probe has run it asks the upstreams once, blocking for at
        most the connect timeout per upstream; later calls read what the background monitor
        (started here when a loop runs) refreshed, so an upstream that was down at start-up
        shows its models once it is up.
        """
        if self.model:
            return [self.model]
        with contextlib.suppress(RuntimeError):  # inside a running loop: keep the list fresh
            self._ensure_monitor()
        if not self._listed:
            self._listed = True
            for replica in self.replicas.replicas:
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    replica.models = listed_models(replica.url, self._headers, self._connect_timeout)
        return sorted({m for r in self.replicas.replicas for m in r.models})

    async def complete(self, request: Request) -> Response:
        """Forward ``request``; a stream is returned once its first chunk has arrived."""
        self._ensure_monitor()
        deadline = asyncio.get_running_loop().time() + self.total_timeout
        body = request_body(request, await self._model_for(request))
        if not request.stream:
            return await self._attempts(
                request, deadline, lambda r, progress: self._post(r, request, body, deadline, progress)
            )
        replica, first, rest = await self._attempts(
            request, deadline, lambda r, progress: self._open(r, request, body, deadline, progress), hold=True
        )
        return Response(model=body["model"], stream=UpstreamStream(self, replica, first, rest))

    async def _model_for(self, request: Request) -> str:
        if self.model:
            return self.model
        if request.model:
            return request.model
        names = sorted({m for r in self.replicas.replicas for m in r.models})
        if not names:
            await self.health()
            names = sorted({m for r in self.replicas.replicas for m in r.models})
        if not names:
            raise BackendUnavailableError(
                "no upstream listed a model; pass model= or name one in the request"
            )
        return names[0]

    async def _attempts(
        self,
        request: Request,
        deadline: float,
        once: Callable[[Replica, Progress], Awaitable[T]],
        *,
        hold: bool = False,
    ) -> T:
        """The one retry loop: run ``once`` on a routed replica until it succeeds or may not retry.

        With ``hold`` the replica stays acquired after success (a stream releases it at its end).
        """
        tried: list[Replica] = []
        attempt = 0
        while True:
            replica = self.replicas.pick(request, exclude=tried) or tried[-1]
            tried.append(replica)
            self.replicas.acquire(replica)
            progress = Progress()
            try:
                result = await once(replica, progress)
            except Exception as exc:
                self.replicas.release(replica)
                error = self.failed(replica, exc)
                wait = self._retry_wait(error, exc, attempt, progress, tried, deadline)
                if wait is None:
                    raise error from exc
            else:
                replica.mark_up()
                if not hold:
                    self.replicas.release(replica)
                return result
            attempt += 1
            await asyncio.sleep(wait)

    def _retry_wait(
        self,
        error: BackendError,
        exc: BaseException,
        attempt: int,
        progress: Progress,
        tried: list[Replica],
        deadline: float,
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None``: raise ``error`` now.

        No wait when another replica is left to try and the upstream asked for none.
        """
        if attempt + 1 >= self.retry.attempts:
            return None
        broken = isinstance(
            exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError
        ) and not isinstance(exc, aiohttp.ServerTimeoutError)
        if not self.retry.retryable(error, after_first_byte=progress.first_byte, connection_failed=broken):
            return None
        retry_after = getattr(error, "retry_after", None)
        remaining = deadline - asyncio.get_running_loop().time()
        if retry_after is None and len(set(map(id, tried))) < len(self.replicas):
            return 0.0 if remaining > 0 else None
        return self.retry.delay(attempt, retry_after=retry_after, remaining=remaining)

    def failed(self, replica: Replica, exc: BaseException) -> BackendError:
        """Record a failed attempt on ``replica`` (metrics, marked down) and translate it."""
        error = redact_error(translate(exc, replica.url), self._secrets)
        self.upstream_metrics.error(replica.url, error)
        if isinstance(error, BackendUnavailableError):
            replica.mark_down(error.message)
        return error

    async def _post(
        self, replica: Replica, request: Request, body: dict[str, Any], deadline: float, progress: Progress
    ) -> Response:
        timer = self.upstream_metrics.start(replica.url, stream=False)
        answer = await within(deadline, self._sessions.post_json(replica.url, endpoint(request), body))
        progress.first_byte = True
        try:
            timer.headers()
            content = await within(deadline, answer.read())
        finally:
            answer.release()
        if answer.status >= 400:
            raise error_from_body(answer.status, content, retry_after(answer.headers))
        completion = parse_completion(json.loads(content))
        timer.done()
        return completion

    async def _open(
        self, replica: Replica, request: Request, body: dict[str, Any], deadline: float, progress: Progress
    ) -> tuple[Replica, Chunk | None, AsyncGenerator[Chunk, None]]:
        """One streamed attempt: open the stream and read its first chunk (``None``: empty)."""
        return await first_read(replica, self._relay(replica, request, body, deadline, progress))

    @contextlib.asynccontextmanager
    async def _streamed(
        self, replica: Replica, request: Request, body: dict[str, Any], deadline: float
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, UpstreamTimer]]:
        """The upstream's streamed answer and its metrics timer, once its status is good (an error
        status raises the matching error); the response is released on leaving (its connection
        back to the pool when read to the end, else closed: vLLM then stops generating)."""
        timer = self.upstream_metrics.start(replica.url, stream=True)
        answer = await within(deadline, self._sessions.post_json(replica.url, endpoint(request), body))
        timer.headers()
        try:
            if answer.status >= 400:
                body_bytes = await within(deadline, answer.read())
                raise error_from_body(answer.status, body_bytes, retry_after(answer.headers))
            yield answer, timer
        finally:
            answer.release()

    async def _relay(
        self, replica: Replica, request: Request, body: dict[str, Any], deadline: float, progress: Progress
    ) -> AsyncGenerator[Chunk, None]:
        async with self._streamed(replica, request, body, deadline) as (answer, timer):
            events = sse_data(answer.content.iter_any())
            while True:
                try:
                    payload = await within(deadline, events.__anext__())
                except StopAsyncIteration:
                    timer.done()
                    return
                if payload == b"[DONE]":
                    # Read to the end of the body, or the connection is closed instead of
                    # pooling it, and every request pays a new TCP connect.
                    await within(deadline, drain(events))
                    timer.done()
                    return
                data = json.loads(payload)
                if "error" in data and not data.get("choices"):
                    raise stream_error(data["error"])
                for chunk in parse_chunk(data):
                    timer.first_chunk()
                    progress.first_byte = True
                    yield chunk

    async def health(self) -> dict[str, Any]:
        """What ``/health`` shows: the upstreams as last probed (``GET /v1/models``), probed now only
        when no probe started within 2 ``health_interval``s (the monitor keeps it fresh): a probe per
        call made ``/health`` wait seconds behind 200 busy streams (bench/load.py)."""
        if time.monotonic() - self._probed_at > 2 * self.health_interval:
            await asyncio.gather(*(self._probe(r) for r in self.replicas.replicas))
        replicas = self.replicas.snapshot()
        up = sum(1 for r in replicas if r["healthy"])
        status = "ok" if up == len(replicas) else ("degraded" if up else "unavailable")
        return {"status": status, "healthy": up, "total": len(replicas), "upstreams": replicas}

    async def _probe(self, replica: Replica) -> None:
        started = time.perf_counter()
        self._probed_at = time.monotonic()
        try:
            async with self._sessions.session(replica.url).get(
                "models", timeout=self._probe_timeout
            ) as answer:
                answer.raise_for_status()
                replica.models = model_ids(await answer.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            replica.mark_down(f"health probe failed: {type(exc).__name__}: {exc}")
            return
        self._listed = True
        replica.mark_up()
        replica.probe_ms = round((time.perf_counter() - started) * 1000, 2)

    def _ensure_monitor(self) -> None:
        """Start the background prober once a loop runs (constructors must not need one).

        Restarted when it ended or belongs to another (closed) event loop.
        """
        loop = asyncio.get_running_loop()
        if self._monitor is None or self._monitor.done() or self._monitor.get_loop() is not loop:
            self._monitor = loop.create_task(self._watch(), name="tokenlean-upstream-health")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            await asyncio.gather(*(self._probe(r) for r in self.replicas.replicas), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the prober and close every pooled connection."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None and not monitor.done():
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                monitor.cancel()
            if monitor.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor
        await self._sessions.aclose()
        await self.upstream_metrics.aclose()
