"""The ``tokenlean serve`` flags, in one place for the CLI and for each ``--workers`` process.

A worker process re-reads its parent's command line with ``serve_parser()``, so the proxy never
imports the CLI module (the CLI sits above the proxy). Every flag can also be set in the
``server:`` section of a config file (``tokenlean/proxy/settings.py``); flags win.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["add_serve_arguments", "serve_parser"]


def serve_parser() -> argparse.ArgumentParser:
    """A parser of ``tokenlean serve``'s own flags (what a worker process re-reads)."""
    parser = argparse.ArgumentParser(prog="tokenlean serve")
    add_serve_arguments(parser)
    return parser


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every ``serve`` flag to ``parser``."""
    for add in (_add_source, _add_server, _add_limits, _add_ledger):
        add(parser)


def _add_source(parser: argparse.ArgumentParser) -> None:
    """What is served: the model or upstreams, the pipeline config and its profile."""
    parser.add_argument(
        "--model", help="local model folder or .gguf file (default: embedded SmolLM2-135M-Instruct)"
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("TOKENLEAN_CONFIG"),
        help="config file (YAML or JSON): a pipeline spec, plus optional server: (these flags) and "
        "models: sections (docs/deploy.md); flags win over the file",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        default=None,
        metavar="URL",
        help="OpenAI-compatible upstream, e.g. http://127.0.0.1:8001/v1; repeat for replicas of one model",
    )
    parser.add_argument(
        "--profile",
        default=os.environ.get("TOKENLEAN_PROFILE"),
        choices=["lean", "lossless", "off"],
        help="stage profile (docs/profiles.md); default: lean without --config, the spec's own with it",
    )


def _add_server(parser: argparse.ArgumentParser) -> None:
    """Where and how it listens: address, processes, shared Redis, logs, probes."""
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument(
        "--workers", type=int, help="processes serving one port (default 1); share limits with --redis-url"
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis for per-key limits shared by every proxy process (e.g. redis://127.0.0.1:6379/0)",
    )
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one JSON line per request on the tokenlean.access logger (default on)",
    )
    parser.add_argument(
        "--relay",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="relay streams no stage acts on as the upstream's own bytes (default on; --no-relay "
        "parses and re-encodes every chunk, as streams with stages are)",
    )
    parser.add_argument(
        "--warm-up",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="load every stage's models and data at startup, before accepting connections (default "
        "on; --no-warm-up starts faster and lets the first requests load them)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        help="also answer GET /health on this port from its own thread (busy-proof probes)",
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default info")


def _add_limits(parser: argparse.ArgumentParser) -> None:
    """Who may call and how much: API keys, per-key rates, request sizes."""
    parser.add_argument(
        "--api-key", action="append", default=None, metavar="KEY", help="require this bearer key (repeatable)"
    )
    parser.add_argument("--api-key-file", metavar="PATH", help="file with one accepted bearer key per line")
    parser.add_argument(
        "--requests-per-minute", type=float, help="per-key request rate limit (429 beyond it)"
    )
    parser.add_argument("--tokens-per-minute", type=float, help="per-key token budget (429 beyond it)")
    parser.add_argument(
        "--max-body-bytes", type=int, help="largest accepted request body (413 beyond it; default 8 MiB)"
    )
    parser.add_argument(
        "--max-messages", type=int, help="most messages in one request (413 beyond it; default 1024)"
    )
    parser.add_argument(
        "--max-option-bytes",
        type=int,
        help="largest per-call tokenlean options as JSON (413 beyond; default 256 KiB)",
    )


def _add_ledger(parser: argparse.ArgumentParser) -> None:
    """The savings ledger and its price table."""
    parser.add_argument(
        "--ledger",
        default=os.environ.get("TOKENLEAN_LEDGER"),
        help="savings ledger: SQLite path, redis:// URL or 'off' (default: the cache's Redis when it "
        "uses one, else ~/.cache/tokenlean/ledger.sqlite)",
    )
    parser.add_argument("--prices", help="price table JSON {model: [prompt, completion]} ($ per 1M tokens)")
