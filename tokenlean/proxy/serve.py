"""``tokenlean serve``: settings from flags, the config file and the environment; one or N processes.

Precedence: a flag on the command line, then the config file's ``server:`` section, then the
``TOKENLEAN_*`` environment variables, then the defaults below. With ``workers > 1`` uvicorn
starts that many processes on one port; each builds its own pipeline from the same settings
(passed down in ``TOKENLEAN_SERVE_ARGV``), so state that must be shared lives in Redis: the cache
(``store: redis``) and the rate limits (``redis_url``). Prometheus counters are aggregated across
the processes through ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder unless set).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenlean.errors import ConfigError
from tokenlean.proxy.settings import ServerConfig, ServerSettings, load_config

__all__ = ["DEFAULTS", "build_app", "resolve", "run", "worker_app"]

DEFAULTS: dict[str, Any] = {"host": "127.0.0.1", "port": 8000, "log_level": "info", "workers": 1}
ARGV_ENV = "TOKENLEAN_SERVE_ARGV"


def resolve(args: argparse.Namespace) -> tuple[ServerSettings, ServerConfig | None]:
    """The effective settings (validated, the offending key named) and the config file, if any."""
    config = load_config(args.config) if args.config else None
    from_file = config.server.model_dump(exclude_none=True) if config is not None else {}
    flags = {
        name: getattr(args, name)
        for name in ServerSettings.model_fields
        if getattr(args, name, None) is not None
    }
    merged = {**DEFAULTS, **from_file, **flags}
    environment = {
        "api_key": [k for k in os.environ.get("TOKENLEAN_API_KEYS", "").split(",") if k],
        "upstream": [u for u in os.environ.get("TOKENLEAN_UPSTREAMS", "").split(",") if u],
    }
    for name, value in environment.items():
        if value and not merged.get(name) and not (name == "api_key" and merged.get("api_keys")):
            merged[name] = value
    settings = ServerSettings.model_validate(merged)
    if config is not None and config.models and (settings.upstream or settings.model):
        raise ConfigError(
            "models: cannot be combined with upstream or model (one or the other)", param="models"
        )
    return settings, config


def api_keys(settings: ServerSettings) -> list[str]:
    """The accepted keys: ``api_key`` and ``api_keys``, plus the lines of ``api_key_file``."""
    keys = [*(settings.api_key or ()), *(settings.api_keys or ())]
    if settings.api_key_file:
        try:
            lines = Path(settings.api_key_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read api_key_file: {exc}", param="api_key_file") from exc
        keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return keys


def build_app(args: argparse.Namespace, settings: ServerSettings, config: ServerConfig | None) -> Any:
    """The proxy app for these settings (its pipeline, limits and health listener built)."""
    from tokenlean.proxy.app import create_app
    from tokenlean.proxy.assembly import build_ledger
    from tokenlean.proxy.health_port import HealthListener

    started = time.perf_counter()
    for name in ("upstream", "model", "profile", "ledger", "prices", "redis_url"):  # what cli helpers read
        setattr(args, name, getattr(settings, name))
    pipeline = _pipeline(args, settings, config)
    health = None
    if settings.health_port is not None:
        health = HealthListener(settings.host or DEFAULTS["host"], settings.health_port)
    sizes = {
        "max_body_bytes": settings.max_body_bytes,
        "max_messages": settings.max_messages,
        "max_option_bytes": settings.max_option_bytes,
    }
    app = create_app(
        pipeline,
        api_keys=api_keys(settings),
        limits=_limits(settings),
        health=health,
        ledger=build_ledger(args, pipeline),
        relay=settings.relay is not False,
        warm_up=settings.warm_up is not False,
        **{k: v for k, v in sizes.items() if v is not None},
    )
    print(
        f"tokenlean: pipeline ready in {time.perf_counter() - started:.1f} s (pid {os.getpid()}); serving "
        f"{', '.join(pipeline.backend.models())} on http://{settings.host}:{settings.port}/v1",
        file=sys.stderr,
        flush=True,
    )
    return app


def _pipeline(args: argparse.Namespace, settings: ServerSettings, config: ServerConfig | None) -> Any:
    if config is not None and config.models:
        from tokenlean.proxy.routing import build_router

        return build_router(config.models)
    from tokenlean.proxy.assembly import build_pipeline

    return build_pipeline(args)


def _limits(settings: ServerSettings) -> Any:
    from tokenlean.proxy.limits import TenantLimits

    rpm, tpm = settings.requests_per_minute, settings.tokens_per_minute
    if settings.redis_url:
        from tokenlean.proxy.shared_limits import RedisLimits

        return RedisLimits(settings.redis_url, requests_per_minute=rpm, tokens_per_minute=tpm)
    return TenantLimits(requests_per_minute=rpm, tokens_per_minute=tpm)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Serve until SIGTERM/SIGINT: one process, or ``workers`` processes on one port."""
    settings, config = resolve(args)
    if settings.access_log is False:
        import logging

        logging.getLogger("tokenlean.access").setLevel(logging.WARNING)
    if (settings.workers or 1) > 1:
        return _run_workers(args, settings, config, argv)
    import uvicorn

    app = build_app(args, settings, config)
    server = uvicorn.Server(_uvicorn_config(app, settings))
    _exit_cleanly_after_draining(server)
    server.run()
    return 0 if server.started else 3  # 3: uvicorn's code for a failed start (e.g. port in use)


def _uvicorn_config(app: Any, settings: ServerSettings, **more: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host or DEFAULTS["host"],
        port=settings.port if settings.port is not None else DEFAULTS["port"],
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
        access_log=False,  # tokenlean.access writes one line per request already
        **more,
    )


def _run_workers(
    args: argparse.Namespace, settings: ServerSettings, config: ServerConfig | None, argv: Sequence[str]
) -> int:
    """``workers`` uvicorn processes; extras are checked here first so a missing one stops startup."""
    import uvicorn

    if settings.health_port is not None:
        raise ConfigError(
            "health_port cannot be used with workers > 1 (one port per process)", param="health_port"
        )
    _preflight(settings, config)
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder is None:
        folder = tempfile.mkdtemp(prefix="tokenlean-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    else:  # counters from an earlier run would be added to this one's
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, exist_ok=True)
    os.environ[ARGV_ENV] = json.dumps(list(argv))
    uvicorn.run(
        "tokenlean.proxy.serve:worker_app",
        factory=True,
        workers=settings.workers,
        host=settings.host or DEFAULTS["host"],
        port=settings.port if settings.port is not None else DEFAULTS["port"],
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
        access_log=False,
    )
    return 0


def _preflight(settings: ServerSettings, config: ServerConfig | None) -> None:
    """The extras every worker will need, checked once here: a worker failing at startup is restarted."""
    from tokenlean.extras import check_backend, check_stage
    from tokenlean.middleware.spec import PipelineSpec

    groups = config.models if config is not None else []
    if not groups:
        spec = config.pipeline_spec() if config is not None else PipelineSpec(profile="lean")
        if settings.profile:
            spec = spec.model_copy(update={"profile": settings.profile})
        spec = spec.resolved()
        if not settings.upstream:  # with upstreams the backend is OpenAIBackend, whatever the spec says
            check_backend("local" if settings.model else spec.backend.type, spec.backend.options)
        for stage in spec.stages:
            check_stage(stage.type, stage.options)
    for group in groups:
        for stage in group.stages:
            check_stage(stage.type, stage.options)


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory), from the parent's command line."""
    from tokenlean.proxy.arguments import serve_parser

    argv = json.loads(os.environ[ARGV_ENV])
    args = serve_parser().parse_args(argv[1:] if argv[:1] == ["serve"] else argv)
    settings, config = resolve(args)
    return build_app(args, settings, config)


def _exit_cleanly_after_draining(server: Any) -> None:
    """On SIGTERM/SIGINT uvicorn stops accepting, drains in-flight streams, then re-raises the signal.

    Re-raised into the default handler, a clean, drained shutdown ends with status -15, which
    systemd, Kubernetes and CI read as a crash. uvicorn restores the handlers it found before
    re-raising, so the ones installed here receive that signal: they ask the server to exit
    (a no-op by then; before uvicorn has installed its own, it still stops the server).
    """
    import signal

    def stop(signum: int, frame: Any) -> None:
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
