"""Per-request options of the ``demos`` stage and the pool entries of its spec.

A bad per-request option is the caller's error: it raises ``BadRequestError`` whose ``param``
names the field (``tokenlean.demos.k``), which the proxy turns into a 400. A bad pool entry in
the spec is a ``ConfigError``, raised when the pool is first loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.selectors.selection import METHODS, SelectionConfig

if TYPE_CHECKING:
    from tokenlean.embeddings import Embedder
    from tokenlean.selectors.pool import DemoPool

__all__ = ["OPTION_FIELDS", "entry_threshold", "parse_request_options", "pool_from_entry"]

OPTION_FIELDS = (
    "enabled",
    "pool",
    "k",
    "budget",
    "method",
    "mmr_lambda",
    "balance",
    "placement",
    "threshold",
)
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


def _check(field: str, value: Any) -> None:
    """Type and range of one per-request field (``bool`` is not accepted where a number is)."""
    if field in ("k", "budget"):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise _bad(field, f"must be a non-negative integer or null, got {value!r}")
    elif field == "method" and value not in METHODS:
        raise _bad(field, f"must be one of {', '.join(METHODS)}, got {value!r}")
    elif field == "mmr_lambda" and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1
    ):
        raise _bad(field, f"must be a number in [0, 1], got {value!r}")
    elif field in ("balance", "enabled") and not isinstance(value, bool):
        raise _bad(field, f"must be true or false, got {value!r}")
    elif field == "placement" and value not in ("turns", "system"):
        raise _bad(field, f"must be 'turns' or 'system', got {value!r}")
    elif field == "pool" and not isinstance(value, str):
        raise _bad(field, f"must be a pool name, got {value!r}")
    elif field == "threshold" and not _is_threshold(value):
        raise _bad(field, f"must be a number in [-1, 1], 'auto' or 'off', got {value!r}")


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
    if raw is None:
        raw = {}
    if raw is False:
        return None
    if not isinstance(raw, Mapping):
        raise BadRequestError(
            f"tokenlean.demos must be an object or false, got {raw!r}", param="tokenlean.demos"
        )
    unknown = sorted(set(raw) - set(OPTION_FIELDS))
    if unknown:
        raise _bad(unknown[0], f"unknown option; known: {', '.join(OPTION_FIELDS)}")
    for field, value in raw.items():
        _check(field, value)
    if max_k is not None and (raw.get("k") or 0) > max_k:
        raise _bad("k", f"at most {max_k} demonstrations per request, got {raw['k']}")
    if raw.get("enabled") is False:
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
    fresh = saved is not None and (saved / "meta.json").exists()
    if (
        fresh and (saved / "meta.json").stat().st_mtime >= path.stat().st_mtime
    ):  # embedded on an earlier start
        return DemoPool.load(saved, embedder=embedder, name=name)
    pool = DemoPool.from_file(path, name=name, embedder=embedder, **keys)
    if saved is not None:
        pool.save(saved)
    return pool
