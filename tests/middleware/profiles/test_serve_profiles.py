"""A real ``tokenlean serve``: with no config it runs the lean profile, ``--profile off`` is the plain
proxy; both write the ledger, ``/metrics`` shows its totals and ``tokenlean report`` reads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tokenlean.testing import ServeProcess

pytestmark = pytest.mark.slow


def _serve(*flags: str) -> ServeProcess:
    return ServeProcess("--log-level", "warning", *flags, env={"HF_HUB_OFFLINE": "1"}, ready_timeout=240)


def _ask_twice(base: str) -> list[httpx.Response]:
    model = httpx.get(base + "/v1/models").json()["data"][0]["id"]
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Name a fruit."}],
        "max_tokens": 6,
        "temperature": 0,
    }
    return [httpx.post(base + "/v1/chat/completions", json=body, timeout=120) for _ in range(2)]


def test_serve_without_config_runs_the_lean_profile_and_keeps_a_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    with _serve("--ledger", str(ledger)) as proxy:
        first, second = _ask_twice(proxy.base)
        metrics = httpx.get(proxy.base + "/metrics").text
    stages = {e["stage"] for e in first.json()["tokenlean"]["events"]}
    assert {"cache", "compress", "sot"} <= stages  # every lean stage saw the request and decided
    assert second.headers["x-tokenlean-cache"] == "hit"
    assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert "tokenlean_ledger_requests_total 2.0" in metrics
    assert "tokenlean_ledger_cache_hits_total 1.0" in metrics

    png = tmp_path / "report.png"
    report = [
        sys.executable,
        "-m",
        "tokenlean.cli",
        "report",
        "--ledger",
        str(ledger),
        "--by",
        "stage",
        "--png",
        str(png),
    ]
    done = subprocess.run(report, capture_output=True, text=True, check=True, timeout=120)
    cache_row = next(line.split() for line in done.stdout.splitlines() if line.startswith("cache"))
    assert int(cache_row[1]) == 1 and int(cache_row[2]) > 0  # one hit, tokens saved
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_profile_off_is_the_plain_proxy(tmp_path: Path) -> None:
    with _serve("--profile", "off", "--ledger", str(tmp_path / "ledger.sqlite")) as proxy:
        first, second = _ask_twice(proxy.base)
    for response in (first, second):
        events = [e for e in response.json()["tokenlean"]["events"] if e["action"] != "timing"]
        assert events == []  # no stage, no drafting, no prefix reuse
    assert "x-tokenlean-cache" not in second.headers
