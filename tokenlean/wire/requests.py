"""Wire request -> ``Request``: one conversion and one validation for every front-end.

The proxy, ``TokenleanChatModel`` and ``@optimize`` all go through ``parse_request`` (or, for the
proxy's raw bytes, the same models and ``to_request``), so the same request gets the same answer
whichever front-end sent it: an invalid value is a ``BadRequestError`` naming the field, an
unknown model an ``UnknownModelError``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from tokenlean.errors import BadRequestError, UnknownModelError
from tokenlean.middleware.types import Request
from tokenlean.wire.models import MAX_DEPTH, ChatCompletionRequest, CompletionRequest

_KNOWN = set(ChatCompletionRequest.model_fields) | set(CompletionRequest.model_fields)
# Validated here but acted on by the backend only: passed on in ``Request.extra`` as sent.
_PASSED_ON = ("user", "presence_penalty", "frequency_penalty", "logit_bias")


def check_json_values(value: Any, param: str) -> None:
    """Reject what JSON text can carry but no backend can take: NaN/Infinity and deep nesting.

    The JSON parser accepts ``NaN`` and ``1e999`` (infinity) in untyped fields; passed through, they
    break later and far from the cause (httpx refuses to encode them, so the caller would see a
    502 for its own input). Nesting is bounded so walking a value never exhausts the stack.
    Iterative on purpose: the depth check must not itself recurse.
    """
    stack: list[tuple[Any, str, int]] = [(value, param, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise BadRequestError(f"{path}: NaN and Infinity are not valid JSON numbers", param=path)
        if isinstance(item, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                field = ".".join(path.split(".")[: param.count(".") + 1 + bool(param)])  # not 64 ".0"s
                raise BadRequestError(
                    f"{field}: nested deeper than the limit of {MAX_DEPTH} levels", param=field
                )
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend(
                (child, f"{path}.{key}" if path else str(key), depth + 1)
                for key, child in pairs
                if isinstance(child, (dict, list, tuple, float))
            )


def to_request(
    body: ChatCompletionRequest | CompletionRequest, *, tenant: str | None, request_id: str
) -> Request:
    """Convert a validated wire request into a ``Request`` (unknown fields go to ``extra``)."""
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    extra = {k: v for k, v in (body.model_extra or {}).items() if k not in _KNOWN}
    check_json_values(extra, "")
    check_json_values(body.tokenlean or {}, "tokenlean")
    check_json_values(body.stream_options.model_extra if body.stream_options else {}, "stream_options")
    if isinstance(body, CompletionRequest) and body.echo:
        extra["echo"] = True
    extra.update({k: getattr(body, k) for k in _PASSED_ON if getattr(body, k) is not None})
    common: dict[str, Any] = {
        "model": body.model,
        "max_tokens": body.max_tokens if body.max_tokens is not None else body.max_completion_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "seed": body.seed,
        "stop": stop,
        "n": body.n,
        "stream": body.stream,
        "extra": extra,
        "options": body.tokenlean or {},
        "tenant": tenant,
        "request_id": request_id,
    }
    if isinstance(body, ChatCompletionRequest):
        body.check_tool_choice()
        check_json_values([m.model_dump(exclude_unset=True) for m in body.messages], "messages")
        check_json_values([t.model_dump() for t in body.tools or ()], "tools")
        check_json_values(_dump(body.response_format), "response_format")
        return Request(
            messages=tuple(m.to_message() for m in body.messages),
            logprobs=body.logprobs,
            top_logprobs=body.top_logprobs,
            tools=tuple(t.model_dump(exclude_unset=True) for t in body.tools or ()),
            tool_choice=_dump(body.tool_choice),
            parallel_tool_calls=body.parallel_tool_calls,
            response_format=_dump(body.response_format),
            **common,
        )
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise BadRequestError("prompt: exactly one prompt per request is supported", param="prompt")
        prompt = prompt[0]
    return Request(
        prompt=prompt, logprobs=body.logprobs is not None, top_logprobs=body.logprobs or None, **common
    )


def _dump(value: BaseModel | str | None) -> Any:
    """A validated sub-object back as the JSON the client sent (by alias, unset fields left out)."""
    return value.model_dump(exclude_unset=True, by_alias=True) if isinstance(value, BaseModel) else value


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list", "bytes"})


def _field_path(loc: tuple[Any, ...]) -> list[str]:
    """A pydantic location as field names: union branch tags (``str``, ``list[str]``) dropped.

    For ``stop: [null]`` pydantic reports one error per union branch (``stop.str`` and
    ``stop.list[str].0``); the deepest one, ``stop.0``, is the one that says what is wrong. A
    model branch is named by its class (``tool_choice.NamedToolChoice``): dropped too.
    """
    parts = [str(part) for part in loc]
    tags = [
        p.startswith(("function-", "constrained-")) or "[" in p or p in _TYPE_TAGS or p[:1].isupper()
        for p in parts
    ]
    return [p for p, tag in zip(parts, tags, strict=True) if not tag]  # ``NamedToolChoice``: a branch


def bad_request(exc: ValidationError) -> BadRequestError:
    """The ``BadRequestError`` (a 400) naming the first invalid field, as pydantic located it."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        error = BadRequestError(f"request body is not valid JSON: {first['msg']}")
        error.code = "invalid_json"
        return error
    same_field = [e for e in exc.errors() if e["loc"][:1] == first["loc"][:1]]  # a union's branches
    loc, msg = max(((_field_path(e["loc"]), e["msg"]) for e in same_field), key=lambda pair: len(pair[0]))
    param = ".".join(loc) or None
    error = BadRequestError(f"{param}: {msg}" if param else msg, param=param)
    error.code = "invalid_value"
    return error


def check_model(model: str, served: Collection[str]) -> None:
    """``UnknownModelError`` (a 404) unless ``model`` is one of the ``served`` names."""
    if model not in served:
        raise UnknownModelError(
            f"model {model!r} is not served here; available: {', '.join(served)}", param="model"
        )


def parse_request(
    body: Mapping[str, Any],
    kind: Literal["chat", "completion"] = "chat",
    *,
    served: Collection[str] | None = None,
    tenant: str | None = None,
    request_id: str | None = None,
) -> Request:
    """Validate an OpenAI-shaped ``body`` and convert it, as the proxy does for its HTTP bodies.

    ``served`` (the pipeline's model names) turns an unknown ``model`` into ``UnknownModelError``;
    ``stream_options`` is kept in ``Request.extra`` as the proxy keeps it.
    """
    model = ChatCompletionRequest if kind == "chat" else CompletionRequest
    try:
        wire = model.model_validate(dict(body))
    except ValidationError as exc:
        raise bad_request(exc) from None
    request = to_request(wire, tenant=tenant, request_id=request_id or uuid.uuid4().hex)
    if wire.stream_options is not None:
        request = request.replace(extra={**request.extra, "stream_options": wire.stream_options.model_dump()})
    if served is not None:
        check_model(request.model, served)
    return request
