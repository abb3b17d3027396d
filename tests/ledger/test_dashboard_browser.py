"""``/dashboard`` in a real headless browser (Debian's chromium): it loads, its numbers are the
ledger's, it needs the API key, and a screenshot is taken. The proxy is a real uvicorn server in
front of the embedded SmolLM2 with an exact-match cache, so the ledger holds a real hit."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import unavailable
from tokenlean.cache.stage import CacheStage
from tokenlean.ledger import open_ledger
from tokenlean.ledger.summary import overview
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.proxy.app import create_app
from tokenlean.testing import free_port, headless_chromium

pytestmark = pytest.mark.slow
KEY = "dashboard-test-key"


@pytest.fixture
def served(shared_backend: Any, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    import uvicorn

    ledger = open_ledger(str(tmp_path / "ledger.sqlite"))
    app = create_app(Pipeline(shared_backend, [CacheStage(semantic=False)]), api_keys=[KEY], ledger=ledger)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ledger
    server.should_exit = True
    thread.join(30)
    ledger.close()


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        unavailable("chromium is not installed (scripts/setup-chromium.sh installs it)")
    return found


def _value(dom: str, element_id: str) -> float:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match is not None, f"{element_id} not rendered"
    return float(match.group(1).replace(",", "").replace("$", ""))


def test_dashboard_shows_the_ledger_in_a_real_browser(
    served: tuple[str, Any], model_name: str, tmp_path: Path
) -> None:
    binary = _chromium()
    base, ledger = served
    auth = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=base, timeout=120) as client:
        for question in (
            "What is the capital of France?",
            "What is the capital of France?",
            "Name a colour.",
        ):
            body = {
                "model": model_name,
                "messages": [{"role": "user", "content": question}],
                "max_tokens": 8,
                "temperature": 0,
            }
            assert client.post("/v1/chat/completions", json=body, headers=auth).status_code == 200
        assert client.get("/dashboard").status_code == 401  # keys configured: the page needs one
        assert client.get("/dashboard", params={"key": "wrong"}).status_code == 401
        metrics = client.get("/metrics").text

    expected = overview(ledger.records(), ledger.prices)["total"]
    assert expected["requests"] == 3 and expected["cache_hit_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert f"tokenlean_ledger_requests_total {float(expected['requests'])}" in metrics

    dom = headless_chromium(binary, "--dump-dom", f"{base}/dashboard?key={KEY}")
    assert 'data-rendered="yes"' in dom  # the page's own script ran to the end
    assert _value(dom, "kpi-requests") == expected["requests"]
    assert _value(dom, "kpi-tokens-spent") == expected["tokens_spent"]
    assert _value(dom, "kpi-tokens-saved") == expected["tokens_saved"] > 0
    assert _value(dom, "kpi-cache-hit-rate") == pytest.approx(expected["cache_hit_rate"], abs=1e-4)
    assert _value(dom, "stage-cache-tokens") == expected["tokens_saved"]  # the one hit saved it all
    assert re.search(r'(src|href)="(https?:)?//', dom) is None  # nothing is fetched from elsewhere

    shot = tmp_path / "dashboard.png"
    headless_chromium(
        binary, f"--screenshot={shot}", "--window-size=1200,1800", f"{base}/dashboard?key={KEY}"
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
