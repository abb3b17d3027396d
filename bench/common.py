"""Shared plumbing for benchmarks: environment record, goals, percentiles, result files.

Every benchmark writes ``bench/results/NAME.json`` (environment, every figure, and a ``goals``
list whose ``met`` is computed from the figures, never typed in) and ``bench/results/NAME.png``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.exists():  # a checkout whose parent holds shared/ under another layout
    DATA = Path(os.environ.get("TOKENLEAN_DATA", "../shared/data")).resolve()

_PACKAGES = (
    "tokenlean",
    "torch",
    "transformers",
    "sentence-transformers",
    "faiss-cpu",
    "numpy",
    "fastapi",
    "httpx",
)


def environment(extra_packages: Sequence[str] = ()) -> dict[str, Any]:
    """Machine and library versions, so a figure can be traced to where it was measured."""
    versions = {}
    for name in (*_PACKAGES, *extra_packages):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": versions,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def goal(name: str, target: str, achieved: Any, met: Callable[[Any], bool] | bool) -> dict[str, Any]:
    """One goal row; ``met`` is a predicate over ``achieved`` (or a bool computed by the caller)."""
    ok = met(achieved) if callable(met) else bool(met)
    return {"name": name, "target": target, "achieved": achieved, "met": bool(ok)}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return float(statistics.median(values)) if values else float("nan")


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/NAME.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print (and return) a GitHub-markdown table, the form the README quotes."""

    def cell(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text)
    return text


@contextlib.contextmanager
def started_process(
    argv: list[str],
    ready_url: str,
    log: Path | None = None,
    timeout: float = 90.0,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (output to ``log``, or discarded; ``env`` added to this process's environment)
    until the block ends; wait for ``ready_url`` first."""
    child_env = {**os.environ, **(env or {})}
    with open(log or os.devnull, "wb") as sink:
        proc = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, env=child_env
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[:5]} did not come up; log: {log}") from None
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
