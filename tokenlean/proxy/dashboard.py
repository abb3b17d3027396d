"""``GET /dashboard``: one self-contained HTML page over the savings ledger (no CDN, works offline).

The page carries its data inline (the same ``tokenlean.ledger.summary.overview`` that ``tokenlean
report`` prints) and draws it with a few lines of its own script into inline SVG, so it needs
nothing but the one response. ``GET /dashboard.json`` returns the same data.

Access: with API keys configured the page needs one (``Authorization: Bearer <key>``, or
``?key=<key>`` for a browser's address bar) and shows that key's tenant's rows only; without keys
it shows every row. The ``?since=`` parameter (``90s``, ``15m``, ``1h``, ``7d``) limits the window.
Quality checks are shown when an end-to-end benchmark result (``bench/results/e2e.json``) is found.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.responses import Response as HTTPResponse

from tokenlean.errors import TokenleanError
from tokenlean.ledger import Ledger
from tokenlean.ledger.summary import overview, parse_since
from tokenlean.proxy.auth import ApiKeys
from tokenlean.proxy.dashboard_page import PAGE
from tokenlean.proxy.errors import error_response

__all__ = ["add_dashboard", "dashboard_data"]

DEFAULT_BENCHMARK = Path("bench/results/e2e.json")


def _benchmark(path: Path | None) -> dict[str, Any] | None:
    """The e2e benchmark's summary (slices, goals), when its result file exists."""
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {"file": str(path), "slices": data.get("slices", []), "goals": data.get("goals", [])}


def dashboard_data(
    ledger: Ledger, *, tenant: str | None = None, since_s: float | None = None, benchmark: Path | None = None
) -> dict[str, Any]:
    """What the page shows: the ledger overview (one tenant's rows when ``tenant``) and the benchmark."""
    rows = ledger.records(since_s)
    if tenant is not None:
        rows = [r for r in rows if r.tenant == tenant]
    data = overview(rows, ledger.prices)
    data["benchmark"] = _benchmark(benchmark)
    data["tenant"] = tenant or "all"
    return data


def add_dashboard(
    app: FastAPI, keys: ApiKeys, ledger: Ledger, *, benchmark: Path | None = DEFAULT_BENCHMARK
) -> None:
    """Register ``/dashboard`` and ``/dashboard.json`` on ``app``."""

    def data_for(http: HTTPRequest) -> dict[str, Any]:
        header = http.headers.get("authorization")
        key = http.query_params.get("key")
        tenant = keys.tenant(f"Bearer {key}" if key and not header else header)
        return dashboard_data(
            ledger, tenant=tenant, since_s=parse_since(http.query_params.get("since")), benchmark=benchmark
        )

    @app.get("/dashboard", response_class=HTMLResponse)
    async def dashboard(http: HTTPRequest) -> HTTPResponse:
        try:
            data = await asyncio.to_thread(data_for, http)
        except TokenleanError as exc:
            return error_response(exc)
        inline = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        return HTMLResponse(PAGE.replace("/*DATA*/null", inline))

    @app.get("/dashboard.json")
    async def dashboard_json(http: HTTPRequest) -> HTTPResponse:
        try:
            return JSONResponse(await asyncio.to_thread(data_for, http))
        except TokenleanError as exc:
            return error_response(exc)
