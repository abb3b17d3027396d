"""Options of the SoT stage: its spec options and its per-call mode, as typed models.

Per call (``extra_body={"tokenlean": {"sot": ...}}``) the value is a mode word, ``"on"``
(skeleton whatever the router says), ``"off"`` (normal generation) or ``"auto"`` (the router
decides), a boolean (``true`` = on, ``false`` = off), or a mapping ``{"mode": ...}`` (the shape
the ``x-tokenlean-sot-mode`` header arrives in). Anything else is the caller's mistake and a
``BadRequestError`` naming the field, which the proxy turns into a 400. In a spec, YAML reads
``mode: on``/``mode: off`` as booleans; they mean ``"on"``/``"off"`` there too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tokenlean.middleware.options import SpecOptions, StageOptions, parse_call_options
from tokenlean.reasoning.sot.prompts import (
    DEFAULT_LEAD_TEMPLATE,
    DEFAULT_POINT_TEMPLATE,
    DEFAULT_SKELETON_TEMPLATE,
)

__all__ = ["MODES", "Mode", "SotCallOptions", "SotSpecOptions", "parse_mode"]

Mode = Literal["auto", "on", "off"]
MODES: tuple[Mode, ...] = ("auto", "on", "off")
_MODE = "`on`: a skeleton whatever the router says; `off`: normal generation; `auto`: the router decides."


def _word(value: Any) -> Any:
    """``True``/``False`` (YAML's ``on``/``off``) as ``"on"``/``"off"``; words case- and space-insensitive."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value.strip().lower() if isinstance(value, str) else value


class SotCallOptions(StageOptions):
    """Per-call SoT mode: ``"on"``, ``"off"``, ``"auto"``, ``true``/``false`` or ``{"mode": ...}``."""

    nullable: ClassVar[frozenset[str]] = frozenset({"mode"})
    mode: Mode | None = Field(default=None, description=_MODE)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if not isinstance(value, str | bool):
            return value
        if _word(value) not in MODES:  # named as the option itself, as it was written
            raise ValueError("must be one of 'on', 'off', 'auto' (or {mode: ...})")
        return {"mode": _word(value)}

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_word(cls, value: Any) -> Any:
        return _word(value)


class SotSpecOptions(SpecOptions):
    """The SoT stage's constructor options as a spec sets them."""

    mode: Mode = Field(default="auto", description=_MODE)
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Router probability a request needs (default: the router's own).",
    )
    router_weights: str | None = Field(
        default=None, description="Router weights (.npz; default: the bundled)."
    )
    min_points: int = Field(
        default=2, ge=2, description="A skeleton with fewer points falls back to normal generation."
    )
    max_points: int = Field(
        default=5, ge=2, description="The skeleton asks for at most this many points (more are dropped)."
    )
    skeleton_max_tokens: int = Field(default=64, ge=1, description="Token limit of the skeleton.")
    point_max_tokens: int = Field(default=128, ge=1, description="Token limit of one point's expansion.")
    min_point_tokens: int = Field(
        default=8,
        ge=1,
        description="Fewest tokens a point is written with; a `max_tokens` too small for that means normal generation.",
    )
    lead_max_tokens: int = Field(default=24, ge=0, description="Token limit of the opening line (0: none).")
    min_answer_tokens: int = Field(
        default=128,
        ge=1,
        description="In `auto` mode, a request whose `max_tokens` is below this gets normal generation "
        "without being routed: so short an answer cannot repay the skeleton.",
    )
    skeleton_template: str = Field(
        default=DEFAULT_SKELETON_TEMPLATE,
        description="Prompt that asks for the skeleton (`{question}`, `{min_points}`, `{max_points}`).",
    )
    point_template: str = Field(default=DEFAULT_POINT_TEMPLATE, description="Prompt that expands one point.")
    lead_template: str = Field(default=DEFAULT_LEAD_TEMPLATE, description="Prompt of the opening line.")
    skeleton_examples: Sequence[Sequence[str]] | None = Field(
        default=None,
        description="Worked examples for the skeleton: [question, skeleton] pairs (default: built in).",
    )
    point_examples: Sequence[Sequence[str]] | None = Field(
        default=None,
        description="Worked examples for a point: [question, point, expansion] triples (default: built in).",
    )
    lead_examples: Sequence[Sequence[str]] | None = Field(
        default=None,
        description="Worked examples for the opening line: [question, lead] pairs (default: built in).",
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_word(cls, value: Any) -> Any:
        return _word(value)


def parse_mode(value: Any, default: Mode) -> Mode:
    """The mode a request asks for; ``default`` when it asks nothing."""
    return parse_call_options(SotCallOptions, value, stage="sot").mode or default
