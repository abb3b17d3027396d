"""The savings ledger: one row per request (tokens spent and the unoptimised baseline, money,
latency, the stages that acted; never text), in SQLite or Redis, summed for ``/metrics``,
``tokenlean report`` and ``/dashboard``. See ``docs/ledger.md``."""

from __future__ import annotations

from tokenlean.ledger.ledger import Ledger
from tokenlean.ledger.prices import DEFAULT_PRICES, PRICES_DATE, PriceTable
from tokenlean.ledger.record import LedgerRecord, acted_stages, record_exchange
from tokenlean.ledger.stores import LedgerStore, RedisLedgerStore, SQLiteLedgerStore

__all__ = [
    "DEFAULT_PRICES",
    "PRICES_DATE",
    "Ledger",
    "LedgerRecord",
    "LedgerStore",
    "PriceTable",
    "RedisLedgerStore",
    "SQLiteLedgerStore",
    "acted_stages",
    "open_ledger",
    "record_exchange",
]

DEFAULT_LEDGER_PATH = "~/.cache/tokenlean/ledger.sqlite"


def open_ledger(
    location: str | None = None, *, prices: PriceTable | None = None, max_rows: int = 1_000_000
) -> Ledger:
    """A ledger at ``location``: a ``redis://`` URL, a SQLite path, or ``:memory:`` (default: the user cache)."""
    from pathlib import Path

    location = location or DEFAULT_LEDGER_PATH
    store: LedgerStore
    if location.startswith(("redis://", "rediss://", "unix://")):
        store = RedisLedgerStore(location, max_rows=max_rows)
    else:
        path = location if location == ":memory:" else str(Path(location).expanduser())
        store = SQLiteLedgerStore(path, max_rows=max_rows)
    return Ledger(store, prices=prices)
