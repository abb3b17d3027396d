"""Tiers and the spec of a cascade: which backends, at what price, with which thresholds.

A tier is a backend plus a model name and its published price per input and output token (the
same units as FrugalGPT's ``serviceinfo.json``: dollars per token). Tiers are ordered cheapest
first; every tier but the last has a threshold: an answer whose score is below it escalates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tokenlean.errors import ConfigError
from tokenlean.middleware.registry import resolve_backend
from tokenlean.middleware.stage import Backend
from tokenlean.middleware.types import Usage

__all__ = ["CascadeOptions", "CascadeSpec", "ScorerSpec", "Tier", "TierSpec", "build_tiers", "parse_options"]


class TierSpec(BaseModel):
    """One tier as a spec file writes it.

    ``backend`` is ``"default"`` (the pipeline's own backend, reached through the stages below
    the cascade) or ``{type, options}`` naming a registered backend (``openai`` for a vLLM server).
    """

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    backend: str | dict[str, Any] = "default"
    model: str | None = None
    cost_input: float = Field(default=0.0, ge=0)
    cost_output: float = Field(default=0.0, ge=0)
    threshold: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)

    @field_validator("backend")
    @classmethod
    def _backend_shape(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, str) and value != "default":
            raise ValueError("backend must be 'default' or {type: ..., options: {...}}")
        if isinstance(value, dict) and (set(value) - {"type", "options"} or "type" not in value):
            raise ValueError("backend must be {type: ..., options: {...}}")
        return value


class ScorerSpec(BaseModel):
    """The scorer: its registered ``type`` plus that scorer's own keyword options."""

    model_config = ConfigDict(extra="allow")
    type: str


class CascadeSpec(BaseModel):
    """One named cascade: tiers cheapest first, one scorer, and what a failing tier does."""

    model_config = ConfigDict(extra="forbid")
    tiers: list[TierSpec] = Field(min_length=2)
    scorer: ScorerSpec
    escalate_on_error: bool = True

    @model_validator(mode="after")
    def _thresholds(self) -> CascadeSpec:
        for index, tier in enumerate(self.tiers[:-1]):
            if tier.threshold is None:
                raise ValueError(f"tiers.{index}.threshold is required for every tier but the last")
        names = [tier.name for tier in self.tiers if tier.name is not None]
        if len(names) != len(set(names)):
            raise ValueError(f"tier names must be unique: {names}")
        return self


class CascadeOptions(BaseModel):
    """The stage's options: named ``cascades`` (and the one used when a request names none).

    A single cascade may be written inline (``tiers``/``scorer`` at the top); it is named
    ``default`` and becomes the default.
    """

    model_config = ConfigDict(extra="forbid")
    cascades: dict[str, CascadeSpec] = Field(
        default_factory=dict, description="Named cascades: `{name: {tiers: [...], scorer: {type, ...}}}`."
    )
    default: str | None = Field(default=None, description="The cascade a request that names none runs.")
    tiers: list[TierSpec] | None = Field(
        default=None,
        description="An inline cascade's tiers, cheapest first (`name`, `backend`, `model`, `cost_input`, "
        "`cost_output`, `threshold`, `max_tokens`); it is named `default`.",
    )
    scorer: ScorerSpec | None = Field(default=None, description="The inline cascade's scorer: `{type, ...}`.")
    escalate_on_error: bool = Field(
        default=True,
        description="Whether a failing tier escalates to the next one (else its error is raised).",
    )

    @model_validator(mode="after")
    def _inline(self) -> CascadeOptions:
        if self.tiers is not None or self.scorer is not None:
            if self.tiers is None or self.scorer is None:
                raise ValueError("an inline cascade needs both tiers and scorer")
            inline = CascadeSpec(
                tiers=self.tiers, scorer=self.scorer, escalate_on_error=self.escalate_on_error
            )
            self.cascades = {"default": inline, **self.cascades}
            self.default = self.default or "default"
        if not self.cascades:
            raise ValueError("define at least one cascade (cascades: {name: {tiers, scorer}})")
        if self.default is not None and self.default not in self.cascades:
            raise ValueError(f"default {self.default!r} is not one of the cascades {sorted(self.cascades)}")
        return self


def parse_options(options: dict[str, Any]) -> CascadeOptions:
    """Validate the stage options; ``ConfigError`` names the first offending key."""
    try:
        return CascadeOptions.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"stage cascade: {where}: {first['msg']}", param=f"stages.cascade.options.{where}"
        ) from exc


@dataclass(frozen=True, slots=True)
class Tier:
    """A built tier. ``backend`` is ``None`` for the pipeline's own backend (``call_next``)."""

    name: str
    backend: Backend | None
    model: str | None
    cost_input: float
    cost_output: float
    threshold: float | None
    max_tokens: int | None = None
    owned: bool = False  # built by the stage, so the stage closes it

    def cost(self, usage: Usage) -> float:
        """Dollars this tier charges for ``usage``."""
        return usage.prompt_tokens * self.cost_input + usage.completion_tokens * self.cost_output


def build_tiers(specs: list[TierSpec], default_backend: Backend | None) -> list[Tier]:
    """Construct each tier's backend (``resolve_backend``) and name unnamed tiers ``tier<i>``."""
    tiers = []
    for index, spec in enumerate(specs):
        backend, owned = None, False
        if isinstance(spec.backend, dict):
            cls = resolve_backend(spec.backend["type"])
            try:
                backend = cls(**spec.backend.get("options", {}))
            except TypeError as exc:
                raise ConfigError(f"cascade tier {index}: {exc}", param=f"tiers.{index}.backend") from exc
            owned = True
        model = spec.model or _first_model(backend or default_backend)
        tiers.append(
            Tier(
                spec.name or f"tier{index}",
                backend,
                model,
                spec.cost_input,
                spec.cost_output,
                spec.threshold,
                spec.max_tokens,
                owned,
            )
        )
    return tiers


def _first_model(backend: Backend | None) -> str | None:
    if backend is None:
        return None
    names = backend.models()
    return names[0] if names else None
