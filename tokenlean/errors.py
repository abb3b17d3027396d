"""The one exception tree of tokenlean.

Every error the library raises on purpose is a ``TokenleanError``; foreign exceptions
(httpx, torch, redis, ...) are translated where they enter (``raise ... from exc``), so callers
catch one family. The proxy maps the tree to OpenAI error bodies in a single table
(``tokenlean.proxy.errors``), using ``status`` and ``code`` below::

    TokenleanError
    ├── ConfigError                  bad spec, bad constructor option          (500 at startup, never per request)
    │   └── MissingDependencyError   an optional package is not installed
    ├── BadRequestError              the caller's input is wrong                400
    │   ├── ContextLengthError       prompt + max_tokens exceed the context     400
    │   ├── UnknownModelError        no such model or cascade                  404
    │   └── PayloadTooLargeError     body or list over a configured limit       413
    ├── AuthenticationError          missing or wrong API key                   401
    ├── RateLimitError               per-key rate or token budget spent         429
    ├── StageError                   a stage's own failure (policy decides)     500
    └── BackendError                 the model behind us failed                 502
        ├── BackendUnavailableError  cannot connect / no healthy replica        503
        ├── BackendTimeoutError      connect, read or total timeout             504
        └── UpstreamStatusError      the upstream answered with an error status 502 (or the upstream's 4xx)
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BadRequestError",
    "ConfigError",
    "ContextLengthError",
    "MissingDependencyError",
    "PayloadTooLargeError",
    "RateLimitError",
    "StageError",
    "TokenleanError",
    "UnknownModelError",
    "UpstreamStatusError",
]


class TokenleanError(Exception):
    """Base of every error tokenlean raises on purpose.

    ``status`` and ``code`` are what the proxy sends back; ``param`` names the offending field
    where there is one, because an error that names the field is one a caller can fix.
    """

    status: int = 500
    code: str = "internal_error"
    type: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ConfigError(TokenleanError):
    """A pipeline spec, stage option or constructor argument is invalid."""

    code = "invalid_config"


class MissingDependencyError(ConfigError):
    """An optional package a feature needs is not installed; the message says which."""

    code = "missing_dependency"


class BadRequestError(TokenleanError):
    """The request itself is wrong (a field's type, value or an option)."""

    status = 400
    code = "invalid_request"
    type = "invalid_request_error"


class ContextLengthError(BadRequestError):
    """Prompt tokens plus ``max_tokens`` do not fit the model's context window."""

    code = "context_length_exceeded"


class UnknownModelError(BadRequestError):
    """The ``model`` field names no model, cascade or alias served here."""

    status = 404
    code = "model_not_found"


class PayloadTooLargeError(BadRequestError):
    """A body, message list or option exceeds a configured limit."""

    status = 413
    code = "payload_too_large"


class AuthenticationError(TokenleanError):
    """Missing or wrong API key."""

    status = 401
    code = "invalid_api_key"
    type = "authentication_error"


class RateLimitError(TokenleanError):
    """The caller's rate limit or token budget is spent; ``retry_after`` is in seconds."""

    status = 429
    code = "rate_limit_exceeded"
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float = 1.0, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after


class StageError(TokenleanError):
    """A stage failed on its own (not because of the backend below it)."""

    code = "stage_failed"

    def __init__(self, message: str, *, stage: str, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.stage = stage


class BackendError(TokenleanError):
    """The model server or embedded model failed to answer."""

    status = 502
    code = "backend_error"
    type = "upstream_error"


class BackendUnavailableError(BackendError):
    """No connection could be made, or no healthy replica is left."""

    status = 503
    code = "backend_unavailable"


class BackendTimeoutError(BackendError):
    """The backend did not answer within the configured timeout.

    ``deadline_passed`` says the request's whole time budget is spent (nothing may retry it), as
    opposed to one connect or read step timing out.
    """

    status = 504
    code = "backend_timeout"

    def __init__(self, message: str, *, param: str | None = None, deadline_passed: bool = False) -> None:
        super().__init__(message, param=param)
        self.deadline_passed = deadline_passed


class UpstreamStatusError(BackendError):
    """The upstream answered with an HTTP error status.

    A 4xx from the upstream is the caller's fault and is passed on with its status; a 5xx
    becomes a 502, because the fault is behind the proxy, not in it.
    """

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, param=param)
        self.upstream_status = upstream_status
        self.retry_after = retry_after  # seconds, from the upstream's Retry-After header
        self.status = upstream_status if 400 <= upstream_status < 500 else 502
        if 400 <= upstream_status < 500:
            self.type = "invalid_request_error"
            self.code = "upstream_rejected"
