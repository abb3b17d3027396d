"""Per-request control of the SoT stage: ``extra_body={"tokenlean": {"sot": ...}}``.

The value is a mode word, ``"on"`` (skeleton whatever the router says), ``"off"`` (normal
generation) or ``"auto"`` (the router decides), a boolean (``true`` = on, ``false`` = off), or a
mapping ``{"mode": ...}`` (the shape the ``x-tokenlean-sot-mode`` header arrives in). Anything
else is the caller's mistake and a ``BadRequestError`` naming the field, which the proxy turns
into a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from tokenlean.errors import BadRequestError

__all__ = ["MODES", "Mode", "parse_mode"]

Mode = Literal["auto", "on", "off"]
MODES: tuple[Mode, ...] = ("auto", "on", "off")
_PARAM = "tokenlean.sot"


def parse_mode(value: Any, default: Mode) -> Mode:
    """The mode a request asks for; ``default`` when it asks nothing."""
    if value is None:
        return default
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"mode"})
        if unknown:
            raise BadRequestError(
                f"unknown {_PARAM} option {unknown[0]!r}; known: mode", param=f"{_PARAM}.{unknown[0]}"
            )
        return _word(value.get("mode"), default, f"{_PARAM}.mode")
    return _word(value, default, _PARAM)


def _word(value: Any, default: Mode, param: str) -> Mode:
    if value is None:
        return default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str) and value.strip().lower() in MODES:
        return cast(Mode, value.strip().lower())
    raise BadRequestError(f"{param} must be one of 'on', 'off', 'auto'; got {value!r}", param=param)
