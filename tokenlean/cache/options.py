"""Per-request cache control, the way the well-known proxies offer it.

A caller sends ``extra_body={"tokenlean": {"cache": {...}}}`` (or ``x-tokenlean-cache-*``
headers, which the proxy maps into the same dict with the header suffix as the key, ``-`` read
as ``_``). Keys:

==============  =======================================================  =====================
key             meaning                                                  header
==============  =======================================================  =====================
``no_cache``    don't read: always ask the model (the answer is stored)   x-tokenlean-cache-no-cache
``no_store``    don't write this answer                                    x-tokenlean-cache-no-store
``ttl``         seconds this answer stays valid (> 0)                     x-tokenlean-cache-ttl
``namespace``   a separate cache space inside the caller's tenant          x-tokenlean-cache-namespace
``semantic``    false: exact matches only for this request                 x-tokenlean-cache-semantic
``threshold``   a stricter (or looser) score threshold, in (0, 1]          x-tokenlean-cache-threshold
==============  =======================================================  =====================

``{"cache": false}`` turns the stage off for the request. Header values arrive as strings, so
booleans also accept ``true/false/1/0/yes/no`` and numbers accept numeric strings. A bad value is
a ``BadRequestError`` naming ``tokenlean.cache.<key>``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenlean.errors import BadRequestError

__all__ = ["CacheOptions", "parse_options"]

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """The validated per-request cache options."""

    enabled: bool = True
    no_cache: bool = False
    no_store: bool = False
    ttl: float | None = None
    namespace: str | None = None
    semantic: bool = True
    threshold: float | None = None


def _param(key: str) -> str:
    return f"tokenlean.cache.{key}"


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadRequestError(f"cache option {key!r} must be a boolean, got {value!r}", param=_param(key))


def _number(key: str, value: Any, *, low: float, high: float, low_open: bool = True) -> float:
    try:
        number = (
            float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else math.nan
        )
    except ValueError:
        number = math.nan
    inside = (number > low if low_open else number >= low) and number <= high
    if not inside:
        raise BadRequestError(
            f"cache option {key!r} must be a number in {'(' if low_open else '['}{low}, {high}], got {value!r}",
            param=_param(key),
        )
    return number


def parse_options(raw: Any) -> CacheOptions:
    """Validate ``request.option("cache")``; None/True mean defaults, False turns the stage off."""
    if raw is None or raw is True:
        return CacheOptions()
    if raw is False:
        return CacheOptions(enabled=False)
    if not isinstance(raw, Mapping):
        raise BadRequestError("the cache option must be an object (or false)", param="tokenlean.cache")
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("no_cache", "no_store", "semantic", "enabled"):
            fields[key] = _bool(key, value)
        elif key == "ttl":
            fields[key] = _number(key, value, low=0, high=10 * 365 * 86400)
        elif key == "threshold":
            fields[key] = _number(key, value, low=0, high=1)
        elif key == "namespace":
            if not isinstance(value, str) or not _NAMESPACE.match(value):
                raise BadRequestError(
                    "cache option 'namespace' must be 1-128 characters of letters, digits and _.:/-",
                    param=_param(key),
                )
            fields[key] = value
        else:
            known = "no_cache, no_store, ttl, namespace, semantic, threshold"
            raise BadRequestError(f"unknown cache option {key!r}; known: {known}", param=_param(str(key)))
    return CacheOptions(**fields)
