"""The documented examples run, so they cannot rot.

``python_blocks(path, heading)`` takes the fenced ``python`` blocks of one section of a Markdown
file (the heading and everything under it, up to the next heading of the same or a higher level).
The blocks run in order, as one script, in a fresh interpreter, as a reader would paste them.
Point ``DOCUMENTED`` at the README's section as well when it carries the same text.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tokenlean.errors import ConfigError
from tokenlean.middleware import registry

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = [(ROOT / "README.md", "LangChain and the decorator")]
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^```(\w*)\s*$")


def python_blocks(path: Path, heading: str) -> list[str]:
    """The ```python blocks under ``heading`` in ``path``; ``LookupError`` if there is no such heading."""
    blocks: list[str] = []
    level: int | None = None
    fence: str | None = None
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if fence is None and (match := _HEADING.match(line)):
            depth, title = len(match.group(1)), match.group(2)
            if level is not None and depth <= level:
                break
            if level is None and title == heading:
                level = depth
            continue
        if level is None:
            continue
        if (match := _FENCE.match(line)) and fence is None:
            fence, lines = match.group(1), []
        elif line.startswith("```") and fence is not None:
            if fence == "python":
                blocks.append("\n".join(lines))
            fence = None
        elif fence is not None:
            lines.append(line)
    if level is None:
        raise LookupError(f"{path}: no heading {heading!r}")
    return blocks


def test_python_blocks_takes_one_section_only(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# A\n```python\na = 1\n```\n## Sub\n```python\n# not a heading\nb = 2\n```\n```yaml\nc: 3\n```\n"
        "# B\n```python\nd = 4\n```\n",
        encoding="utf-8",
    )
    assert python_blocks(doc, "A") == ["a = 1", "# not a heading\nb = 2"]
    assert python_blocks(doc, "Sub") == ["# not a heading\nb = 2"]
    with pytest.raises(LookupError):
        python_blocks(doc, "C")


def _missing_stage_modules(code: str) -> list[str]:
    """Technique stages the examples use that are not installed yet (other issues deliver them)."""
    names = set(re.findall(r"""["']type["']\s*:\s*["'](\w+)["']""", code))
    modules = set(re.findall(r"from (tokenlean\.\w+\.stage) import", code))
    missing = {module for module in modules if importlib.util.find_spec(module) is None}
    for name in names:
        try:
            registry.resolve_stage(name)
        except ModuleNotFoundError as exc:
            missing.add(str(exc.name))
        except ConfigError:  # not a stage name (a backend's type): the run itself will tell
            continue
    return sorted(missing)


@pytest.mark.slow
@pytest.mark.parametrize(("path", "heading"), DOCUMENTED, ids=lambda value: str(value))
def test_documented_examples_run(path: Path, heading: str) -> None:
    blocks = python_blocks(path, heading)
    assert len(blocks) >= 5, "the section lost its examples"
    code = "\n\n".join(blocks)
    missing = _missing_stage_modules(code)
    if missing:
        unavailable(f"the examples use stages not installed: {', '.join(missing)}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"examples of {path.name} § {heading} failed:\n{done.stderr[-4000:]}"
    assert "Paris" in done.stdout
