"""The server's configuration file: every ``tokenlean serve`` flag, the pipeline and a model list.

One YAML (or JSON) file, given with ``--config``, holds up to four top-level sections; a plain
pipeline spec (``backend``/``stages`` only) is still a valid file::

    server:                      # every flag of `tokenlean serve`, underscores for dashes
      port: 8000
      workers: 2
      api_keys: ["${TEAM_KEY}"]  # ${VAR} is read from the environment; ${VAR:-default} too
      requests_per_minute: 600
      redis_url: redis://127.0.0.1:6379/0
    backend: {type: openai, options: {upstreams: ["http://127.0.0.1:8001/v1"]}}
    stages: [{type: cache, options: {semantic: false}}]
    models:                      # several models behind one proxy, each its own pipeline
      - name: small
        upstreams: ["http://10.0.0.1:8001/v1", "http://10.0.0.2:8001/v1"]   # replicas
        options: {read_timeout: 60, max_retries: 1}                        # OpenAIBackend's
        stages: [{type: cache, options: {semantic: false}}]
      - name: large
        model: meta-llama/Llama-3.1-70B-Instruct                            # the name upstream
        upstreams: ["http://10.0.1.1:8001/v1"]

Flags given on the command line win over the file. Every key is validated when the server starts
and a wrong one is a ``ConfigError`` naming it (``server.port: Input should be a valid integer``),
as is a ``${VAR}`` that the environment does not define.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tokenlean.errors import ConfigError
from tokenlean.middleware.spec import PipelineSpec, StageSpec

__all__ = ["ModelGroup", "ServerConfig", "ServerSettings", "interpolate", "load_config"]

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ServerSettings(BaseModel):
    """The flags of ``tokenlean serve`` (``None``: not set here, the default applies)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    upstream: list[str] | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=0, le=65535)
    workers: int | None = Field(default=None, ge=1)
    api_key: list[str] | None = None
    api_keys: list[str] | None = None  # the same as api_key, the spelling a file reads better with
    api_key_file: str | None = None
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    redis_url: str | None = None
    max_body_bytes: int | None = Field(default=None, gt=0)
    max_messages: int | None = Field(default=None, gt=0)
    max_option_bytes: int | None = Field(default=None, gt=0)
    health_port: int | None = Field(default=None, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    access_log: bool | None = None
    relay: bool | None = None
    warm_up: bool | None = None
    profile: Literal["lean", "lossless", "off"] | None = None
    ledger: str | None = None
    prices: str | None = None


class ModelGroup(BaseModel):
    """One model name routed to its own upstream replicas, with its own stage pipeline."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    upstreams: list[str] = Field(min_length=1)
    model: str | None = None  # the name the upstream serves, when it differs from ``name``
    api_key: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # OpenAIBackend's: timeouts, retries...
    stages: list[StageSpec] = Field(default_factory=list)


class ServerConfig(BaseModel):
    """The whole file: server flags, the default pipeline and the model list."""

    model_config = ConfigDict(extra="allow")  # the other keys are the pipeline spec's, checked there
    server: ServerSettings = Field(default_factory=ServerSettings)
    models: list[ModelGroup] = Field(default_factory=list)

    def pipeline_spec(self) -> PipelineSpec:
        """The default pipeline (``backend``, ``stages``, ...), validated as a ``PipelineSpec``."""
        return PipelineSpec.parse(dict(self.model_extra or {}))


def interpolate(value: Any, where: str = "") -> Any:
    """``value`` with every ``${VAR}`` / ``${VAR:-default}`` in its strings read from the environment."""
    if isinstance(value, dict):
        return {k: interpolate(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{where}.{i}") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name, default)
        if found is None:
            raise ConfigError(f"{where}: environment variable {name} is not set", param=where)
        return found

    return _VARIABLE.sub(substitute, value)


def load_config(path: str | Path) -> ServerConfig:
    """Read, interpolate and validate a config file; ``ConfigError`` names the offending key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    data = _parse(path, text)
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    data = interpolate(data)
    try:
        config = ServerConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"config {path}: {where}: {first['msg']}", param=where) from exc
    config.pipeline_spec()  # the pipeline part fails here too, naming its key
    names = [group.name for group in config.models]
    if len(set(names)) != len(names):
        raise ConfigError(f"config {path}: models: a name appears twice in {names}", param="models")
    return config


def _parse(path: Path, text: str) -> Any:
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        from tokenlean.yaml_text import load_yaml

        try:
            return load_yaml(text) or {}  # `mode: on` is the word on, not True
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config {path} is not valid JSON: {exc}") from exc
