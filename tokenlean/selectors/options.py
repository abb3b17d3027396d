"""Per-request options of the ``demos`` stage and the pool entries of its spec.

The per-request options are ``DemoCallOptions`` (``extra_body={"tokenlean": {"demos": {...}}}``,
``x-tokenlean-demos-*`` headers; ``false`` turns the stage off). A bad one is the caller's error:
``BadRequestError`` whose ``param`` names the field (``tokenlean.demos.k``), which the proxy turns
into a 400. A bad pool entry in the spec is a ``ConfigError``, raised when the pool is first loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.middleware.options import SpecOptions, StageOptions, parse_call_options
from tokenlean.selectors.selection import SelectionConfig

if TYPE_CHECKING:
    from tokenlean.embeddings import Embedder
    from tokenlean.selectors.pool import DemoPool

__all__ = [
    "OPTION_FIELDS",
    "DemoCallOptions",
    "DemoSpecOptions",
    "entry_threshold",
    "parse_request_options",
    "pool_from_entry",
]

Threshold = Annotated[float, Field(ge=-1, le=1)] | Literal["auto", "off"]
_THRESHOLD = "Relevance gate: a cosine in [-1, 1], `auto` (calibrated per pool) or `off` (always add)."


class DemoCallOptions(StageOptions):
    """Per-call overrides of the demos stage; ``false`` is ``{"enabled": false}``.

    An option left out takes the stage's setting; only ``k`` and ``budget`` may be sent as null.
    """

    nullable: ClassVar[frozenset[str]] = frozenset({"k", "budget"})

    enabled: bool = Field(default=True, description="false: no demonstrations for this request.")
    pool: str | None = Field(default=None, description="The pool to draw from (default: the spec's `pool`).")
    k: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Demonstrations to add (null: as many as `budget` allows)."
    )
    budget: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Token budget for the demonstrations."
    )
    method: Literal["knn", "mmr", "random"] | None = Field(
        default=None,
        description="`knn` (nearest, KATE), `mmr` (nearest but not redundant) or `random` (a seeded draw).",
    )
    mmr_lambda: float | None = Field(
        default=None, ge=0, le=1, description="MMR's relevance/diversity trade-off."
    )
    balance: bool | None = Field(default=None, description="Balance the labels of the chosen demonstrations.")
    placement: Literal["turns", "system"] | None = Field(
        default=None,
        description="`turns`: user/assistant turn pairs after the system prompt; `system`: one text block "
        "appended to the system message.",
    )
    threshold: Threshold | None = Field(default=None, description=_THRESHOLD)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"enabled": False} if value is False else value


OPTION_FIELDS = tuple(DemoCallOptions.model_fields)


class DemoSpecOptions(SpecOptions):
    """The demos stage's constructor options as a spec sets them (shared ones described per call)."""

    pools: Mapping[str, Any] | None = Field(
        default=None,
        description="Pools by name: a JSONL/CSV file, a saved pool folder, or `{path, input_key, output_key, "
        "label_key, index, exact_threshold, save_to, threshold, route}`; loaded on first use.",
    )
    pool: str | None = Field(default=None, description="The pool a request that names none draws from.")
    k: Annotated[int, Field(ge=0)] | None = 4
    budget: Annotated[int, Field(ge=0)] | None = None
    method: Literal["knn", "mmr", "random"] = "knn"
    mmr_lambda: float = Field(default=0.5, ge=0, le=1)
    balance: bool = False
    candidates: int = Field(default=64, ge=1, description="Nearest neighbours considered before selecting.")
    max_k: int = Field(default=64, ge=0, description="The most demonstrations one request may ask for.")
    placement: Literal["turns", "system"] = "turns"
    block_header: str = Field(
        default="Examples:", description="Heading of the block `placement: system` adds."
    )
    input_prefix: str = Field(default="Input: ", description="Before an example's input in that block.")
    output_prefix: str = Field(default="Output: ", description="Before an example's output in that block.")
    pair_overhead: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Template tokens around a user/assistant pair (default: measured)."
    )
    tokenizer: str | None = Field(
        default=None,
        description="Model folder whose tokenizer counts `budget` (default: the embedded model's).",
    )
    tenants: Mapping[str, Sequence[str]] | None = Field(
        default=None,
        description="Pools scoped to API keys: `{pool: [tenant ids]}`; unlisted pools are shared.",
    )
    threshold: Threshold = "auto"


_ENTRY_FIELDS = {
    "path",
    "input_key",
    "output_key",
    "label_key",
    "index",
    "exact_threshold",
    "save_to",
    "threshold",
    "route",
}


def _bad(field: str, message: str) -> BadRequestError:
    return BadRequestError(f"tokenlean.demos.{field}: {message}", param=f"tokenlean.demos.{field}")


def _is_threshold(value: Any) -> bool:
    """A relevance threshold: a cosine in [-1, 1], ``auto`` (calibrated) or ``off`` (always add)."""
    if value in ("auto", "off"):
        return True
    return not isinstance(value, bool) and isinstance(value, (int, float)) and -1 <= value <= 1


def entry_threshold(name: str, entry: Any, default: Any) -> Any:
    """The relevance threshold a pool entry asks for (``default`` when it names none)."""
    value = entry.get("threshold", default) if isinstance(entry, Mapping) else default
    if not _is_threshold(value):
        raise ConfigError(
            f"pool {name!r}: threshold must be a number in [-1, 1], 'auto' or 'off', not {value!r}",
            param=f"pools.{name}.threshold",
        )
    return value


def parse_request_options(
    raw: Any, defaults: Mapping[str, Any], default_pool: str | None, *, max_k: int | None = None
) -> tuple[str, SelectionConfig, Any] | None:
    """``(pool, config, placement)`` for this request, or ``None`` when the stage should not run.

    ``raw`` is ``request.option("demos")``: absent, ``False`` (off), or a dict of overrides. A
    request may not ask for more than ``max_k`` demonstrations (each one costs the server tokens).
    """
    call = parse_call_options(DemoCallOptions, raw, stage="demos")
    raw = {name: getattr(call, name) for name in call.model_fields_set}  # what the caller set (null too)
    if max_k is not None and (raw.get("k") or 0) > max_k:
        raise _bad("k", f"at most {max_k} demonstrations per request, got {raw['k']}")
    if not call.enabled:
        return None
    pool = raw.get("pool", default_pool)
    if pool is None:
        return None
    merged = {
        **defaults,
        **{k: v for k, v in raw.items() if k not in ("enabled", "pool", "placement", "threshold")},
    }
    placement = raw.get("placement", merged.pop("placement"))
    try:
        config = SelectionConfig(**merged)
    except ConfigError as exc:
        raise _bad(exc.param or "k", exc.message) from exc
    return pool, config, placement


def pool_from_entry(name: str, entry: Any, *, embedder: Embedder | None = None) -> DemoPool:
    """Build or load the pool a spec entry describes (see ``DemoStage``)."""
    from tokenlean.selectors.pool import DemoPool

    if isinstance(entry, DemoPool):
        return entry
    if isinstance(entry, (str, Path)):
        entry = {"path": entry}
    if not isinstance(entry, Mapping) or "path" not in entry:
        raise ConfigError(
            f"pool {name!r}: give a path or {{path: ..., ...}}, not {entry!r}", param=f"pools.{name}"
        )
    unknown = sorted(set(entry) - _ENTRY_FIELDS)
    if unknown:
        raise ConfigError(f"pool {name!r}: unknown key {unknown[0]!r}", param=f"pools.{name}.{unknown[0]}")
    path = Path(entry["path"]).expanduser()
    if (path / "meta.json").exists():
        return DemoPool.load(path, embedder=embedder, name=name)
    keys = {
        key: entry[key]
        for key in ("input_key", "output_key", "label_key", "index", "exact_threshold")
        if key in entry
    }
    saved = Path(entry["save_to"]).expanduser() if entry.get("save_to") else None
    meta = saved / "meta.json" if saved is not None else None
    if (
        saved is not None
        and meta is not None
        and meta.exists()
        and meta.stat().st_mtime >= path.stat().st_mtime
    ):
        return DemoPool.load(saved, embedder=embedder, name=name)  # embedded on an earlier start
    pool = DemoPool.from_file(path, name=name, embedder=embedder, **keys)
    if saved is not None:
        pool.save(saved)
    return pool
