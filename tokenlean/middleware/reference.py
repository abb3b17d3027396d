"""``docs/config-reference.md``, generated from the stages' options models.

``python -m tokenlean.middleware.reference > docs/config-reference.md`` rewrites it; a test
compares the file with ``render()``, so the reference cannot drift from the code. One table per
built-in stage (and per backend that reads call options): each option with its type, default,
where it can be set (``spec``: the stage's options in a pipeline spec; ``body``:
``extra_body={"tokenlean": {stage: {...}}}`` and the LangChain/decorator call options;
``header``: ``x-tokenlean-<stage>-<option>``) and its description (``Field(description=...)``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = ["render"]

_HEADER = """# Configuration reference

Generated from the options models by `python -m tokenlean.middleware.reference > docs/config-reference.md`;
do not edit by hand (a test fails when this file is stale).

*Set in*: **spec**: the stage's `options` in a pipeline spec (YAML/JSON), checked at startup;
**body**: per call, `extra_body={"tokenlean": {"<stage>": {...}}}` (also the LangChain model's and
the decorator's call options); **header**: per call, `x-tokenlean-<stage>-<option>: <value>` (the
value converted by the option's type: `1`/`true`/`yes` for a boolean, JSON for a list). A per-call
option left unset takes the stage's spec setting; `null` is accepted only where the type says so. A bad value is a 400 naming `tokenlean.<stage>.<option>`
(a bad spec option a startup error naming `stages.<stage>.options.<option>`).
"""


def render() -> str:
    """The whole reference as Markdown."""
    sections = [_HEADER]
    for kind, name, owner in _owners():
        sections.append(_section(kind, name, owner))
    return "\n".join(sections)


def _owners() -> Iterator[tuple[str, str, Any]]:
    """tokenlean's own stages, then its backends that read call options (sorted by name)."""
    for group, kind in (("tokenlean.stages", "stage"), ("tokenlean.backends", "backend")):
        for ep in sorted(entry_points(group=group), key=lambda ep: ep.name):
            if ep.value.startswith("tokenlean."):
                owner = ep.load()
                if getattr(owner, "options_model", None) or getattr(owner, "spec_model", None):
                    yield kind, ep.name, owner
                for option, _model in sorted((getattr(owner, "options_models", None) or {}).items()):
                    yield "backend option", option, owner


def _section(kind: str, name: str, owner: Any) -> str:
    if kind == "backend option":
        call, spec = owner.options_models[name], None
        title = f"## `{name}` (call options of the `{owner.__name__}` backend)"
    else:
        call, spec = getattr(owner, "options_model", None), getattr(owner, "spec_model", None)
        title = f"## `{name}` ({kind} `{owner.__name__}`)"
    lines = [title, ""]
    if call is not None and call.__doc__:
        lines += [f"Per call: {_first_line(call.__doc__)}", ""]
    lines += ["| Option | Type | Default | Set in | Description |", "|---|---|---|---|---|"]
    for option, where, field, model in _rows(spec, call):
        schema = model.model_json_schema()["properties"][option]
        per_call = model is call
        if per_call and "anyOf" in schema and option not in getattr(model, "nullable", ()):  # null refused
            schema = {**schema, "anyOf": [arm for arm in schema.get("anyOf", ()) if arm != {"type": "null"}]}
            schema = schema["anyOf"][0] if len(schema["anyOf"]) == 1 else schema
        default = "unset" if per_call and field.default is None else _default(field)
        row = [f"`{option}`", _type(schema), default, where, _cell(field.description or "")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _rows(
    spec: type[BaseModel] | None, call: type[BaseModel] | None
) -> Iterator[tuple[str, str, FieldInfo, type[BaseModel]]]:
    """Spec options first (with the call's description where the call sets it too), then call-only ones."""
    spec_fields = spec.model_fields if spec is not None else {}
    call_fields = call.model_fields if call is not None else {}
    for option, field in spec_fields.items():
        both = option in call_fields
        described = field if field.description or not both else call_fields[option]
        merged = FieldInfo.merge_field_infos(field, description=described.description)
        assert spec is not None
        yield option, "spec, body, header" if both else "spec", merged, spec
    for option, field in call_fields.items():
        if option not in spec_fields:
            assert call is not None
            yield option, "body, header", field, call


def _type(schema: dict[str, Any]) -> str:
    """A JSON schema as a short type: ``number (> 0, <= 1) | null``, ``"auto" | "off"``, ``list[string]``."""
    if "anyOf" in schema:
        return " \\| ".join(_type(arm) for arm in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    kind = str(schema.get("type", "any"))
    if kind == "array":
        kind = f"list[{_type(schema.get('items', {}))}]"
    elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        kind = f"map[string, {_type(schema['additionalProperties'])}]"
    bounds = [
        f"{sign} {schema[key]}"
        for key, sign in (
            ("exclusiveMinimum", ">"),
            ("minimum", ">="),
            ("exclusiveMaximum", "<"),
            ("maximum", "<="),
        )
        if key in schema
    ]
    if "pattern" in schema:
        bounds.append(f"matching `{schema['pattern']}`")
    if "minItems" in schema:
        bounds.append(f"at least {schema['minItems']}")
    return f"{kind} ({', '.join(bounds)})" if bounds else kind


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, str) and len(value) > 40:  # a prompt template: see the code
        return "built in"
    try:
        return f"`{json.dumps(value)}`"
    except TypeError:
        return f"`{value!r}`"


def _first_line(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n")[0].split())


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    print(render(), end="")
