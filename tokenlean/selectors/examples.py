"""Demonstration examples and their loaders (JSONL and CSV).

A demonstration is an ``input`` (what the user would say), an ``output`` (what the assistant
should answer) and, for classification, an optional ``label`` used by label balancing. When a file
has a label but no output column, the label is the output (the common classification layout).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenlean.errors import ConfigError

__all__ = ["Example", "examples_from_records", "load_examples", "write_examples_jsonl"]


@dataclass(frozen=True, slots=True)
class Example:
    """One demonstration: a user ``input``, the assistant's ``output`` and an optional ``label``."""

    input: str
    output: str
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The example as a JSON-ready dict (the JSONL line format)."""
        return asdict(self)


def examples_from_records(
    records: Iterable[Mapping[str, Any]],
    *,
    input_key: str = "input",
    output_key: str = "output",
    label_key: str | None = "label",
    source: str = "records",
) -> list[Example]:
    """Build examples from dict-like rows; a row without ``output_key`` uses its label as output."""
    examples = []
    for number, row in enumerate(records, start=1):
        if input_key not in row:
            raise ConfigError(f"{source}: row {number} has no {input_key!r} field", param="input_key")
        label = row.get(label_key) if label_key else None
        output = row.get(output_key, label)
        if output is None:
            raise ConfigError(
                f"{source}: row {number} has neither {output_key!r} nor a label", param="output_key"
            )
        examples.append(Example(str(row[input_key]), str(output), None if label is None else str(label)))
    return examples


def load_examples(
    path: str | Path,
    *,
    input_key: str = "input",
    output_key: str = "output",
    label_key: str | None = "label",
) -> list[Example]:
    """Read examples from a ``.jsonl`` or ``.csv`` file (the suffix decides)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read demonstration file {path}: {exc}", param="path") from exc
    if path.suffix == ".csv":
        rows: list[Mapping[str, Any]] = list(csv.DictReader(text.splitlines()))
    elif path.suffix in {".jsonl", ".ndjson"}:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: line {number} is not JSON: {exc}", param="path") from exc
    else:
        raise ConfigError(f"demonstration file {path} must end in .jsonl or .csv", param="path")
    return examples_from_records(
        rows, input_key=input_key, output_key=output_key, label_key=label_key, source=str(path)
    )


def write_examples_jsonl(examples: Iterable[Example], path: str | Path) -> None:
    """Write examples one JSON object per line (the format ``load_examples`` reads back)."""
    with Path(path).open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(example.to_dict(), ensure_ascii=False) + "\n" for example in examples)
