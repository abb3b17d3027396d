"""Several models behind one proxy: a ``ModelRouter`` sends each request to its model's pipeline.

The config file's ``models:`` list (tokenlean.proxy.settings) gives each public model name its
own upstream replicas, timeouts and stages; the proxy sees one object that answers like a
``Pipeline`` (call it, ``.backend.models()``, ``.stages``, ``aclose()``), so routes, limits and
metrics do not change. ``/v1/models`` lists the configured names.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from tokenlean.errors import ConfigError, UnknownModelError
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.stage import Capabilities, Stage
from tokenlean.middleware.types import Request, Response

__all__ = ["ModelRouter", "build_router"]


class _Upstreams:
    """Every group's upstream collectors as one (``/metrics`` registers a single collector)."""

    def __init__(self, sources: list[Any]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Any]:
        """Each metric family once, with every group's samples (they are labelled by upstream url)."""
        families: dict[str, Any] = {}
        for source in self._sources:
            for family in source.collect():  # samples carry the upstream url: merge by name
                if family.name in families:
                    families[family.name].samples.extend(family.samples)
                else:
                    families[family.name] = family
        yield from families.values()

    async def refresh(self) -> None:
        """Refresh every group's upstream figures (vLLM's own /metrics) at once."""
        await asyncio.gather(*(s.refresh() for s in self._sources if hasattr(s, "refresh")))


class _Backends:
    """The groups' backends seen as one: the model names, health and upstream metrics."""

    capabilities = Capabilities(
        tools=True, response_format=True, content_parts=None
    )  # each group checks its own

    def __init__(self, groups: Mapping[str, Pipeline]) -> None:
        self._groups = groups
        sources = [
            g.backend.upstream_metrics for g in groups.values() if hasattr(g.backend, "upstream_metrics")
        ]
        self.upstream_metrics = _Upstreams(sources) if sources else None

    def models(self) -> list[str]:
        """The public model names, in config order: what /v1/models lists."""
        return list(self._groups)

    async def health(self) -> dict[str, Any]:
        """Each model's upstream report; ``unavailable`` only when no model can answer."""
        reports = {}
        for name, pipeline in self._groups.items():
            report = getattr(pipeline.backend, "health", None)
            reports[name] = await report() if report is not None else {"status": "ok"}
        states = {r.get("status", "ok") for r in reports.values()}
        status = "ok" if states == {"ok"} else ("unavailable" if states == {"unavailable"} else "degraded")
        return {"status": status, "models": reports}

    async def complete(self, request: Request) -> Response:  # never called: the router dispatches
        raise UnknownModelError(f"model {request.model!r} is not served here", param="model")


class ModelRouter:
    """Dispatch on ``request.model`` to that model's own ``Pipeline``."""

    def __init__(self, groups: Mapping[str, Pipeline]) -> None:
        self.groups = dict(groups)
        self.backend = _Backends(self.groups)
        self.stages: list[Stage] = list(itertools.chain.from_iterable(g.stages for g in self.groups.values()))

    async def __call__(self, request: Request) -> Response:
        pipeline = self.groups.get(request.model)
        if pipeline is None:
            raise UnknownModelError(
                f"model {request.model!r} is not served here; available: {', '.join(self.groups)}",
                param="model",
            )
        return await pipeline(request)

    def models(self) -> list[str]:
        """The model names a request may ask for: the configured ones (``Pipeline.models``'s role)."""
        return list(self.groups)

    def stage(self, name: str) -> Stage | None:
        """The first stage called ``name`` in any group (the ledger looks for the cache's Redis)."""
        return next((s for s in self.stages if s.name == name), None)

    async def warm_up(self) -> None:
        """Warm every group's pipeline up (``Pipeline.warm_up``)."""
        for pipeline in self.groups.values():
            await pipeline.warm_up()

    async def aclose(self) -> None:
        """Close every group's pipeline."""
        for pipeline in self.groups.values():
            await pipeline.aclose()


def build_router(groups: list[Any]) -> ModelRouter:
    """A router over the config file's ``models:`` (``ModelGroup``s), each group's stages built."""
    from tokenlean.backends.openai_http import OpenAIBackend
    from tokenlean.middleware.spec import PipelineSpec

    pipelines: dict[str, Pipeline] = {}
    for group in groups:
        try:
            backend = OpenAIBackend(
                group.upstreams, model=group.model or group.name, api_key=group.api_key, **group.options
            )
        except TypeError as exc:
            raise ConfigError(
                f"models.{group.name}.options: {exc}", param=f"models.{group.name}.options"
            ) from exc
        spec = PipelineSpec(stages=group.stages)
        pipelines[group.name] = spec.build(backend)
    return ModelRouter(pipelines)
