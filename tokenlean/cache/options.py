"""Per-request cache control, the way the well-known proxies offer it.

A caller sends ``extra_body={"tokenlean": {"cache": {...}}}`` (or ``x-tokenlean-cache-*``
headers, which the proxy maps into the same dict with the header suffix as the key, ``-`` read
as ``_``). The keys are ``CacheOptions``' fields (listed in docs/config-reference.md).

``{"cache": false}`` turns the stage off for the request. A header value is converted by the
option's type (``1``/``true``/``yes`` for a boolean, a number for ``ttl``); a body value must be a
JSON value of that type. A bad value is a ``BadRequestError`` naming ``tokenlean.cache.<key>``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from tokenlean.middleware.options import StageOptions, parse_call_options

__all__ = ["CacheOptions", "parse_options"]

_TEN_YEARS = 10 * 365 * 86400


class CacheOptions(StageOptions):
    """The validated per-request cache options; ``true`` means the defaults, ``false`` is ``enabled: false``."""

    enabled: bool = Field(default=True, description="false: the cache stage is off for this request.")
    no_cache: bool = Field(
        default=False, description="Don't read: always ask the model (the answer is stored)."
    )
    no_store: bool = Field(default=False, description="Don't write this answer.")
    ttl: Annotated[float, Field(gt=0, le=_TEN_YEARS)] | None = Field(
        default=None, description="Seconds this answer stays valid (default: the stage's ttl)."
    )
    namespace: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")] | None = Field(
        default=None,
        description="A separate cache space inside the caller's tenant (1-128 of A-Za-z0-9_.:/-).",
    )
    semantic: bool = Field(default=True, description="false: exact matches only for this request.")
    threshold: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None, description="A stricter (or looser) score threshold for a semantic hit, in (0, 1]."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        return {"enabled": False} if value is False else value


def parse_options(raw: Any) -> CacheOptions:
    """Validate ``request.option("cache")``; None/True mean defaults, False turns the stage off."""
    return parse_call_options(CacheOptions, raw, stage="cache")
