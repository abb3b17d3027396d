"""``FunctionBackend``: a user's own function as the backend of a pipeline.

``@tokenlean.optimize`` folds its stages around one of these. The function is called with the
prompt in the shape it was written for (a string for a text prompt, a list of OpenAI-style
message dicts for a chat), after the stages rewrote it; it returns text or an OpenAI-style
response (a dict, or an object with ``model_dump()`` such as the ``openai`` client's
``ChatCompletion``).

Parameters named like OpenAI request fields (``model``, ``max_tokens``, ``temperature``,
``top_p``, ``seed``, ``stop``, ``n``) are request fields: the stages see them (a cache keys on
them) and may change them, and the function receives the values the stages settled on. Every
other argument is passed through untouched; its ``repr`` joins the request's ``extra`` so that a
response cache never answers one argument's call with another's result (``self``/``cls`` of a
decorated method excepted).

Failure mode: the function is opaque. A stage that wants logprobs, or a backend's batching,
gets neither; the usage counts are whatever the function's response reports (zero for text).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tokenlean.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    TokenleanError,
    UpstreamStatusError,
)
from tokenlean.middleware.stage import Capabilities
from tokenlean.middleware.types import Choice, Chunk, Message, Request, Response, Usage
from tokenlean.wire import parse_request

__all__ = ["BoundCall", "FunctionBackend", "backend_error"]

_FIELDS = ("model", "max_tokens", "temperature", "top_p", "seed", "stop", "n")
# ``self``/``cls`` of a decorated method: not the prompt, and not part of a cache key (an object's
# repr usually shows its id, which would make every instance miss).
_RECEIVERS = ("self", "cls")
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
# The arguments of the call in flight that are not the prompt or a request field. A context
# variable, not a request field: they may be any object (a client, a callback), which no stage
# should have to copy or serialise.
_passthrough: ContextVar[Mapping[str, Any]] = ContextVar(
    "tokenlean_function_arguments", default=MappingProxyType({})
)


@dataclass(frozen=True, slots=True)
class BoundCall:
    """One call of the decorated function: the request the stages see, and everything else."""

    request: Request
    passthrough: Mapping[str, Any]

    async def run(self, handler: Callable[[Request], Any]) -> Response:
        """Await ``handler(request)`` with this call's pass-through arguments in context."""
        token = _passthrough.set(self.passthrough)
        try:
            return await handler(self.request)  # type: ignore[no-any-return]
        finally:
            _passthrough.reset(token)


class FunctionBackend:
    """Call ``fn`` (sync or async) as the model behind a pipeline."""

    capabilities = Capabilities(streaming=True, logprobs=False, n=True, batching=False)

    def __init__(self, fn: Callable[..., Any], *, model: str | None = None) -> None:
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(inspect.unwrap(fn))
        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        if params and params[0].name in _RECEIVERS:  # a method: the prompt comes after self/cls
            params = params[1:]
        if not params or params[0].kind not in _POSITIONAL:
            raise ConfigError(
                f"{getattr(fn, '__qualname__', fn)!r}: the first parameter must take the prompt "
                "(a string or a message list)",
                param="fn",
            )
        self.prompt_param = params[0].name
        self.field_params = tuple(name for name in self.signature.parameters if name in _FIELDS)
        self.model: str = model or str(getattr(fn, "__qualname__", "function"))
        # What ``fn`` returned last (its type, and chat or text completion), so the decorator can
        # answer a cache hit, which never calls ``fn``, in the same shape.
        self.last_result_type: type | None = None
        self.last_was_text_completion = False

    def models(self) -> list[str]:
        """The function's name (or the ``model`` given) is the one model served."""
        return [self.model]

    async def aclose(self) -> None:
        """Nothing to release: the function owns its clients."""

    def bind(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, options: Mapping[str, Any]
    ) -> BoundCall:
        """Turn a call of the decorated function into a ``Request`` plus pass-through arguments.

        A call that does not match the signature raises ``TypeError`` here, before any stage
        runs, exactly as calling the undecorated function would.
        """
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        prompt = arguments.pop(self.prompt_param)
        fields = {name: arguments.pop(name) for name in self.field_params}
        keyed = sorted((name, value) for name, value in arguments.items() if name not in _RECEIVERS)
        extra = {"function_arguments": repr(keyed)} if keyed else {}
        body = {
            **_prompt_fields(prompt, self.prompt_param),
            **_request_fields(fields, default_model=self.model),
        }
        # The proxy's validation (a bad value is a BadRequestError naming the field). The model is
        # not checked against a list: a function with a ``model`` parameter is given any name.
        request = parse_request(body, "completion" if "prompt" in body else "chat")
        return BoundCall(request.replace(extra={**request.extra, **extra}, options=options), arguments)

    async def complete(self, request: Request) -> Response:
        """Call the function with ``request``'s prompt; stream the answer if asked to."""
        if request.stream:
            response = await self.complete(request.replace(stream=False))
            return response.replace(choices=(), stream=_as_stream(response))
        if request.n > 1 and "n" not in self.field_params:
            parts = await asyncio.gather(
                *(self._complete_one(request.replace(n=1)) for _ in range(request.n))
            )
            choices = tuple(
                Choice(i, p.choices[0].text, p.choices[0].finish_reason) for i, p in enumerate(parts)
            )
            usage = sum((p.usage for p in parts), Usage())
            return Response(model=parts[0].model, choices=choices, usage=usage)
        return await self._complete_one(request)

    async def _complete_one(self, request: Request) -> Response:
        args, kwargs = self._arguments(request)
        try:
            if self.is_async:
                result = await self.fn(*args, **kwargs)
            else:  # a worker thread: a blocking client must not stall the event loop
                result = await asyncio.to_thread(self.fn, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise backend_error(exc) from exc
        response = _to_response(result, default_model=request.model or self.model)
        self.last_result_type = type(result)
        self.last_was_text_completion = _is_text_completion(result)
        return response

    def _arguments(self, request: Request) -> tuple[tuple[Any, ...], dict[str, Any]]:
        values = {**_defaults(self.signature), **_passthrough.get()}
        values[self.prompt_param] = request.prompt if request.prompt is not None else _message_dicts(request)
        for name in self.field_params:
            value = getattr(request, name)
            values[name] = list(value) if name == "stop" else value
        ordered = {name: values[name] for name in self.signature.parameters if name in values}
        bound = inspect.BoundArguments(self.signature, ordered)
        return bound.args, bound.kwargs


def backend_error(exc: BaseException) -> TokenleanError:
    """Translate a foreign exception from the function or model into tokenlean's tree.

    A tokenlean error is kept as it is. A foreign one is classified by what it carries (an HTTP
    ``status_code``, as the ``openai`` and ``httpx`` errors do) or by its family (timeouts,
    connection failures), so ``except tokenlean.BackendTimeoutError`` works whatever client the
    user's function calls.
    """
    if isinstance(exc, TokenleanError):
        return exc
    message = f"{type(exc).__name__}: {exc}"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return UpstreamStatusError(message, upstream_status=status)
    family = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, TimeoutError) or any("Timeout" in name for name in family):
        return BackendTimeoutError(message)
    if isinstance(exc, ConnectionError) or any("Connection" in name for name in family):
        return BackendUnavailableError(message)
    return BackendError(message)


def _defaults(signature: inspect.Signature) -> dict[str, Any]:
    return {n: p.default for n, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}


def _prompt_fields(prompt: Any, param: str) -> dict[str, Any]:
    if isinstance(prompt, str):
        return {"prompt": prompt}
    if isinstance(prompt, (list, tuple)):
        return {"messages": [_message(m, f"{param}[{i}]") for i, m in enumerate(prompt)]}
    raise TypeError(f"{param} must be a prompt string or a list of messages, not {type(prompt).__name__}")


def _message(item: Any, param: str) -> dict[str, Any]:
    """One message as the OpenAI dict the proxy would receive (a ``Message`` converted back)."""
    if isinstance(item, Message):
        fields = {"name": item.name, "tool_call_id": item.tool_call_id}
        out = {**item.extra, "role": item.role, "content": item.wire_content()}
        if item.tool_calls:
            out["tool_calls"] = [dict(call) for call in item.tool_calls]
        return {**out, **{k: v for k, v in fields.items() if v is not None}}
    if not isinstance(item, Mapping) or "role" not in item:
        raise TypeError(f"{param} must be a message dict with 'role' and 'content'")
    return dict(item)


def _request_fields(fields: Mapping[str, Any], *, default_model: str) -> dict[str, Any]:
    values = {name: value for name, value in fields.items() if value is not None}
    values.setdefault("model", default_model)
    return values


def _message_dicts(request: Request) -> list[dict[str, Any]]:
    """The messages the function receives: what the caller sent, after the stages' rewrites."""
    return [_message(m, "messages") for m in request.messages]


def _to_response(result: Any, *, default_model: str) -> Response:
    """A ``Response`` from text or an OpenAI-style (chat) completion, dict or client object."""
    if isinstance(result, str):
        return Response(model=default_model, choices=(Choice(0, result, "stop"),))
    body = result.model_dump() if hasattr(result, "model_dump") else result
    if not isinstance(body, Mapping) or not isinstance(body.get("choices"), list):
        raise BackendError(
            f"the function returned {type(result).__name__}; expected text or an OpenAI-style response with choices"
        )
    choices = tuple(_choice(i, c) for i, c in enumerate(body["choices"]))
    usage = body.get("usage") or {}
    return Response(
        model=body.get("model") or default_model,
        choices=choices,
        usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
    )


def _is_text_completion(result: Any) -> bool:
    body = result.model_dump() if hasattr(result, "model_dump") else result
    return isinstance(body, Mapping) and body.get("object") == "text_completion"


def _choice(position: int, choice: Mapping[str, Any]) -> Choice:
    message = choice.get("message")
    text = message.get("content") if isinstance(message, Mapping) else choice.get("text")
    return Choice(int(choice.get("index", position)), text or "", choice.get("finish_reason") or "stop")


async def _as_stream(response: Response) -> AsyncIterator[Chunk]:
    for choice in response.choices:
        yield Chunk(choice.index, choice.text)
        yield Chunk(choice.index, "", choice.finish_reason)
    yield Chunk(usage=response.usage)
