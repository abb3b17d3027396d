"""``PipelineSpec``: a YAML or JSON file that declares a pipeline.

```yaml
backend: {type: local, options: {model: /path/to/model}}
stages:
  - type: cache
    options: {store: sqlite, path: cache.db}
  - type: compress
    policy: raise          # default: bypass
    options: {rate: 0.5}
```

Unknown keys anywhere are rejected with the key named: a typo in a config file should fail at
startup, not silently disable an optimisation. A stage class is built with ``cls(**options)``,
or with ``cls.from_spec(options, backend=...)`` when it needs the backend (a cascade's tiers);
a class with a ``spec_model`` has its options validated through it first, so a wrong type is
named (``stages.compress.options.rate``) before anything is built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tokenlean.errors import ConfigError
from tokenlean.extras import check_backend, check_stage
from tokenlean.middleware.options import construct
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.registry import resolve_backend, resolve_stage
from tokenlean.middleware.stage import Backend, Stage

__all__ = ["BackendSpec", "PipelineSpec", "StageSpec"]


class StageSpec(BaseModel):
    """One stage: its registered ``type``, failure ``policy`` and constructor ``options``."""

    model_config = ConfigDict(extra="forbid")
    type: str
    policy: Literal["raise", "bypass"] = "bypass"
    options: dict[str, Any] = Field(default_factory=dict)


class BackendSpec(BaseModel):
    """The backend: its registered ``type`` and constructor ``options``."""

    model_config = ConfigDict(extra="forbid")
    type: str = "local"
    options: dict[str, Any] = Field(default_factory=dict)


class PipelineSpec(BaseModel):
    """A whole pipeline: one backend and the stages around it, outermost first."""

    model_config = ConfigDict(extra="forbid")
    backend: BackendSpec = Field(default_factory=BackendSpec)
    stages: list[StageSpec] = Field(default_factory=list)
    profile: str | None = None
    """A named profile (``lean``, ``lossless``, ``off``; see ``tokenlean.middleware.profiles``) the stages merge
    into; ``None``: exactly the stages listed."""

    @classmethod
    def parse(cls, data: dict[str, Any]) -> PipelineSpec:
        """Validate ``data``; ``ConfigError`` names the first offending key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"pipeline spec: {where}: {first['msg']}", param=where) from exc

    @classmethod
    def from_file(cls, path: str | Path) -> PipelineSpec:
        """Read a ``.yaml``/``.yml`` or ``.json`` spec file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read pipeline spec {path}: {exc}") from exc
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            from tokenlean.yaml_text import load_yaml

            try:
                data = load_yaml(text) or {}  # `mode: on` is the word on, not True
            except yaml.YAMLError as exc:
                raise ConfigError(f"pipeline spec {path} is not valid YAML: {exc}") from exc
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"pipeline spec {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"pipeline spec {path} must be a mapping at the top level")
        return cls.parse(data)

    def resolved(self) -> PipelineSpec:
        """This spec with its ``profile`` expanded into plain stages (itself when it names none)."""
        if self.profile is None:
            return self
        from tokenlean.middleware.profiles import expand

        return expand(self)

    def build_backend(self) -> Backend:
        """Construct the backend this spec names (its extra checked first: see tokenlean.extras)."""
        check_backend(self.backend.type, self.backend.options)
        return construct(  # type: ignore[no-any-return]
            resolve_backend(self.backend.type), self.backend.options, where="backend.options"
        )

    def build(self, backend: Backend | None = None) -> Pipeline:
        """Construct the pipeline; ``backend`` overrides the spec's own (the CLI's ``--upstream``)."""
        if self.profile is not None:
            return self.resolved().build(backend)
        backend = backend or self.build_backend()
        stages = [self._build_stage(spec, backend) for spec in self.stages]
        policies = {stage.name: spec.policy for stage, spec in zip(stages, self.stages, strict=True)}
        return Pipeline(backend, stages, policies=policies)

    @staticmethod
    def _build_stage(spec: StageSpec, backend: Backend) -> Stage:
        check_stage(spec.type, spec.options)  # a missing extra fails here, at startup
        cls = resolve_stage(spec.type)
        if hasattr(cls, "from_spec"):
            try:
                return cls.from_spec(spec.options, backend=backend)  # type: ignore[no-any-return]
            except TypeError as exc:
                raise ConfigError(f"stage {spec.type}: {exc}", param=f"stages.{spec.type}.options") from exc
        return construct(cls, spec.options, where=f"stages.{spec.type}.options")  # type: ignore[no-any-return]
