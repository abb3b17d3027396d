"""Named stages and backends, so a pipeline spec can say ``type: cache``.

Every stage and backend, the built-in ones included, is declared as an entry point in the
groups ``tokenlean.stages`` and ``tokenlean.backends`` (tokenlean's own in its pyproject.toml), so
a third-party stage is registered exactly as the built-ins are and this module names no technique.
An entry point is loaded only when its name is used (a stage's module may import torch or faiss).
``register_stage``/``register_backend`` add one in code; those win over entry points.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Any

from tokenlean.errors import ConfigError, MissingDependencyError

__all__ = [
    "backend_names",
    "has_stage",
    "register_backend",
    "register_stage",
    "resolve_backend",
    "resolve_stage",
    "stage_names",
]

_STAGES: dict[str, Any] = {}
_BACKENDS: dict[str, Any] = {}


def register_stage(name: str, target: Any) -> None:
    """Make ``target`` (a class or ``"module:attr"``) available as stage ``name``."""
    _STAGES[name] = target


def register_backend(name: str, target: Any) -> None:
    """Make ``target`` (a class or ``"module:attr"``) available as backend ``name``."""
    _BACKENDS[name] = target


def stage_names() -> list[str]:
    """Every stage name known: built-in, registered and from entry points."""
    return sorted({*_STAGES, *(ep.name for ep in entry_points(group="tokenlean.stages"))})


def backend_names() -> list[str]:
    """Every backend name known: built-in, registered and from entry points."""
    return sorted({*_BACKENDS, *(ep.name for ep in entry_points(group="tokenlean.backends"))})


def has_stage(name: str) -> bool:
    """Whether a stage is known as ``name`` (cheap: the entry points are read once per process)."""
    return name in _STAGES or name in _entry_point_names("tokenlean.stages")


@functools.cache
def _entry_point_names(group: str) -> frozenset[str]:
    return frozenset(ep.name for ep in entry_points(group=group))


def resolve_stage(name: str) -> Any:
    """The stage class called ``name``; ``ConfigError`` naming the known ones otherwise."""
    return _resolve(name, _STAGES, "tokenlean.stages", "stage")


def resolve_backend(name: str) -> Any:
    """The backend class called ``name``; ``ConfigError`` naming the known ones otherwise."""
    return _resolve(name, _BACKENDS, "tokenlean.backends", "backend")


def _resolve(name: str, table: dict[str, Any], group: str, kind: str) -> Any:
    target = table.get(name)
    if target is None:
        found = [ep for ep in entry_points(group=group) if ep.name == name]
        if not found:
            known = sorted({*table, *(ep.name for ep in entry_points(group=group))})
            raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(known)}", param="type")
        try:
            target = table[name] = found[0].load()
        except ImportError as exc:  # an optional package the module imports at the top
            raise MissingDependencyError(
                f"{kind} {name!r} cannot be loaded: {exc}; see the extras in tokenlean.extras", param="type"
            ) from exc
    if isinstance(target, str):
        module_name, _, attribute = target.partition(":")
        target = table[name] = getattr(importlib.import_module(module_name), attribute)
    return target
