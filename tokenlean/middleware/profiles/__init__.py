"""Profiles: named pipeline specs, so ``tokenlean serve`` with no config runs a lean pipeline.

A profile is data, one YAML file per profile beside this module (``lean.yaml``, ``lossless.yaml``,
``off.yaml``): the stages it runs, in order, with the options that make each one decide per
request, plus backend options per backend type. ``expand`` merges a user's spec into a profile:

- the stage order is fixed (``STAGE_ORDER``): cache first, so it keys on the request as the client
  sent it; demonstrations and compression below it, so a rewritten request is never looked up or
  stored under the original's key; SoT below those, so its sub-requests go through the stages
  below it; the cascade last, so its cheap tier receives the compressed request too;
- a stage the user's spec also names takes the user's options over the profile's (key by key)
  and the user's policy;
- a profile stage marked ``requires: <option>`` (demos: ``pools``; cascade: ``cascades``) runs
  only when that option is configured: without a pool there are no demonstrations to choose;
- a stage only the user names is added at its place in the order (unknown types last);
- backend options: the profile's for that backend type, under the user's.

``docs/profiles.md`` has the table of what each stage does under each profile, and why.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib import resources
from typing import Any

from tokenlean.errors import ConfigError
from tokenlean.middleware.spec import BackendSpec, PipelineSpec, StageSpec

__all__ = ["DEFAULT_PROFILE", "PROFILES", "STAGE_ORDER", "expand", "load_profile"]

log = logging.getLogger(__name__)

PROFILES: tuple[str, ...] = ("lean", "lossless", "off")
DEFAULT_PROFILE = "lean"
STAGE_ORDER: tuple[str, ...] = ("cache", "demos", "compress", "sot", "cascade")


@cache
def _read(name: str) -> dict[str, Any]:
    import yaml

    text = resources.files(__package__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"profile {name} must be a mapping"
    return data


def load_profile(name: str) -> dict[str, Any]:
    """The profile's data (``description``, ``backend``, ``stages``); ``ConfigError`` if unknown."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}", param="profile")
    return _read(name)


def _position(stage_type: str) -> int:
    return STAGE_ORDER.index(stage_type) if stage_type in STAGE_ORDER else len(STAGE_ORDER)


def _profile_stages(profile: dict[str, Any], mine: dict[str, StageSpec]) -> list[StageSpec]:
    """The profile's stages with the user's options laid over them; consumes ``mine``'s matches."""
    stages: list[StageSpec] = []
    for entry in profile.get("stages") or []:
        user = mine.pop(entry["type"], None)
        options = {**(entry.get("options") or {}), **(user.options if user is not None else {})}
        required = entry.get("requires")
        if required and not options.get(required):
            continue
        fitted = options if user is not None else _fit_to_install(entry["type"], options)
        if fitted is None:
            continue
        policy = user.policy if user is not None else entry.get("policy", "bypass")
        stages.append(StageSpec(type=entry["type"], policy=policy, options=fitted))
    return stages


def _fit_to_install(stage_type: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """A stage only the profile brings, fitted to what is installed: ``None`` leaves it out.

    A profile is a default, not a request: on a core install (no torch, no embedder) the lean
    profile keeps the exact cache and leaves out what cannot run, saying so once at startup. A
    stage the user names keeps its options and fails at startup naming the missing extra.
    """
    from tokenlean.extras import unmet_extras

    missing = unmet_extras(stage_type, options)
    if not missing:
        return options
    if stage_type == "cache" and not unmet_extras("cache", {**options, "semantic": False}):
        log.warning(
            "profile: cache runs exact-only (install tokenlean[%s] for semantic hits)", ",".join(missing)
        )
        return {**options, "semantic": False}
    log.warning("profile: stage %s left out (install tokenlean[%s] for it)", stage_type, ",".join(missing))
    return None


def expand(spec: PipelineSpec, profile: str | None = None) -> PipelineSpec:
    """``spec`` merged into ``profile`` (default: the spec's own ``profile``) as a plain spec."""
    name = profile or spec.profile or DEFAULT_PROFILE
    data = load_profile(name)
    mine: dict[str, StageSpec] = {}
    for stage in spec.stages:
        if stage.type in mine:
            raise ConfigError(
                f"stage {stage.type!r} is listed twice; a profile runs each stage once", param="stages"
            )
        mine[stage.type] = stage
    stages = _profile_stages(data, mine) + list(mine.values())
    stages.sort(key=lambda s: _position(s.type))  # stable: unknown types keep the user's order
    backend_defaults = (data.get("backend") or {}).get(spec.backend.type) or {}
    backend = BackendSpec(type=spec.backend.type, options={**backend_defaults, **spec.backend.options})
    return PipelineSpec(backend=backend, stages=stages)
