"""YAML as people write specs: ``on``/``off``/``yes``/``no`` stay words (the YAML 1.2 core schema).

PyYAML follows YAML 1.1, where ``mode: on`` is the boolean ``True``: a spec saying SoT
``mode: on`` then failed at startup ("mode must be auto, on or off"), and ``country: no``
would have become ``False``. Only ``true``/``false`` (any case) are booleans here; everything else
PyYAML's safe loader does is unchanged.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

__all__ = ["load_yaml"]

_BOOL = "tag:yaml.org,2002:bool"


@cache
def _loader() -> Any:
    import yaml

    class CoreLoader(yaml.SafeLoader):
        """``SafeLoader`` with YAML 1.2's booleans."""

    CoreLoader.yaml_implicit_resolvers = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    CoreLoader.add_implicit_resolver(
        _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return CoreLoader


def load_yaml(text: str) -> Any:
    """Parse ``text`` (raises ``yaml.YAMLError`` as ``yaml.safe_load`` does)."""
    import yaml

    return yaml.load(text, Loader=_loader())  # a SafeLoader subclass: no arbitrary objects
