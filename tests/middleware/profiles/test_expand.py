"""Profiles are data merged with a user's spec by fixed rules (pure logic: no model is built)."""

from __future__ import annotations

import pytest

from tokenlean.cli import build_parser
from tokenlean.errors import ConfigError
from tokenlean.middleware.profiles import PROFILES, STAGE_ORDER, expand, load_profile
from tokenlean.middleware.spec import PipelineSpec


def _types(spec: PipelineSpec) -> list[str]:
    return [s.type for s in spec.resolved().stages]


def test_lean_runs_cache_compress_sot_and_leaves_unconfigured_stages_out() -> None:
    spec = PipelineSpec(profile="lean").resolved()
    assert [s.type for s in spec.stages] == ["cache", "compress", "sot"]
    compress = spec.stages[1].options
    assert compress["min_prompt_tokens"] == 800
    assert "system" not in compress["roles"]  # the system prompt is never rewritten
    assert spec.stages[0].options["deterministic_only"] is True
    assert spec.stages[2].options["mode"] == "auto"
    assert spec.backend.options == {"draft": "auto", "prefix_cache_entries": 8}


def test_off_is_the_plain_proxy() -> None:
    spec = PipelineSpec.parse({"profile": "off"}).resolved()
    assert spec.stages == []
    assert spec.backend.options == {"draft": "off", "prefix_cache_entries": 0}


def test_demos_and_cascade_join_only_when_configured_and_in_the_fixed_order() -> None:
    spec = PipelineSpec.parse(
        {
            "profile": "lean",
            "stages": [
                {"type": "cascade", "options": {"cascades": {"c": {}}}},
                {"type": "demos", "options": {"pools": {"sst2": "x"}}},
            ],
        }
    )
    assert _types(spec) == ["cache", "demos", "compress", "sot", "cascade"]
    demos = spec.resolved().stages[1]
    assert demos.options == {"threshold": "auto", "k": 2, "pools": {"sst2": "x"}}  # the gate stays on


def test_user_options_and_policy_win_key_by_key() -> None:
    spec = PipelineSpec.parse(
        {
            "profile": "lean",
            "stages": [{"type": "compress", "policy": "raise", "options": {"min_prompt_tokens": 2000}}],
        }
    )
    compress = spec.resolved().stages[1]
    assert compress.policy == "raise"
    assert compress.options["min_prompt_tokens"] == 2000
    assert compress.options["roles"] == ["tool", "user"]


def test_user_backend_options_win_over_the_profile() -> None:
    spec = PipelineSpec.parse(
        {"profile": "off", "backend": {"type": "local", "options": {"draft": "lookup"}}}
    )
    assert spec.resolved().backend.options == {"draft": "lookup", "prefix_cache_entries": 0}


def test_lossless_has_no_prompt_rewriting_stage() -> None:
    stages = PipelineSpec(profile="lossless").resolved().stages
    assert [s.type for s in stages] == ["cache"]
    assert stages[0].options["semantic"] is False


def test_a_spec_without_profile_is_exactly_what_it_lists() -> None:
    spec = PipelineSpec.parse({"stages": [{"type": "sot"}, {"type": "cache"}]})
    assert spec.resolved() is spec
    assert [s.type for s in spec.stages] == ["sot", "cache"]


def test_unknown_profile_and_duplicate_stage_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        PipelineSpec(profile="fast").resolved()
    with pytest.raises(ConfigError, match="listed twice"):
        expand(PipelineSpec.parse({"stages": [{"type": "cache"}, {"type": "cache"}]}), "lean")


def test_every_profile_file_lists_known_stages_in_order() -> None:
    for name in PROFILES:
        types = [s["type"] for s in load_profile(name)["stages"]]
        assert types == sorted(types, key=STAGE_ORDER.index)


def test_serve_takes_a_profile_flag() -> None:
    args = build_parser().parse_args(["serve", "--profile", "off"])
    assert args.profile == "off"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--profile", "fast"])
