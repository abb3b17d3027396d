"""Routing by model name: ``model="cascade:<name>"`` picks a cascade the spec defines.

Clients that cannot send extra fields (a plain OpenAI SDK call, a LangChain model name) choose a
cascade through the ``model`` field, as RouteLLM encodes its router and threshold in the model
name. ``CascadeStage`` itself reads ``request.model``, so every front-end routes the same way;
these helpers let a front-end list the cascade models and reject an unknown one before running
the pipeline.

How the proxy uses them: ``/v1/models`` lists ``cascade_models(pipeline)`` beside the backend's
models; a chat or completion request whose ``model`` starts with ``cascade:`` is checked with
``resolve_cascade_model(pipeline, model)`` (it raises ``UnknownModelError``, a 404, for a name the
spec does not define) and then sent to the pipeline unchanged. The stage replaces the model name
with each tier's own before any backend sees it.
"""

from __future__ import annotations

from typing import Any

from tokenlean.errors import UnknownModelError
from tokenlean.reasoning.cascade.stage import CASCADE_PREFIX, CascadeStage

__all__ = ["CASCADE_PREFIX", "cascade_models", "cascade_stage", "is_cascade_model", "resolve_cascade_model"]


def is_cascade_model(model: str) -> bool:
    """Whether ``model`` names a cascade rather than a model."""
    return model.startswith(CASCADE_PREFIX)


def cascade_stage(pipeline: Any) -> CascadeStage | None:
    """The pipeline's cascade stage, if it has one (``pipeline.stage("cascade")``)."""
    stage = pipeline.stage(CascadeStage.name)
    return stage if isinstance(stage, CascadeStage) else None


def cascade_models(pipeline: Any) -> list[str]:
    """``cascade:<name>`` for every cascade the pipeline serves (empty without a cascade stage)."""
    stage = cascade_stage(pipeline)
    return stage.models() if stage is not None else []


def resolve_cascade_model(pipeline: Any, model: str) -> str | None:
    """The cascade name ``model`` selects; ``None`` for an ordinary model name.

    Raises ``UnknownModelError`` (404, ``param="model"``) for ``cascade:<name>`` when the
    pipeline has no cascade stage or no cascade of that name.
    """
    if not is_cascade_model(model):
        return None
    stage = cascade_stage(pipeline)
    if stage is None:
        raise UnknownModelError(
            f"model {model!r} names a cascade, but this pipeline has no cascade stage", param="model"
        )
    return stage.resolve_model(model)
