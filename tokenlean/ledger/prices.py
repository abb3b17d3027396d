"""Prices per model, so the ledger can say what tokens cost and what was saved in money.

Defaults are list prices in US dollars per million tokens (prompt, completion) as the providers
published them on ``PRICES_DATE``; check them against your contract, and give your own table
(``tokenlean serve --prices prices.json``, a JSON object ``{"model": [prompt, completion]}``).
A model not in the table is priced at the ``"*"`` entry; the default ``"*"`` is gpt-4o-mini's
price, an assumption stated on every report (``fallback`` in ``PriceTable.source``) so that a
self-hosted model's savings still read as money a hosted equivalent would have cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tokenlean.errors import ConfigError

__all__ = ["DEFAULT_PRICES", "PRICES_DATE", "PriceTable"]

PRICES_DATE = "2025-06-01"
DEFAULT_PRICES: Mapping[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "*": (0.15, 0.60),
}


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Dollars per million prompt and completion tokens, by model name (longest prefix wins)."""

    prices: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    date: str = PRICES_DATE

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """Defaults overlaid with a JSON file ``{"model": [prompt_per_million, completion_per_million]}``."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read price table {path}: {exc}", param="prices") from exc
        if not isinstance(raw, dict):
            raise ConfigError(
                "price table must be a JSON object of model -> [prompt, completion]", param="prices"
            )
        table = dict(DEFAULT_PRICES)
        for model, pair in raw.items():
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(p, (int, float)) and p >= 0 for p in pair)
            ):
                raise ConfigError(
                    f"price for {model!r} must be [prompt, completion] dollars per million tokens",
                    param=f"prices.{model}",
                )
            table[model] = (float(pair[0]), float(pair[1]))
        return cls(table, date=f"{PRICES_DATE} defaults + {Path(path).name}")

    def rates(self, model: str) -> tuple[float, float]:
        """(prompt, completion) dollars per million tokens for ``model``."""
        match = max(
            (name for name in self.prices if name != "*" and model.startswith(name)), key=len, default="*"
        )
        return self.prices.get(match, self.prices.get("*", (0.0, 0.0)))

    def source(self, model: str) -> str:
        """Where ``model``'s price comes from: its own entry or the ``*`` fallback."""
        named = any(name != "*" and model.startswith(name) for name in self.prices)
        return "listed" if named else "fallback"

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for the given tokens."""
        prompt_rate, completion_rate = self.rates(model)
        return (prompt_tokens * prompt_rate + completion_tokens * completion_rate) / 1_000_000
