"""Skeleton-of-Thought (Ning et al., ICLR 2024, arXiv 2307.15337) with its router SoT-R.

``SkeletonStage`` (stage name ``sot``) routes a request, asks for a skeleton, expands its points
in parallel and assembles them in order; ``SkeletonRouter`` is the trained router;
``parse_skeleton`` reads a skeleton out of a model's text. See ``stage.py`` for the behaviour and
``docs/sot.md`` for options and measurements.
"""

from tokenlean.reasoning.sot.parse import clean_expansion, parse_skeleton
from tokenlean.reasoning.sot.prompts import SkeletonPrompts
from tokenlean.reasoning.sot.router import RouterWeights, SkeletonRouter, read_router_csv
from tokenlean.reasoning.sot.stage import SkeletonStage

__all__ = [
    "RouterWeights",
    "SkeletonPrompts",
    "SkeletonRouter",
    "SkeletonStage",
    "clean_expansion",
    "parse_skeleton",
    "read_router_csv",
]
