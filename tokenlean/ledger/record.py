"""One ledger row per answered request: what was spent upstream, and what the plain request would have cost.

A row never holds prompt or answer text: ids, names, counts, milliseconds and money only.

How the "unoptimised" figures are obtained (``baseline_*``), stage by stage, from the events:

- cache hit: nothing was spent; the baseline is the stored answer's own usage (measured when it was
  answered, so an estimate of what asking again would cost: ``estimated``);
- compression: the baseline prompt adds back the stage's ``tokens_saved`` (counted in the target
  tokenizer: measured);
- demonstrations: the baseline prompt takes away the ``tokens_added`` (measured);
- Skeleton-of-Thought: its usage sums the skeleton, opening-line and point calls; a normal answer's
  prompt is the request's own prompt, which SoT's calls do not report, so the baseline prompt is
  ``prompt_counter(request)`` when one is given, else the spent prompt, and the baseline completion
  is the SoT answer's length (a normal answer's length is not knowable): both ``estimated``;
- a cascade: its own ``baseline_cost`` (what the last tier would have charged) is kept as given;
- drafting and prefix reuse change time, not tokens: their counts (``accepted``, ``reused_tokens``)
  are kept under ``compute`` and the baseline tokens are the spent ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tokenlean.middleware.types import Event, Request, Response

__all__ = ["ACTED", "LedgerRecord", "acted_stages", "record_exchange"]

# (stage, action) pairs that mean the stage changed what was sent or how it was computed
ACTED: frozenset[tuple[str, str]] = frozenset(
    {
        ("cache", "hit"),
        ("compress", "compressed"),
        ("demos", "inserted"),
        ("sot", "expanded"),
        ("cascade", "accepted"),
        ("cascade", "escalated"),
        ("draft", "drafted"),
        ("prefix", "hit"),
    }
)


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """What one request spent and saved; ``saved`` maps a stage to the prompt+completion tokens it saved."""

    ts: float
    request_id: str
    tenant: str
    model: str
    endpoint: str
    stages: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int
    baseline_prompt_tokens: int
    baseline_completion_tokens: int
    estimated: bool
    latency_ms: float
    cost: float = 0.0
    baseline_cost: float = 0.0
    cache_hit: bool = False
    saved: Mapping[str, int] = field(default_factory=dict)
    compute: Mapping[str, int] = field(default_factory=dict)

    @property
    def tokens_saved(self) -> int:
        """Baseline minus spent, prompt and completion together (negative when a stage added tokens)."""
        return (
            self.baseline_prompt_tokens
            + self.baseline_completion_tokens
            - self.prompt_tokens
            - self.completion_tokens
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (``stages`` as a list)."""
        data = asdict(self)
        data["stages"] = list(self.stages)
        data["saved"] = dict(self.saved)
        data["compute"] = dict(self.compute)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerRecord:
        """The inverse of ``as_dict``."""
        fields = dict(data)
        fields["stages"] = tuple(fields.get("stages") or ())
        return cls(**fields)


def acted_stages(events: Iterable[Event]) -> tuple[str, ...]:
    """The stages whose events say they acted, in event order, each once."""
    seen: list[str] = []
    for event in events:
        if (event.stage, event.action) in ACTED and event.stage not in seen:
            seen.append(event.stage)
    return tuple(seen)


def _number(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key, 0)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _baseline(
    request: Request, response: Response, prompt_counter: Callable[[Request], int] | None
) -> tuple[int, int, bool, dict[str, int]]:
    """Baseline prompt and completion tokens, whether they are estimates, and tokens saved per stage."""
    usage = response.usage
    prompt, completion, estimated = usage.prompt_tokens, usage.completion_tokens, False
    saved: dict[str, int] = {}
    for event in response.events:
        if (event.stage, event.action) not in ACTED:
            continue
        data = event.data
        if event.stage == "cache":
            prompt, completion = (
                _number(data, "saved_prompt_tokens"),
                _number(data, "saved_completion_tokens"),
            )
            saved["cache"] = prompt + completion
            return prompt, completion, True, saved
        if event.stage == "compress":
            saved["compress"] = _number(data, "tokens_saved")
            prompt += saved["compress"]
        elif event.stage == "demos":
            saved["demos"] = -_number(data, "tokens_added")
            prompt -= _number(data, "tokens_added")
        elif event.stage == "sot":
            estimated = True
            original = prompt_counter(request) if prompt_counter is not None else usage.prompt_tokens
            saved["sot"] = original - usage.prompt_tokens
            prompt = prompt - usage.prompt_tokens + original
    return max(prompt, 0), completion, estimated, saved


def _compute(events: Iterable[Event]) -> dict[str, int]:
    """Work the lossless backend aids saved: draft tokens accepted, prompt tokens reused."""
    out: dict[str, int] = {}
    for event in events:
        if (event.stage, event.action) == ("draft", "drafted"):
            out["draft_accepted"] = out.get("draft_accepted", 0) + _number(event.data, "accepted")
        elif (event.stage, event.action) == ("prefix", "hit"):
            out["prefix_reused"] = out.get("prefix_reused", 0) + _number(event.data, "reused_tokens")
    return out


def record_exchange(
    request: Request,
    response: Response,
    latency_s: float,
    *,
    endpoint: str = "chat",
    prompt_counter: Callable[[Request], int] | None = None,
) -> LedgerRecord:
    """The ledger row for one answered request (prices are applied by the ledger)."""
    stages = acted_stages(response.events)
    hit = "cache" in stages
    spent = response.usage
    base_prompt, base_completion, estimated, saved = _baseline(request, response, prompt_counter)
    return LedgerRecord(
        ts=time.time(),
        request_id=request.request_id,
        tenant=request.tenant or "-",
        model=request.model or response.model,
        endpoint=endpoint,
        stages=stages,
        prompt_tokens=0 if hit else spent.prompt_tokens,
        completion_tokens=0 if hit else spent.completion_tokens,
        baseline_prompt_tokens=base_prompt,
        baseline_completion_tokens=base_completion,
        estimated=estimated,
        latency_ms=round(latency_s * 1000, 3),
        cache_hit=hit,
        saved=saved,
        compute=_compute(response.events),
    )
