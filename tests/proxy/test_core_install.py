"""``pip install tokenlean`` (no extras) in a fresh venv: a working proxy with the exact cache, no torch.

The core install is what a team that already runs vLLM adopts first, so it is checked the way
they would use it: a fresh virtual environment, ``pip install <this checkout>`` with no extras
(pip's cache is reused; the index must be reachable), then a real ``tokenlean serve`` process in
front of a real OpenAI-compatible upstream process (bench/proxy_overhead_upstream.py). A
repeated deterministic request must be an exact cache hit, ``import torch`` must fail in that
venv, and a stage that needs an extra must stop the server at startup naming the extra.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tokenlean.testing import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXACT = "backend: {type: openai}\nstages:\n  - type: cache\n    options: {semantic: false}\n"
SEMANTIC = "backend: {type: openai}\nstages:\n  - type: cache\n"


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding tokenlean's core install only."""
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT)]
    done = subprocess.run(pip, check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The paced fake OpenAI upstream in its own process (the main venv's Python)."""
    port = free_port()
    command = [sys.executable, "-m", "bench.proxy_overhead_upstream", "--port", str(port)]
    process = subprocess.Popen([*command, "--prefill-ms", "1", "--interval-ms", "1"], cwd=ROOT)
    try:
        _wait(f"http://127.0.0.1:{port}/v1/models", process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(10)


def _wait(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"process exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout_s} s")


def _serve(venv: Path, upstream: str, spec: Path | None, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [str(venv / "bin" / "tokenlean"), "serve", "--upstream", upstream, "--ledger", "off"]
    command += ["--config", str(spec)] if spec is not None else []
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT
        )


def test_core_venv_has_no_torch(core_venv: Path) -> None:
    probe = subprocess.run(
        [str(core_venv / "bin" / "python"), "-c", "import torch"], check=False, capture_output=True
    )
    assert probe.returncode != 0
    assert b"No module named 'torch'" in probe.stderr


@pytest.mark.parametrize("config", ["exact cache spec", "no config: the lean profile"])
def test_core_install_serves_exact_cache_hits(
    core_venv: Path, upstream: str, tmp_path: Path, config: str
) -> None:
    """With a spec naming the exact cache, and with no config at all: the default profile fits
    itself to the core install (exact cache kept, stages needing an extra left out, said at startup)."""
    spec = tmp_path / "exact.yaml"
    spec.write_text(EXACT)
    port = free_port()
    server = _serve(
        core_venv, upstream, spec if config.startswith("exact") else None, port, tmp_path / "serve.log"
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(base + "/health", server)
        body = {
            "model": "fake-model",
            "temperature": 0,
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}],
        }
        first = httpx.post(base + "/v1/chat/completions", json=body, timeout=30)
        second = httpx.post(base + "/v1/chat/completions", json=body, timeout=30)
    finally:
        server.terminate()
        server.wait(30)
    assert first.status_code == second.status_code == 200, (tmp_path / "serve.log").read_text()
    assert first.headers["x-tokenlean-cache"] == "miss", first.text
    assert second.headers["x-tokenlean-cache"] == "hit", second.text
    assert second.json()["tokenlean"]["events"][0]["kind"] == "exact"
    assert second.json()["choices"] == first.json()["choices"]
    if config.startswith("no config"):
        log = (tmp_path / "serve.log").read_text()
        assert "cache runs exact-only" in log and "stage sot left out" in log, log


def test_stage_without_its_extra_fails_at_startup(core_venv: Path, upstream: str, tmp_path: Path) -> None:
    spec = tmp_path / "semantic.yaml"
    spec.write_text(SEMANTIC)
    log = tmp_path / "serve.log"
    server = _serve(core_venv, upstream, spec, free_port(), log)
    assert server.wait(60) == 2
    text = log.read_text()
    assert "'semantic' extra" in text and "pip install 'tokenlean[semantic]'" in text, text
    assert "Traceback" not in text
