"""What the LangChain chat model and the decorator share: per-call options, content, specs.

Both take per-call options as a mapping of stage name to that stage's options, the shape of the
proxy's ``extra_body={"tokenlean": {...}}``. OpenAI-style bodies and the events' JSON come from
the proxy's wire module (``tokenlean.wire``, which needs only pydantic), so a caller reads
the same fields whichever front-end it used.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tokenlean.errors import BadRequestError
from tokenlean.middleware.options import validate_named_options
from tokenlean.middleware.spec import PipelineSpec

__all__ = ["flatten_content", "load_spec", "merge_options", "parse_options"]


def parse_options(raw: Any, *, param: str = "tokenlean") -> dict[str, Any]:
    """Validate per-call options: a mapping of stage name to that stage's options.

    Each registered stage's value (a mapping for most, a word such as ``"off"`` for some) is
    validated through that stage's options model, as the proxy does (``tokenlean.middleware.options``).
    A wrong value is the caller's mistake: a ``BadRequestError`` naming the path
    (``tokenlean.compress.rate``), the error the proxy turns into a 400.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(stage, str) for stage in raw):
        raise BadRequestError(f"{param} must be a mapping of stage name to options", param=param)
    validate_named_options(raw)
    return {stage: dict(value) if isinstance(value, Mapping) else value for stage, value in raw.items()}


def merge_options(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge option layers; later ones win, field by field where both values are mappings."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for stage, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(stage), Mapping):
                merged[stage] = {**merged[stage], **value}
            else:
                merged[stage] = dict(value) if isinstance(value, Mapping) else value
    return merged


def flatten_content(content: Any, *, param: str) -> str:
    """Plain text of a message's content: a string, or a list of text parts.

    Non-text parts (images, audio) cannot reach a text-only pipeline; they are refused by name
    rather than dropped, because a silently dropped image changes the question.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequestError(f"{param} must be a string or a list of text parts", param=param)
    texts: list[str] = []
    for index, part in enumerate(content):
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
            raise BadRequestError(
                f"{param}[{index}]: only text parts are supported, got {kind!r}", param=param
            )
    return "".join(texts)


def load_spec(spec: PipelineSpec | Mapping[str, Any] | str | Path) -> PipelineSpec:
    """A ``PipelineSpec`` from a spec object, a dict (as parsed YAML) or a YAML/JSON file path."""
    if isinstance(spec, PipelineSpec):
        return spec
    if isinstance(spec, Mapping):
        return PipelineSpec.parse(dict(spec))
    return PipelineSpec.from_file(spec)
