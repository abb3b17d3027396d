"""Typed options: per stage, one pydantic model for its spec options and one for its per-call options.

A stage (or a backend) declares them as class attributes: ``spec_model`` (constructor options
in a pipeline spec) and ``options_model`` (what one call may ask, keyed by the stage's name: the
proxy's ``extra_body={"tokenlean": {name: ...}}`` and ``x-tokenlean-<name>-<option>`` headers, and
the LangChain/decorator call options). A backend that reads call options names its models in
``options_models`` (``{"draft": DraftOptions}``). Adding an option is one field in one model;
``docs/config-reference.md`` is generated from them (``python -m tokenlean.middleware.reference``).

Every place that reads options goes through these functions, so a value means the same
wherever it was written:

- ``parse_call_options``: a call's options, JSON values checked strictly (a boolean is not a
  number, a string is not a boolean, an unknown key is refused);
- ``parse_header_options``: the same from headers, whose string values are converted by each
  field's declared type (``"1"`` for an int is 1, ``"true"``/``"0"`` for a bool; JSON for a list
  or mapping field), never guessed;
- ``parse_spec_options``: constructor options from a spec file, checked as strictly.

A bad call option is a ``BadRequestError`` whose ``param`` names the path
(``tokenlean.cache.ttl``); a bad spec option a ``ConfigError`` (``stages.cache.options.ttl``).
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from tokenlean.errors import BadRequestError, ConfigError, TokenleanError

__all__ = [
    "SpecOptions",
    "StageOptions",
    "construct",
    "header_options",
    "option_models",
    "parse_call_options",
    "parse_header_options",
    "parse_spec_options",
    "validate_call_options",
    "validate_named_options",
]

M = TypeVar("M", bound=BaseModel)
HEADER_PREFIX = "x-tokenlean-"
_CONTAINERS = (Sequence, Mapping, AbstractSet)


class StageOptions(BaseModel):
    """Base of a per-call options model: unknown keys refused, values immutable.

    A field left at ``None`` means "the stage's configured default"; a caller may send ``null``
    only for the fields in ``nullable`` (elsewhere it is refused, naming the field). A shorthand
    (``"on"``, ``false``) is turned into a mapping by a ``model_validator(mode="before")``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_allowed(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("must not be null (leave it out for the stage's setting)")
        return value


class SpecOptions(BaseModel):
    """Base of a spec options model: the constructor options a spec file may set."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_call_options(model: type[M], raw: Any, *, stage: str) -> M:
    """``raw`` (``request.option(stage)``: absent, a shorthand or a mapping) as ``model``."""
    data = dict(raw) if isinstance(raw, Mapping) else ({} if raw is None else raw)
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        message, param = _describe(exc, model, f"tokenlean.{stage}")
        raise BadRequestError(message, param=param) from exc


def parse_header_options(model: type[M], values: Mapping[str, str], *, stage: str) -> dict[str, Any]:
    """Header strings converted by ``model``'s field types; the given fields only, as Python values."""
    data: dict[str, Any] = {}
    for key, text in values.items():
        field = model.model_fields.get(key)
        if field is not None and _is_container(field.annotation):
            try:
                data[key] = json.loads(text)
            except (ValueError, RecursionError) as exc:
                param = f"tokenlean.{stage}.{key}"
                raise BadRequestError(f"{param}: expected a JSON value, got {text!r}", param=param) from exc
        else:
            data[key] = text
    try:
        parsed = model.model_validate(data, strict=False)
    except ValidationError as exc:
        message, param = _describe(exc, model, f"tokenlean.{stage}")
        raise BadRequestError(message, param=param) from exc
    return {key: getattr(parsed, key) for key in data}


def parse_spec_options(model: type[M], options: Mapping[str, Any], *, where: str) -> M:
    """Spec ``options`` as ``model``; ``ConfigError`` naming ``<where>.<option>`` otherwise."""
    try:
        return model.model_validate(dict(options), strict=True)
    except ValidationError as exc:
        message, param = _describe(exc, model, where)
        raise ConfigError(message, param=param) from exc


def construct(cls: Any, options: Mapping[str, Any], *, where: str) -> Any:
    """``cls(**options)``, the options validated through ``cls.spec_model`` when it has one.

    Only the options the spec sets are passed, so the constructor's defaults stay the defaults.
    """
    model: type[BaseModel] | None = getattr(cls, "spec_model", None)
    kwargs = dict(options)
    if model is not None:
        parsed = parse_spec_options(model, options, where=where)
        kwargs = {name: getattr(parsed, name) for name in parsed.model_fields_set}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}", param=where) from exc


def header_options(headers: Iterable[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """``x-tokenlean-<stage>-<option>: value`` headers grouped by stage (``-`` in the option read as ``_``)."""
    grouped: dict[str, dict[str, str]] = {}
    for name, value in headers:
        name = name.lower()
        if not name.startswith(HEADER_PREFIX):
            continue
        stage, _, key = name[len(HEADER_PREFIX) :].partition("-")
        if stage and key:
            grouped.setdefault(stage, {})[key.replace("-", "_")] = value
    return grouped


def option_models(stages: Iterable[object], backend: object = None) -> dict[str, type[BaseModel]]:
    """The call options models of a pipeline's stages and backend, by option name."""
    models: dict[str, type[BaseModel]] = dict(getattr(backend, "options_models", None) or {})
    for stage in stages:
        model = getattr(stage, "options_model", None)
        if model is not None:
            models[getattr(stage, "name")] = model  # noqa: B009 - Stage.name is a ClassVar
    return models


def validate_call_options(
    models: Mapping[str, type[BaseModel]],
    body: Mapping[str, Any],
    headers: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """Merge header and body options (the body wins, field by field) and validate each against its model.

    Options for a registered stage that is not in ``models`` are converted and validated by its
    model all the same (a value means one thing whatever the pipeline); for a name nothing
    declares a model for, header values are kept as strings. The returned mapping is what the
    stages read; they parse it again into their typed model.
    """
    merged: dict[str, Any] = {}
    for stage, values in (headers or {}).items():
        model = models.get(stage) or _registered_model(stage)
        merged[stage] = parse_header_options(model, values, stage=stage) if model else dict(values)
    for stage, value in body.items():
        if isinstance(value, Mapping) and isinstance(merged.get(stage), dict):
            merged[stage] = {**merged[stage], **value}
        else:
            merged[stage] = value
    for stage, value in merged.items():
        model = models.get(stage) or _registered_model(stage)
        if model is not None:
            parse_call_options(model, value, stage=stage)
    return merged


def validate_named_options(options: Mapping[str, Any]) -> None:
    """Validate each value whose name is a registered stage's, through that stage's options model.

    For call options given before a pipeline is at hand (the decorator's ``call_options``, the
    LangChain model's options): a bad one fails where it is written, naming the path. A name
    that is no registered stage's (a backend's ``draft``, a custom stage) is left to its reader.
    """
    for name, value in options.items():
        model = _registered_model(name)
        if model is not None:
            parse_call_options(model, value, stage=name)


def _registered_model(name: str) -> type[BaseModel] | None:
    """The options model of the stage registered as ``name``, if there is one and it loads."""
    from tokenlean.middleware.registry import has_stage, resolve_stage

    if not has_stage(name):
        return None
    try:
        return getattr(resolve_stage(name), "options_model", None)
    except TokenleanError:  # its optional dependency is missing: nothing reads these options here
        return None


def _is_container(annotation: Any) -> bool:
    """Whether a field's type is a list or mapping (given as JSON in a header), ``None`` aside."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(_is_container(arm) for arm in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_container(typing.get_args(annotation)[0])
    target = origin or annotation
    return (
        isinstance(target, type) and issubclass(target, _CONTAINERS) and not issubclass(target, str | bytes)
    )


def _describe(exc: ValidationError, model: type[BaseModel], root: str) -> tuple[str, str]:
    """The first error as ``(message, param)``; ``param`` is ``root`` plus the option's name."""
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"]]
    param = f"{root}.{loc[0]}" if loc else root
    where = ".".join([root, *loc])
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown option; known: {', '.join(model.model_fields)}", param
    if not loc and error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        return f"{root} must be an object of options, got {error['input']!r}", param
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}, got {error['input']!r}", param
