"""Retrieval-based demonstration selection: pools, kNN/MMR selection and the ``demos`` stage.

Importing this package loads no model and no faiss: heavy libraries are imported on first use.
"""

from __future__ import annotations

from tokenlean.selectors.examples import Example, load_examples
from tokenlean.selectors.pool import DemoPool
from tokenlean.selectors.selection import Selection, SelectionConfig, select
from tokenlean.selectors.stage import DemoStage

__all__ = ["DemoPool", "DemoStage", "Example", "Selection", "SelectionConfig", "load_examples", "select"]
