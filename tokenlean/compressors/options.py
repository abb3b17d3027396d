"""Options of the ``compress`` stage: its spec options and its per-call options, as typed models.

Per call (``extra_body={"tokenlean": {"compress": {...}}}`` or ``x-tokenlean-compress-*``
headers) a request may override the spec's ``rate`` or ``target_tokens``, ``mode``,
``min_prompt_tokens`` and ``last_user``, add ``protect`` strings, or turn the stage off (``false``
or ``{"off": true}``). A bad option is the caller's error: ``BadRequestError`` whose ``param``
names the field (``tokenlean.compress.rate``), which the proxy turns into a 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tokenlean.middleware.options import SpecOptions, StageOptions, parse_call_options

__all__ = [
    "LAST_USER",
    "CompressCallOptions",
    "CompressOptions",
    "CompressSpecOptions",
    "parse_request_options",
]

LAST_USER = ("blocks", "keep")
Mode = Literal["auto", "question", "plain"]
LastUser = Literal["blocks", "keep"]
Rate = Annotated[float, Field(gt=0, le=1)]
TargetTokens = Annotated[int, Field(ge=1)]
_RATE = "Kept fraction of the context: 0.5 is 2x compression."
_TARGET = "Token budget for the context instead of a rate (a call gives one or the other)."
_MIN_PROMPT = "Prompts shorter than this (target tokens) pass through untouched."
_MODE = "`question`: scored against the question (LongLLMLingua); `plain`: by perplexity alone; `auto`: question when there is one."
_LAST_USER = "`blocks`: the last user turn's paragraphs before the question are compressed too; `keep`: it stays verbatim."
_PROTECT = "Strings kept verbatim wherever they occur."


@dataclass(frozen=True, slots=True)
class CompressOptions:
    """What one request gets: the stage's defaults with the request's overrides applied."""

    rate: float | None = 0.5
    target_tokens: int | None = None
    mode: str = "auto"
    protect: tuple[str, ...] = ()
    min_prompt_tokens: int = 400
    last_user: str = "blocks"


class CompressCallOptions(StageOptions):
    """Per-call overrides of the compress stage; ``false`` is ``{"off": true}``.

    An option left out takes the stage's setting; ``rate``, ``target_tokens`` and ``min_prompt_tokens``
    may also be sent as null.
    """

    nullable: ClassVar[frozenset[str]] = frozenset({"rate", "target_tokens", "min_prompt_tokens"})

    rate: Rate | None = Field(default=None, description=_RATE)
    target_tokens: TargetTokens | None = Field(default=None, description=_TARGET)
    mode: Mode | None = Field(default=None, description=_MODE)
    protect: Sequence[str] = Field(default=(), description=_PROTECT + " Added to the spec's.")
    min_prompt_tokens: int | None = Field(default=None, ge=0, description=_MIN_PROMPT)
    last_user: LastUser | None = Field(default=None, description=_LAST_USER)
    off: bool = Field(default=False, description="Turn the stage off for this request.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"off": True} if value is False else value

    @field_validator("target_tokens")
    @classmethod
    def _not_both(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("rate") is not None:
            raise ValueError("give rate or target_tokens, not both")
        return value


class CompressSpecOptions(SpecOptions):
    """The compress stage's constructor options as a spec sets them."""

    rate: Rate | None = Field(default=0.5, description=_RATE)
    target_tokens: TargetTokens | None = Field(default=None, description=_TARGET)
    mode: Mode = Field(default="auto", description=_MODE)
    min_prompt_tokens: int = Field(default=400, ge=0, description=_MIN_PROMPT)
    min_block_tokens: int = Field(
        default=48, ge=0, description="Paragraphs shorter than this stay as they are."
    )
    roles: Sequence[str] = Field(
        default=("system", "developer", "tool", "user"),
        description="Roles of the messages that are compressed.",
    )
    last_user: LastUser = Field(default="blocks", description=_LAST_USER)
    protect: Sequence[str] = Field(default=(), description=_PROTECT)
    protect_numbers: bool = Field(default=False, description="Keep every number verbatim.")
    protect_entities: bool = Field(
        default=False, description="Keep named entities (capitalised word runs) verbatim."
    )
    model: str | None = Field(
        default=None, description="Scorer model folder (default: the embedded SmolLM2)."
    )
    target_model: str | None = Field(
        default=None, description="Tokenizer budgets are counted in (default: the embedded model's)."
    )
    device: str = Field(default="cpu", description="Torch device of the scorer.")
    tuning: dict[str, Any] | None = Field(default=None, description="LinguaConfig fields (expert tuning).")
    reuse_examples: bool = Field(
        default=True,
        description="Worked examples at the start of the context (two or more blocks opening with one label, "
        "such as `Question:`) are compressed once without the question and reused: the scorer skips them "
        "and the upstream's prefix cache keeps matching. A request asking for `mode: question` is not reused.",
    )
    max_wait_s: float | None = Field(
        default=None,
        ge=0,
        description="Longest estimated wait for the shared scorer; a request over it goes on uncompressed "
        "(a `skipped` event, reason `busy`). Null: wait as long as it takes.",
    )


def parse_request_options(raw: Any, defaults: CompressOptions) -> CompressOptions | None:
    """The options for this request, or ``None`` when compression is off for it."""
    call = parse_call_options(CompressCallOptions, raw, stage="compress")
    if call.off:
        return None
    changes: dict[str, Any] = {
        key: getattr(call, key)
        for key in ("mode", "min_prompt_tokens", "last_user")
        if getattr(call, key) is not None
    }
    if call.rate is not None:
        changes.update(rate=call.rate, target_tokens=None)
    if call.target_tokens is not None:
        changes.update(target_tokens=call.target_tokens, rate=None)
    if call.protect:
        changes["protect"] = (*defaults.protect, *call.protect)
    return replace(defaults, **changes)
