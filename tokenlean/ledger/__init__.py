"""The savings ledger: one row per request (tokens spent and the unoptimised baseline, money,
latency, the stages that acted; never text), in SQLite or Redis, summed for ``/metrics``,
``tokenlean report`` and ``/dashboard``. See ``docs/ledger.md``."""

from __future__ import annotations

from collections.abc import Callable

from tokenlean.ledger.ledger import Ledger
from tokenlean.ledger.prices import DEFAULT_PRICES, PRICES_DATE, PriceTable
from tokenlean.ledger.record import LedgerRecord, acted_stages, record_exchange
from tokenlean.ledger.stores import LedgerStore, RedisLedgerStore, SQLiteLedgerStore
from tokenlean.middleware.types import Request

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
    "message_token_counter",
    "open_ledger",
    "record_exchange",
]

DEFAULT_LEDGER_PATH = "~/.cache/tokenlean/ledger.sqlite"


def open_ledger(
    location: str | None = None,
    *,
    prices: PriceTable | None = None,
    max_rows: int = 1_000_000,
    prompt_counter: Callable[[Request], int] | None = None,
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
    return Ledger(store, prices=prices, prompt_counter=prompt_counter)


def message_token_counter(model: str | None = None) -> Callable[[Request], int]:
    """Tokens of a request's message text in ``model``'s tokenizer (default the embedded model's),
    loaded on first use: the ledger's estimate of the prompt SoT's calls replaced."""
    from tokenlean.tokens import shared_token_counter

    def count(request: Request) -> int:
        text = (
            request.prompt if request.prompt is not None else "\n".join(m.content for m in request.messages)
        )
        return shared_token_counter(model).count(text)

    return count
