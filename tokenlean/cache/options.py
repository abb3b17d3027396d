"""Per-request cache control, the way the well-known proxies offer it.

A caller sends ``extra_body={"tokenlean": {"cache": {...}}}`` (or ``x-tokenlean-cache-*``
headers, which the proxy maps into the same dict with the header suffix as the key, ``-`` read
as ``_``). The keys are ``CacheOptions``' fields (listed in docs/config-reference.md).

``{"cache": false}`` turns the stage off for the request. A header value is converted by the
option's type (``1``/``true``/``yes`` for a boolean, a number for ``ttl``); a body value must be a
JSON value of that type. A bad value is a ``BadRequestError`` naming ``tokenlean.cache.<key>``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from tokenlean.middleware.options import SpecOptions, StageOptions, parse_call_options

__all__ = ["CacheOptions", "CacheSpecOptions", "parse_options"]

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


class CacheSpecOptions(SpecOptions):
    """The cache stage's constructor options as a spec sets them."""

    store: Literal["memory", "sqlite", "redis"] = Field(
        default="memory",
        description="Where entries live: `memory`, `sqlite` (with `path`) or `redis` (with `url`).",
    )
    path: str | None = Field(default=None, description="The SQLite file (store `sqlite`).")
    url: str | None = Field(
        default=None, description="The Redis URL (store `redis`; default redis://127.0.0.1:6379/0)."
    )
    prefix: str = Field(default="tokenlean:cache", description="Prefix of the Redis keys.")
    namespace: str = Field(default="default", description="The cache space of a request that names none.")
    semantic: bool = Field(
        default=True, description="Also answer reworded questions; false: exact matches only."
    )
    threshold: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None, description="Score a semantic hit needs (default: the decision rule's own)."
    )
    decision: Literal["learned", "guard"] = Field(
        default="learned",
        description="`learned`: a trained duplicate classifier scores the candidates; `guard`: cosine minus "
        "the meaning guard's novelty penalties.",
    )
    novelty_penalty: float = Field(
        default=0.1,
        ge=0,
        description="The guard's penalty per content word one question has and the other lacks.",
    )
    ttl: Annotated[float, Field(gt=0)] | None = Field(
        default=86_400.0, description="Seconds an entry stays valid (null: no expiry)."
    )
    max_entries: int = Field(
        default=100_000, ge=1, description="Least recently used entries beyond this are evicted."
    )
    max_bytes: int = Field(
        default=512 * 2**20,
        ge=1,
        description="Least recently used entries beyond this many bytes are evicted.",
    )
    max_query_chars: int = Field(
        default=1000,
        ge=0,
        description="A longer final turn is matched exactly only (the embedder reads 256 tokens).",
    )
    deterministic_only: bool = Field(
        default=True, description="Cache only requests with temperature 0 or a seed."
    )
    retry_after_s: float = Field(
        default=2.0, ge=0, description="A store that failed is left alone this long."
    )
    store_timeout_s: float = Field(default=1.0, gt=0, description="Timeout of one Redis operation.")


def parse_options(raw: Any) -> CacheOptions:
    """Validate ``request.option("cache")``; None/True mean defaults, False turns the stage off."""
    return parse_call_options(CacheOptions, raw, stage="cache")
