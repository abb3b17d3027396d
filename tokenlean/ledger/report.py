"""``tokenlean report [--since 1h] [--by tenant|stage|model]``: the savings table, and a PNG of it.

Reads the ledger the proxy writes (``--ledger``: the same location given to ``tokenlean serve``;
default the user-cache SQLite file, or ``TOKENLEAN_LEDGER``), prints one row per group with the
tokens and money spent and saved, and writes ``--png`` (default ``tokenlean-report.png``): tokens
spent and saved per group, and tokens saved over time.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenlean.ledger.prices import PriceTable
from tokenlean.ledger.record import LedgerRecord
from tokenlean.ledger.summary import BY, parse_since, summarize, timeline

__all__ = ["add_report_command", "format_table", "run_report"]

_COLUMNS = {
    "stage": ("key", "requests", "tokens_saved", "cost_saved"),
    "other": (
        "key",
        "requests",
        "tokens_spent",
        "tokens_baseline",
        "tokens_saved",
        "saved_pct",
        "cost",
        "cost_saved",
        "cache_hit_rate",
        "p50_ms",
        "p95_ms",
    ),
}


def add_report_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``tokenlean report``."""
    report = commands.add_parser(
        "report",
        help="print what the pipeline saved (from the ledger) and write a PNG",
        description="Savings from the ledger: tokens and money spent, what the unoptimised requests "
        "would have cost, per tenant, model or stage.",
    )
    report.add_argument("--since", help="window: 90s, 15m, 1h, 7d (default: everything)")
    report.add_argument("--by", choices=BY, default="model", help="group rows by (default model)")
    report.add_argument(
        "--ledger", default=os.environ.get("TOKENLEAN_LEDGER"), help="SQLite path or redis:// URL"
    )
    report.add_argument("--prices", help="price table JSON {model: [prompt, completion]} ($ per 1M tokens)")
    report.add_argument("--png", default="tokenlean-report.png", help="chart to write ('' for none)")
    report.set_defaults(handler=run_report)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table, one line per row."""

    def cell(value: Any) -> str:
        return f"{value:.6f}" if isinstance(value, float) and abs(value) < 1 and value else str(value)

    cells = [[str(c) for c in columns], *[[cell(r.get(c, "")) for c in columns] for r in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(line, widths)))
        for line in cells
    )


def write_png(
    path: str | Path, rows: Sequence[dict[str, Any]], records: Sequence[LedgerRecord], by: str
) -> None:
    """Tokens spent/saved per group, and tokens saved over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [r for r in rows if r["key"] != "total"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [str(r["key"]) for r in groups]
    if by != "stage":
        left.bar(names, [r["tokens_spent"] for r in groups], label="spent", color="#8a94a6")
    left.bar(names, [r["tokens_saved"] for r in groups], label="saved", color="#4f7cc9", alpha=0.8)
    left.set_title(f"tokens by {by}")
    left.legend()
    left.tick_params(axis="x", rotation=30)
    series = timeline(records)
    right.plot(range(len(series)), [s["tokens_saved"] for s in series], marker="o")
    right.set_title("tokens saved over time (24 slices of the window)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_report(args: argparse.Namespace) -> int:
    """The ``report`` command."""
    from tokenlean.ledger import open_ledger

    prices = PriceTable.from_file(args.prices) if args.prices else PriceTable()
    ledger = open_ledger(args.ledger, prices=prices)
    try:
        records = ledger.records(parse_since(args.since))
    finally:
        ledger.close()
    rows = summarize(records, args.by, prices)
    print(format_table(rows, _COLUMNS["stage" if args.by == "stage" else "other"]))
    estimated = sum(r.estimated for r in records)
    print(
        f"\n{len(records)} requests; {estimated} with estimated baselines (docs/ledger.md); "
        f"prices as of {prices.date}",
        file=sys.stderr,
    )
    if args.png and records:
        write_png(args.png, rows, records, args.by)
        print(f"wrote {args.png}", file=sys.stderr)
    return 0
