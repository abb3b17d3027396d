"""The OpenAI-compatible proxy: a FastAPI app factory over one ``Pipeline``.

Routes are thin: read and validate the body, convert it to a ``Request``, await the pipeline,
convert the ``Response`` back (JSON, or SSE ending in ``data: [DONE]``). Stage events go back in
``x-tokenlean-*`` headers and in a ``tokenlean`` field, which the official client ignores.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.responses import Response as HTTPResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tokenlean.errors import TokenleanError
from tokenlean.ledger import Ledger
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.proxy.auth import ApiKeys
from tokenlean.proxy.dashboard import add_dashboard
from tokenlean.proxy.errors import error_response, http_error_response
from tokenlean.proxy.handler import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_MESSAGES,
    DEFAULT_MAX_OPTION_BYTES,
    ProxyHandler,
)
from tokenlean.proxy.health_port import HealthListener
from tokenlean.proxy.limits import Limits, TenantLimits
from tokenlean.wire import (
    ChatCompletionRequest,
    CompletionRequest,
    ErrorResponse,
)

__all__ = ["create_app"]

log = logging.getLogger("tokenlean.proxy")


def create_app(
    pipeline: Pipeline,
    *,
    api_keys: Sequence[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    limits: Limits | None = None,
    max_option_bytes: int = DEFAULT_MAX_OPTION_BYTES,
    health: HealthListener | None = None,
    ledger: Ledger | None = None,
    relay: bool = True,
    warm_up: bool = True,
) -> FastAPI:
    """Build the proxy app around ``pipeline`` (closed when the app shuts down).

    ``limits`` sets per-tenant request and token rates (a tenant is an API key, or everyone when
    no keys are configured); bodies over ``max_body_bytes`` and message lists over
    ``max_messages`` are refused with a 413 naming the limit, and so are per-call stage options
    (``tokenlean`` in the body plus ``x-tokenlean-*`` headers) over ``max_option_bytes`` as JSON.
    ``health`` (a ``HealthListener``) serves liveness on its own port while the app runs.
    ``ledger`` records every answered request (``tokenlean.ledger``); ``/dashboard`` shows it.
    ``warm_up``: the stages load their models and data at startup (``Pipeline.warm_up``), before
    the server accepts connections, so the first requests do not pay for loading them.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        beat = asyncio.create_task(health.beat()) if health is not None else None
        if health is not None:
            health.start()
        if warm_up:
            started = time.perf_counter()
            await pipeline.warm_up()
            log.info("stages warmed up in %.1f s", time.perf_counter() - started)
        try:
            yield
        finally:
            if beat is not None and health is not None:
                beat.cancel()
                health.stop()
            await pipeline.aclose()
            await proxy.limits.aclose()

    app = ProxyApp(title="tokenlean", version="0.1.0", lifespan=lifespan)
    app.add_exception_handler(StarletteHTTPException, http_error_response)  # 404/405 as OpenAI errors
    proxy = ProxyHandler(
        pipeline,
        ApiKeys(api_keys or ()),
        max_body_bytes,
        max_messages,
        limits or TenantLimits(),
        max_option_bytes=max_option_bytes,
    )
    proxy.relay = relay  # streams no stage acts on go out as the upstream's bytes (tokenlean.proxy.relay)
    app.state.proxy = proxy
    app.proxy = proxy
    app.state.metrics = proxy.metrics
    _add_routes(app, proxy)
    if ledger is not None:
        proxy.ledger = ledger
        proxy.metrics.registry.register(ledger)  # its totals on /metrics
        add_dashboard(app, proxy.keys, ledger)
    return app


class ProxyApp(FastAPI):
    """FastAPI, with a POST to a completion route handed to the ``ProxyHandler`` directly.

    Profiled on a pass-through stream (bench/proxy_overhead_profile.py), the way there through
    Starlette and FastAPI (six middlewares, the router, the endpoint wrapper; each ``send`` back
    through three of them) cost more than the handler's own parsing. The handler catches every
    error into an OpenAI error body itself, so those layers add nothing on these two routes;
    they stay declared for the OpenAPI document and every other method (405), and any other
    path or method (``/v1/models``, a ``root_path`` deployment) goes through FastAPI as before.
    """

    proxy: ProxyHandler | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.proxy is not None:
            route = _COMPLETION_ROUTES.get(scope["path"])
            if route is not None:
                scope["app"] = self
                response = await self.proxy.handle(HTTPRequest(scope, receive), *route)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


_COMPLETION_ROUTES: dict[str, tuple[type, str]] = {
    "/v1/chat/completions": (ChatCompletionRequest, "chat"),
    "/v1/completions": (CompletionRequest, "completion"),
}


def _add_routes(app: FastAPI, proxy: ProxyHandler) -> None:
    defs: dict[str, Any] = {}

    def body_schema(model: type) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")  # type: ignore[attr-defined]
        defs.update(schema.pop("$defs", {}))  # published under components, where the $refs point
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}

    answers: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The answer, or with stream=true an SSE stream",
            "content": {"text/event-stream": {}},
        },
        **{code: {"model": ErrorResponse, "description": "OpenAI error body"} for code in _ERROR_STATUSES},
    }

    @app.post("/v1/chat/completions", openapi_extra=body_schema(ChatCompletionRequest), responses=answers)
    async def chat_completions(http: HTTPRequest) -> HTTPResponse:
        return await proxy.handle(http, ChatCompletionRequest, "chat")

    @app.post("/v1/completions", openapi_extra=body_schema(CompletionRequest), responses=answers)
    async def completions(http: HTTPRequest) -> HTTPResponse:
        return await proxy.handle(http, CompletionRequest, "completion")

    _publish_schemas(app, defs)

    @app.get("/v1/models", responses={401: {"model": ErrorResponse, "description": "OpenAI error body"}})
    async def models(http: HTTPRequest) -> HTTPResponse:
        try:
            proxy.keys.tenant(http.headers.get("authorization"))
        except TokenleanError as exc:
            return error_response(exc)
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "tokenlean"} for m in proxy.model_names()
        ]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: the proxy answers (200 even when the upstreams are down; see ``/ready``)."""
        return {"status": "ok", "models": proxy.model_names(), "backend": await proxy.backend_health()}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Readiness for a load balancer: 503 while no upstream can take a request."""
        detail = await proxy.backend_health()
        usable = detail.get("status", "ok") != "unavailable"
        return JSONResponse(
            {"status": "ready" if usable else "unavailable", "backend": detail},
            status_code=200 if usable else 503,
        )

    @app.get("/metrics", response_class=PlainTextResponse)  # the OpenAPI document says text, not JSON
    async def metrics() -> HTTPResponse:
        body = await proxy.metrics.scrape(proxy.pipeline.backend)  # + the upstreams' own figures
        return HTTPResponse(body, media_type="text/plain; version=0.0.4")


_ERROR_STATUSES = (400, 401, 404, 413, 429, 500, 502, 503, 504)


def _publish_schemas(app: FastAPI, defs: dict[str, Any]) -> None:
    """Add the request models' nested schemas to the OpenAPI document's ``components``."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # caches itself in app.openapi_schema
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
