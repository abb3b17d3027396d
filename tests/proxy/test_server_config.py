"""The server config file: every flag in YAML, ``${VAR}`` secrets, validation naming the key, ``models:``.

The loader is pure logic and is checked directly; the model list is checked end to end: a real
``tokenlean serve --config`` process in front of two real upstream processes, one per model.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tokenlean.cli import build_parser
from tokenlean.errors import ConfigError
from tokenlean.proxy.serve import resolve
from tokenlean.proxy.settings import ServerSettings, load_config
from tokenlean.testing import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.yaml"
    path.write_text(text)
    return path


def test_every_flag_has_a_config_key() -> None:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {a.dest for a in serve._actions if a.option_strings and a.dest not in {"help", "config"}}
    assert flags <= set(ServerSettings.model_fields), flags - set(ServerSettings.model_fields)


def test_file_values_apply_and_flags_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_KEY", "sk-from-env")
    path = _write(
        tmp_path,
        "server:\n  port: 9123\n  host: 0.0.0.0\n  api_keys: ['${TEAM_KEY}', '${OTHER:-sk-default}']\n"
        "  requests_per_minute: 60\nbackend: {type: fake}\n",
    )
    args = build_parser().parse_args(["serve", "--config", str(path), "--port", "9999"])
    settings, config = resolve(args)
    assert settings.port == 9999 and settings.host == "0.0.0.0"
    assert settings.api_keys == ["sk-from-env", "sk-default"]
    assert settings.requests_per_minute == 60
    assert config is not None and config.pipeline_spec().backend.type == "fake"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("server: {prot: 80}\n", "server.prot"),
        ("server: {port: eighty}\n", "server.port"),
        ("server: {workers: 0}\n", "server.workers"),
        ("server: {log_level: loud}\n", "server.log_level"),
        ("stages: [{type: cache, polcy: raise}]\n", "stages.0.polcy"),
        ("models: [{name: a}]\n", "models.0.upstreams"),
        ("models: [{name: a, upstreams: [http://x/v1]}, {name: a, upstreams: [http://y/v1]}]\n", "models"),
        ("server: {api_keys: ['${TOKENLEAN_TEST_UNSET_VARIABLE}']}\n", "server.api_keys.0"),
    ],
)
def test_a_wrong_key_is_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert caught.value.param == named, caught.value.message
    assert named.split(".")[0] in caught.value.message


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[list[str]]:
    started: list[ServerProcess] = []
    try:
        for i in range(2):
            port = free_port()
            command = [sys.executable, "-m", "bench.proxy_overhead_upstream", "--port", str(port)]
            command += ["--prefill-ms", "1", "--interval-ms", "1"]
            ready = f"http://127.0.0.1:{port}/v1/models"
            upstream = ServerProcess(command, ready, cwd=ROOT, log=tmp_path / f"upstream{i}.log")
            started.append(upstream)
            upstream.start().wait_ready(120)
        yield [process.ready_url.removesuffix("/models") for process in started]
    finally:
        for process in started:
            process.stop()


MODELS = """
server:
  port: {port}
  api_keys: ["${{TEAM_KEY}}"]
  log_level: warning
models:
  - name: small
    model: fake-model
    upstreams: ["{first}"]
    options: {{read_timeout: 30, max_retries: 0}}
  - name: large
    model: fake-model
    upstreams: ["{second}"]
    stages: [{{type: cache, options: {{semantic: false}}}}]
"""


@pytest.mark.slow
def test_models_route_to_their_own_upstreams_and_stages(upstreams: list[str], tmp_path: Path) -> None:
    port = free_port()
    path = _write(tmp_path, MODELS.format(port=port, first=upstreams[0], second=upstreams[1]))
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tokenlean.cli", "serve", "--config", str(path)]  # port from the file
    proxy = ServerProcess(
        command, base + "/health", env={"TEAM_KEY": "sk-config"}, log=tmp_path / "proxy.log"
    )
    proxy.start().wait_ready(120)
    headers = {"authorization": "Bearer sk-config"}
    try:
        listed = httpx.get(base + "/v1/models", headers=headers, timeout=10).json()
        replies = {
            name: [
                httpx.post(
                    base + "/v1/chat/completions",
                    headers=headers,
                    timeout=30,
                    json={
                        "model": name,
                        "temperature": 0,
                        "max_tokens": 3,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                )
                for _ in range(2)
            ]
            for name in ("small", "large", "missing")
        }
        health = httpx.get(base + "/health", timeout=10).json()
        unauthorised = httpx.get(base + "/v1/models", timeout=10)
    finally:
        proxy.stop()
    assert [m["id"] for m in listed["data"]] == ["small", "large"]
    assert unauthorised.status_code == 401  # the key came from ${TEAM_KEY}
    assert [r.status_code for r in replies["small"] + replies["large"]] == [200] * 4
    assert "x-tokenlean-cache" not in replies["small"][1].headers  # small has no stages
    assert replies["large"][1].headers["x-tokenlean-cache"] == "hit"  # large has its own cache
    assert replies["missing"][0].status_code == 404
    routed = {
        name: [u["routed"] for u in report["upstreams"]]
        for name, report in health["backend"]["models"].items()
    }
    assert routed == {"small": [2], "large": [1]}  # the second "large" request was a cache hit


def _without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` look uninstalled to the extras check (it asks importlib's find_spec)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a)
    )


def test_workers_check_every_extra_before_starting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenlean.errors import MissingDependencyError
    from tokenlean.proxy.serve import _preflight

    _without(monkeypatch, "faiss", "torch")
    semantic = load_config(_write(tmp_path, "stages: [{type: cache}]\n"))
    upstream_only = ServerSettings(upstream=["http://127.0.0.1:9/v1"])
    with pytest.raises(MissingDependencyError) as caught:
        _preflight(upstream_only, semantic)
    assert caught.value.param == "semantic" and "tokenlean[semantic]" in caught.value.message
    exact = load_config(_write(tmp_path, "stages: [{type: cache, options: {semantic: false}}]\n"))
    _preflight(upstream_only, exact)  # an upstream proxy with the exact cache needs no torch
    with pytest.raises(MissingDependencyError) as caught:
        _preflight(ServerSettings(), exact)  # no upstream: the embedded model, extra local
    assert caught.value.param == "local"
