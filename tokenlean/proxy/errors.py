"""The one table from exceptions to OpenAI error bodies ``{"error": {message, type, param, code}}``.

Bad input is a 4xx that names the field; anything unexpected is a 500 with a generic message
and the details only in the server log, never a stack trace to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from tokenlean.errors import RateLimitError, TokenleanError
from tokenlean.wire import bad_request

__all__ = ["error_body", "error_response", "from_validation_error", "http_error_response"]

log = logging.getLogger("tokenlean.proxy")


def error_body(message: str, *, type: str, code: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error JSON."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(exc: Exception, *, request_id: str | None = None) -> JSONResponse:
    """The HTTP response for ``exc``; unexpected exceptions become an opaque 500."""
    headers = {"x-request-id": request_id} if request_id else {}
    if isinstance(exc, TokenleanError):
        if isinstance(exc, RateLimitError):
            headers["retry-after"] = str(max(1, round(exc.retry_after)))
        body = error_body(exc.message, type=exc.type, code=exc.code, param=exc.param)
        return JSONResponse(body, status_code=exc.status, headers=headers)
    log.error("unhandled error (request %s)", request_id, exc_info=exc)
    body = error_body("internal server error", type="server_error", code="internal_error")
    return JSONResponse(body, status_code=500, headers=headers)


async def http_error_response(request: Any, exc: Exception) -> JSONResponse:
    """Starlette's own errors (an unknown path, a wrong method) in OpenAI's shape, not ``{"detail"}``."""
    status = int(getattr(exc, "status_code", 500))
    detail = str(getattr(exc, "detail", "") or "error")
    code = detail.lower().replace(" ", "_") if status < 500 else "internal_error"
    body = error_body(detail, type="invalid_request_error" if status < 500 else "server_error", code=code)
    return JSONResponse(body, status_code=status, headers=getattr(exc, "headers", None))


def from_validation_error(exc: ValidationError, *, request_id: str | None = None) -> JSONResponse:
    """A 400 naming the first invalid field (``messages.0.role``): the one conversion every front-end uses."""
    return error_response(bad_request(exc), request_id=request_id)
