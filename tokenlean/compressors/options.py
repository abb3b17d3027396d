"""Per-request options of the ``compress`` stage (``extra_body={"tokenlean": {"compress": {...}}}``).

A bad option is the caller's error: ``BadRequestError`` whose ``param`` names the field
(``tokenlean.compress.rate``), which the proxy turns into a 400. ``false`` or ``{"off": true}``
turns the stage off for one request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tokenlean.compressors.lingua import MODES
from tokenlean.errors import BadRequestError

__all__ = ["LAST_USER", "OPTION_FIELDS", "CompressOptions", "parse_request_options"]

OPTION_FIELDS = ("rate", "target_tokens", "mode", "off", "protect", "min_prompt_tokens", "last_user")
LAST_USER = ("blocks", "keep")


@dataclass(frozen=True, slots=True)
class CompressOptions:
    """What one request gets: the stage's defaults with the request's overrides applied."""

    rate: float | None = 0.5
    target_tokens: int | None = None
    mode: str = "auto"
    protect: tuple[str, ...] = ()
    min_prompt_tokens: int = 400
    last_user: str = "blocks"


def _bad(field: str, message: str) -> BadRequestError:
    return BadRequestError(f"tokenlean.compress.{field}: {message}", param=f"tokenlean.compress.{field}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(field: str, value: Any) -> None:
    """Type and range of one field; ``bool`` is never accepted where a number is."""
    if field == "rate" and value is not None and (not _is_number(value) or not 0 < value <= 1):
        raise _bad(field, f"must be a number in (0, 1] (kept fraction: 0.5 is 2x), got {value!r}")
    if field in ("target_tokens", "min_prompt_tokens") and value is not None:
        low = 1 if field == "target_tokens" else 0
        if not _is_number(value) or int(value) != value or value < low:
            raise _bad(field, f"must be an integer >= {low}, got {value!r}")
    if field == "mode" and value not in MODES:
        raise _bad(field, f"must be one of {', '.join(MODES)}, got {value!r}")
    if field == "last_user" and value not in LAST_USER:
        raise _bad(field, f"must be one of {', '.join(LAST_USER)}, got {value!r}")
    if field == "off" and not isinstance(value, bool):
        raise _bad(field, f"must be true or false, got {value!r}")
    if field == "protect" and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise _bad(field, f"must be a list of strings, got {value!r}")


def parse_request_options(raw: Any, defaults: CompressOptions) -> CompressOptions | None:
    """The options for this request, or ``None`` when compression is off for it."""
    if raw is None:
        return defaults
    if raw is False:
        return None
    if not isinstance(raw, Mapping):
        raise BadRequestError(
            f"tokenlean.compress must be an object or false, got {raw!r}", param="tokenlean.compress"
        )
    unknown = sorted(set(raw) - set(OPTION_FIELDS))
    if unknown:
        raise _bad(unknown[0], f"unknown option; known: {', '.join(OPTION_FIELDS)}")
    for field, value in raw.items():
        _check(field, value)
    if raw.get("off"):
        return None
    if raw.get("rate") is not None and raw.get("target_tokens") is not None:
        raise _bad("target_tokens", "give rate or target_tokens, not both")
    changes: dict[str, Any] = {
        k: v for k, v in raw.items() if k in ("mode", "min_prompt_tokens", "last_user")
    }
    if raw.get("rate") is not None:
        changes.update(rate=float(raw["rate"]), target_tokens=None)
    if raw.get("target_tokens") is not None:
        changes.update(target_tokens=int(raw["target_tokens"]), rate=None)
    if "protect" in raw:
        changes["protect"] = (*defaults.protect, *raw["protect"])
    return replace(defaults, **changes)
