"""``@tokenlean.optimize``: tokenlean's stages around a function you already have.

The decorated function becomes the backend of a pipeline (``FunctionBackend``); every call goes
through the configured stages (cache, demonstrations, compression, ...) before the function is
called, if it is called at all (a cache hit skips it). The decorator returns a *new* function with
the same signature, name, docstring and type hints (``functools.wraps``); it never patches the
function, its client or any module, which is the failure of call-patching libraries that assign
``client.chat.completions.create`` in place.

An async function gets an async wrapper awaited on the caller's loop. A sync one gets a sync
wrapper that goes through the one sync bridge (``tokenlean.middleware.sync.run_sync``); the
function itself then runs on a worker thread, so a blocking client never stalls the bridge.

Per-call options are set for a block of code with ``call_options(...)`` (a context variable, so
concurrent tasks and threads each keep their own); the block's record holds what the calls in it
answered, with the stages' events.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar, cast

from tokenlean.errors import ConfigError
from tokenlean.integrations.convert import load_spec, merge_options, parse_options
from tokenlean.integrations.function import FunctionBackend
from tokenlean.middleware.pipeline import FailurePolicy, Pipeline
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.stage import Stage
from tokenlean.middleware.sync import run_sync
from tokenlean.middleware.types import Event, Response
from tokenlean.wire import chat_response, completion_response

__all__ = ["CallRecord", "call_options", "optimize"]

P = ParamSpec("P")
R = TypeVar("R")

_options: ContextVar[Mapping[str, Any]] = ContextVar("tokenlean_call_options", default=MappingProxyType({}))
_records: ContextVar[tuple[CallRecord, ...]] = ContextVar("tokenlean_call_records", default=())


@dataclass
class CallRecord:
    """The responses of the decorated calls made inside one ``call_options`` block, oldest first."""

    responses: list[Response] = field(default_factory=list)

    @property
    def response(self) -> Response:
        """The latest response; ``LookupError`` if no decorated call has finished in the block."""
        if not self.responses:
            raise LookupError("no decorated call has finished inside this call_options block")
        return self.responses[-1]

    @property
    def events(self) -> tuple[Event, ...]:
        """What the stages did on the latest call (cache hit, tokens removed, ...)."""
        return self.response.events


@contextmanager
def call_options(options: Mapping[str, Any] | None = None, /, **stages: Any) -> Iterator[CallRecord]:
    """Per-call options for the decorated calls inside the block, keyed by stage name.

    ``call_options(demos={"k": 2}, sot="off")`` or ``call_options({"demos": {"k": 2}})``: the
    shape of the proxy's ``extra_body={"tokenlean": ...}``. Blocks nest; an inner block's values
    win field by field. A wrong shape raises ``BadRequestError`` on entry.
    """
    layer = merge_options(parse_options(options), parse_options(stages))
    record = CallRecord()
    options_token = _options.set(merge_options(_options.get(), layer))
    records_token = _records.set((*_records.get(), record))
    try:
        yield record
    finally:
        _records.reset(records_token)
        _options.reset(options_token)


def optimize(
    *,
    stages: Sequence[Stage] = (),
    spec: PipelineSpec | Mapping[str, Any] | str | Path | None = None,
    policies: Mapping[str, FailurePolicy] | None = None,
    default_policy: FailurePolicy = "bypass",
    model: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run ``stages`` (or the stages of ``spec``; with neither, the lean default profile) around
    the decorated function. ``optimize(spec={"profile": "off"})`` runs no stage.

    The function takes the prompt (a string, or a list of OpenAI-style message dicts) as its first
    parameter and returns text or an OpenAI-style response. The wrapper returns what the return
    annotation says (``str``, a dict, or a pydantic class such as ``openai``'s ``ChatCompletion``),
    or, unannotated, the kind the function last returned. ``model`` names the function in
    responses and cache keys (default: its qualified name). Errors are tokenlean's typed
    exceptions; a foreign one raised by the function becomes a ``BackendError`` (or a subclass)
    whose ``__cause__`` is the original.
    """
    if stages and spec is not None:
        raise ConfigError("give either stages or spec, not both", param="spec")

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        backend = FunctionBackend(fn, model=model)
        return _wrap(fn, backend, _pipeline(backend, stages, spec, policies, default_policy))

    return decorate


def _wrap(fn: Callable[P, R], backend: FunctionBackend, pipeline: Pipeline) -> Callable[P, R]:
    """The new function: an async wrapper for an async ``fn``, a sync one (via the bridge) otherwise."""
    output = functools.partial(_output, _declared_output(fn), backend)
    if backend.is_async:

        @functools.wraps(fn)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            call = backend.bind(args, kwargs, options=_options.get())
            return output(_record(await call.run(pipeline)))

        wrapper: Any = call_async
    else:

        @functools.wraps(fn)
        def call_sync(*args: Any, **kwargs: Any) -> Any:
            call = backend.bind(args, kwargs, options=_options.get())
            return output(_record(run_sync(call.run(pipeline))))

        wrapper = call_sync
    wrapper.pipeline = pipeline  # to inspect its stages, or ``await f.pipeline.aclose()``
    return cast(Callable[P, R], wrapper)


def _pipeline(
    backend: FunctionBackend,
    stages: Sequence[Stage],
    spec: PipelineSpec | Mapping[str, Any] | str | Path | None,
    policies: Mapping[str, FailurePolicy] | None,
    default_policy: FailurePolicy,
) -> Pipeline:
    if spec is None and not stages and not policies:
        spec = {"profile": "lean"}  # no stages named: the default profile, as `tokenlean serve` runs
    if spec is None:
        return Pipeline(backend, stages, policies=policies, default_policy=default_policy)
    if policies:
        raise ConfigError("with spec, set each stage's policy in the spec", param="policies")
    parsed = load_spec(spec)
    if "backend" in parsed.model_fields_set:
        raise ConfigError(
            "the decorated function is the backend: remove `backend` from the spec", param="backend"
        )
    return parsed.build(backend=backend)


def _record(response: Response) -> Response:
    for record in _records.get():
        record.responses.append(response)
    return response


def _declared_output(fn: Callable[..., Any]) -> type | None:
    """The output kind the return annotation asks for, or None (unannotated or unresolvable)."""
    try:
        annotation = typing.get_type_hints(fn).get("return")
    except (NameError, TypeError, AttributeError):  # a type not importable here: mirror instead
        return None
    origin = typing.get_origin(annotation) or annotation
    if not isinstance(origin, type):
        return None
    if issubclass(origin, str) or issubclass(origin, Mapping) or hasattr(origin, "model_validate"):
        return origin
    return None


def _output(declared: type | None, backend: FunctionBackend, response: Response) -> Any:
    kind = declared or backend.last_result_type or str
    if issubclass(kind, str):
        return response.text
    # The proxy's own JSON, so the three front-ends answer alike (events in a ``tokenlean`` field).
    body = completion_response(response) if _text_completion(kind, backend) else chat_response(response)
    return kind.model_validate(body) if hasattr(kind, "model_validate") else body


def _text_completion(kind: type, backend: FunctionBackend) -> bool:
    """A text completion body if the declared class says so (openai's ``Completion``) or the function
    answered one last; a chat completion otherwise."""
    field = getattr(kind, "model_fields", {}).get("object")
    if field is not None:
        return "text_completion" in typing.get_args(field.annotation)
    return backend.last_was_text_completion
