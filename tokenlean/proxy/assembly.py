"""What ``tokenlean serve`` assembles from its settings: the pipeline and the savings ledger.

Kept in the proxy (not the CLI) because every ``--workers`` process builds them too.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["build_ledger", "build_pipeline"]


def build_ledger(args: argparse.Namespace, pipeline: Any) -> Any:
    """The savings ledger: ``--ledger``, else the cache's Redis, else ``--redis-url`` (both shared by
    every process), else SQLite."""
    if args.ledger == "off":
        return None
    from tokenlean.ledger import PriceTable, message_token_counter, open_ledger

    location = args.ledger
    cache = pipeline.stage("cache")
    backing = getattr(getattr(cache, "cache", None), "store", None)  # CacheStage -> ResponseCache -> store
    if location is None and getattr(backing, "name", "") == "redis":
        location = backing.url  # type: ignore[union-attr]
    if location is None and getattr(args, "redis_url", None):  # the Redis the limits share
        location = args.redis_url
    prices = PriceTable.from_file(args.prices) if args.prices else None
    return open_ledger(location, prices=prices, prompt_counter=message_token_counter())


def build_pipeline(args: argparse.Namespace) -> Any:
    """The pipeline: a config's spec (or the lean profile), in front of the upstreams or the embedded model."""
    from tokenlean.extras import check_backend
    from tokenlean.middleware.spec import PipelineSpec
    from tokenlean.proxy.settings import load_config

    spec = load_config(args.config).pipeline_spec() if args.config else PipelineSpec(profile="lean")
    if args.profile:
        spec = spec.model_copy(update={"profile": args.profile})
    spec = spec.resolved()  # profile stages and backend options laid out as a plain spec
    upstreams = args.upstream or [u for u in os.environ.get("TOKENLEAN_UPSTREAMS", "").split(",") if u]
    if upstreams:
        from tokenlean.backends.openai_http import OpenAIBackend

        options = dict(spec.backend.options) if spec.backend.type == "openai" else {}
        options.pop("upstreams", None)  # the command line's upstreams win
        return spec.build(OpenAIBackend(upstreams, **options))
    if args.model or spec.backend.type == "local":
        options = dict(spec.backend.options)
        if args.model:
            options["model"] = args.model
        check_backend("local", options)  # before importing torch: names the missing extra
        from tokenlean.backends.local import LocalBackend

        if not args.model and "model" not in options:
            print(
                "tokenlean: preparing the embedded model (the first run converts it, ~20 s)...",
                file=sys.stderr,
            )
        return spec.build(LocalBackend(**options))
    return spec.build()
