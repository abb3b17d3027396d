"""Typed options: one model per stage for its call options and its spec options, errors naming the path."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from tokenlean.backends.fake import FakeBackend
from tokenlean.backends.local.drafting.session import DraftOptions
from tokenlean.cache.options import CacheOptions
from tokenlean.compressors.options import CompressCallOptions
from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.integrations.convert import parse_options
from tokenlean.middleware.options import (
    SpecOptions,
    header_options,
    parse_call_options,
    parse_header_options,
    validate_call_options,
)
from tokenlean.middleware.reference import render
from tokenlean.middleware.registry import register_stage, resolve_stage, stage_names
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Request, Response
from tokenlean.reasoning.cascade.stage import CascadeCallOptions
from tokenlean.reasoning.sot.options import SotCallOptions

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("model", "stage", "raw", "param"),
    [
        (CacheOptions, "cache", {"ttl": True}, "tokenlean.cache.ttl"),  # a boolean is not a number
        (CacheOptions, "cache", {"ttl": "3"}, "tokenlean.cache.ttl"),  # a body value is JSON: "3" is a string
        (CacheOptions, "cache", {"no_store": "true"}, "tokenlean.cache.no_store"),
        (CacheOptions, "cache", {"nocache": True}, "tokenlean.cache.nocache"),
        (CacheOptions, "cache", "yes", "tokenlean.cache"),
        (CompressCallOptions, "compress", {"target_tokens": 10.5}, "tokenlean.compress.target_tokens"),
        (CompressCallOptions, "compress", {"protect": "ACME"}, "tokenlean.compress.protect"),
        (CascadeCallOptions, "cascade", {"thresholds": [True]}, "tokenlean.cascade.thresholds"),
        (CascadeCallOptions, "cascade", {"enabled": "no"}, "tokenlean.cascade.enabled"),
        (DraftOptions, "draft", "fast", "tokenlean.draft"),  # a bad shorthand names the option itself
        (DraftOptions, "draft", {"mode": "fast"}, "tokenlean.draft.mode"),
    ],
)
def test_bad_call_options_name_the_path(model: Any, stage: str, raw: Any, param: str) -> None:
    with pytest.raises(BadRequestError) as info:
        parse_call_options(model, raw, stage=stage)
    assert info.value.param == param and info.value.status == 400 and param in info.value.message


def test_shorthands_are_the_models_own() -> None:
    assert parse_call_options(CacheOptions, None, stage="cache") == CacheOptions()
    assert parse_call_options(CacheOptions, True, stage="cache") == CacheOptions()
    assert parse_call_options(CacheOptions, False, stage="cache").enabled is False
    assert parse_call_options(CompressCallOptions, False, stage="compress").off is True
    assert parse_call_options(CascadeCallOptions, "cheap", stage="cascade").cascade == "cheap"
    assert parse_call_options(CascadeCallOptions, False, stage="cascade").enabled is False
    assert parse_call_options(DraftOptions, "lookup", stage="draft").mode == "lookup"
    assert parse_call_options(CacheOptions, {"ttl": 2}, stage="cache").ttl == 2.0  # an int is a number


def test_header_strings_are_converted_by_the_declared_type() -> None:
    cache = parse_header_options(
        CacheOptions, {"ttl": "1", "no_store": "yes", "semantic": "0", "namespace": "123"}, stage="cache"
    )
    assert cache == {"ttl": 1.0, "no_store": True, "semantic": False, "namespace": "123"}
    assert type(cache["ttl"]) is float  # the old guessing made "1" the boolean True
    compress = parse_header_options(CompressCallOptions, {"protect": '["ACME-42"]'}, stage="compress")
    assert list(compress["protect"]) == ["ACME-42"]
    cascade = parse_header_options(
        CascadeCallOptions, {"thresholds": "[0.5, 1]", "cascade": "7"}, stage="cascade"
    )
    assert list(cascade["thresholds"]) == [0.5, 1.0] and cascade["cascade"] == "7"  # a name stays a string
    for values, param in (
        ({"ttl": "soon"}, "tokenlean.cache.ttl"),
        ({"no_cache": "maybe"}, "tokenlean.cache.no_cache"),
        ({"nocache": "1"}, "tokenlean.cache.nocache"),
    ):
        with pytest.raises(BadRequestError) as info:
            parse_header_options(CacheOptions, values, stage="cache")
        assert info.value.param == param
    with pytest.raises(BadRequestError) as bad_json:
        parse_header_options(CompressCallOptions, {"protect": "[unclosed"}, stage="compress")
    assert bad_json.value.param == "tokenlean.compress.protect"


def test_headers_group_by_stage_and_the_body_wins_field_by_field() -> None:
    grouped = header_options(
        [("X-Tokenlean-Cache-No-Store", "1"), ("x-tokenlean-cache-ttl", "5"), ("x-other", "1")]
    )
    assert grouped == {"cache": {"no_store": "1", "ttl": "5"}}
    merged = validate_call_options({"cache": CacheOptions}, {"cache": {"ttl": 9}}, grouped)
    assert merged == {"cache": {"no_store": True, "ttl": 9}}
    # a name no model is declared for: header values stay strings (nothing guesses their type)
    assert validate_call_options({}, {}, {"mystery": {"n": "1"}}) == {"mystery": {"n": "1"}}


def test_integration_call_options_are_validated_where_given() -> None:
    assert parse_options({"cache": {"ttl": 5}, "mystery": 1}) == {"cache": {"ttl": 5}, "mystery": 1}
    with pytest.raises(BadRequestError) as info:
        parse_options({"compress": {"rate": 2}})
    assert info.value.param == "tokenlean.compress.rate"


class GreeterSpec(SpecOptions):
    text: str = Field(default="!", description="Appended to the answer.")
    times: int = Field(default=1, ge=1, description="How often.")


class Greeter:
    name: ClassVar[str] = "greeter"
    spec_model: ClassVar[type[GreeterSpec]] = GreeterSpec

    def __init__(self, *, text: str = "!", times: int = 1) -> None:
        self.text, self.times = text, times

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        return await call_next(request)


register_stage("greeter", Greeter)


@pytest.mark.parametrize(
    ("options", "param", "says"),
    [
        ({"txt": "?"}, "stages.greeter.options.txt", "unknown option; known: text, times"),
        ({"times": "2"}, "stages.greeter.options.times", "valid integer"),
        ({"times": 0}, "stages.greeter.options.times", "greater than or equal to 1"),
        ({"text": 5}, "stages.greeter.options.text", "valid string"),
    ],
)
def test_spec_options_are_validated_at_startup(options: dict[str, Any], param: str, says: str) -> None:
    spec = PipelineSpec.parse(
        {"backend": {"type": "fake"}, "stages": [{"type": "greeter", "options": options}]}
    )
    with pytest.raises(ConfigError) as info:
        spec.build(FakeBackend())
    assert info.value.param == param and says in info.value.message


def test_spec_passes_only_the_options_it_sets() -> None:
    spec = {"stages": [{"type": "greeter", "options": {"times": 3}}]}
    stage = PipelineSpec.parse(spec).build(FakeBackend()).stages[0]
    assert (stage.text, stage.times) == ("!", 3)  # type: ignore[attr-defined]


def test_builtin_spec_options_are_checked_before_anything_is_built() -> None:
    for options, param in (({"rate": "half"}, "rate"), ({"ratio": 0.5}, "ratio"), ({"mode": "zip"}, "mode")):
        spec = PipelineSpec.parse({"stages": [{"type": "compress", "options": options}]})
        with pytest.raises(ConfigError) as info:
            spec.build(FakeBackend())
        assert info.value.param == f"stages.compress.options.{param}"


@pytest.mark.parametrize(("word", "mode"), [("on", "on"), ("off", "off"), ("auto", "auto"), ("'on'", "on")])
def test_yaml_on_and_off_are_sot_modes_not_booleans(tmp_path: Path, word: str, mode: str) -> None:
    """YAML 1.1 reads a bare on/off as a boolean; a spec's ``mode: on`` still means "on"."""
    path = tmp_path / "spec.yaml"
    path.write_text(f"backend: {{type: fake}}\nstages:\n  - type: sot\n    options: {{mode: {word}}}\n")
    stage = PipelineSpec.from_file(path).build().stages[0]
    assert stage.mode == mode  # type: ignore[attr-defined]
    assert parse_call_options(SotCallOptions, mode == "on", stage="sot").mode == (
        "on" if mode == "on" else "off"
    )
    with pytest.raises(BadRequestError) as info:
        parse_call_options(SotCallOptions, "sometimes", stage="sot")
    assert info.value.param == "tokenlean.sot"


def test_spec_models_agree_with_the_constructors() -> None:
    """A spec option is a constructor argument with the same default (no second source of truth)."""
    for name in stage_names():
        cls = resolve_stage(name)
        model = getattr(cls, "spec_model", None)
        if model is None or hasattr(cls, "from_spec"):
            continue
        parameters = inspect.signature(cls.__init__).parameters
        for option, field in model.model_fields.items():
            assert option in parameters, f"{name}: spec option {option} is no constructor argument"
            default = parameters[option].default
            expected = list(default) if isinstance(default, tuple) else default
            given = list(field.default) if isinstance(field.default, tuple) else field.default
            assert given == expected, f"{name}.{option}: spec default {given!r} != constructor {expected!r}"


def test_config_reference_is_current() -> None:
    written = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert written == render(), "stale: python -m tokenlean.middleware.reference > docs/config-reference.md"
