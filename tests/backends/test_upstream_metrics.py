"""Upstream figures on the proxy's /metrics: latency, errors, and vLLM's drafting counters.

The upstream is the loopback fake of conftest.py, which also serves a ``/metrics`` page in
vLLM's format (set per test), so the proxy reads it over a real socket, as it reads vLLM's.
The real speculative vLLM is checked in tests/backends/test_vllm_speculative.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.backends.replicas import public_url
from tokenlean.backends.vllm_speculative import afetch_spec_decode_metrics
from tokenlean.middleware.pipeline import Pipeline

HI = [{"role": "user", "content": "Capital of France?"}]
SPEC = "tokenlean_upstream_spec_decode_"


def vllm_page(drafts: int, tokens: int, accepted: int) -> str:
    """A /metrics page shaped like vLLM's (two engines: the proxy must sum them)."""
    lines = ["# HELP vllm:num_requests_running Running requests.", "# TYPE vllm:num_requests_running gauge"]
    lines.append('vllm:num_requests_running{engine="0",model_name="fake-model"} 0.0')
    for name, value in (("drafts", drafts), ("draft_tokens", tokens), ("accepted_tokens", accepted)):
        lines += [f"# TYPE vllm:spec_decode_num_{name}_total counter"]
        lines += [
            f'vllm:spec_decode_num_{name}_total{{engine="{e}",model_name="fake-model"}} {value / 2}'
            for e in (0, 1)
        ]
    lines.append('vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",position="0"} 3.0')
    return "\n".join(lines) + "\n"


class Proxy:
    """A proxy app over ``backend`` and an HTTP client for it (ASGI, in-process)."""

    def __init__(self, backend: OpenAIBackend, http: httpx.AsyncClient) -> None:
        self.backend, self.http = backend, http
        self.client = openai.AsyncOpenAI(
            api_key="unused", base_url="http://proxy/v1", http_client=http, max_retries=0
        )

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        answer = await self.http.get("/metrics")
        assert answer.status_code == 200
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples
        }


@asynccontextmanager
async def proxy_for(*urls: str, **options: Any) -> AsyncIterator[Proxy]:
    from tokenlean.proxy.app import create_app

    backend = OpenAIBackend(list(urls), model="fake-model", **{"max_retries": 1, **options})
    app = create_app(Pipeline(backend))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        yield Proxy(backend, http)
    await backend.aclose()


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def label(url: str) -> str:
    return url + "/v1/"


async def test_latency_histograms_after_plain_and_streamed_requests(upstream) -> None:
    _, url = upstream
    async with proxy_for(url) as proxy:
        for _ in range(2):
            await proxy.client.chat.completions.create(model="fake-model", messages=HI)
        stream = await proxy.client.chat.completions.create(
            model="fake-model", messages=HI, stream=True, extra_body={"scenario": "drip", "drip_s": 0.05}
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        found = await proxy.metrics()
    up = label(url)
    assert text == "The capital of France is Paris."
    assert value(found, "tokenlean_upstream_headers_seconds_count", upstream=up) == 3
    assert value(found, "tokenlean_upstream_request_seconds_count", upstream=up, stream="false") == 2
    assert value(found, "tokenlean_upstream_request_seconds_count", upstream=up, stream="true") == 1
    assert value(found, "tokenlean_upstream_first_chunk_seconds_count", upstream=up) == 1
    streamed = value(found, "tokenlean_upstream_request_seconds_sum", upstream=up, stream="true")
    first = value(found, "tokenlean_upstream_first_chunk_seconds_sum", upstream=up)
    assert 0 < first < streamed and streamed >= 0.3  # 7 words dripped 50 ms apart; the first comes first
    plain = value(found, "tokenlean_upstream_request_seconds_sum", upstream=up, stream="false")
    assert plain > 0
    assert value(found, "tokenlean_upstream_headers_seconds_sum", upstream=up) <= plain + streamed
    assert value(found, "tokenlean_upstream_healthy", upstream=up) == 1
    assert value(found, "tokenlean_upstream_inflight", upstream=up) == 0
    assert not [k for k in found if k[0].startswith("tokenlean_upstream_errors")]
    assert value(found, "tokenlean_requests_total", endpoint="chat", status="200") == 3  # the proxy's own


async def test_failed_attempts_are_counted_by_type_and_status(upstream, free_port_url: str) -> None:
    _, url = upstream
    async with proxy_for(url, read_timeout=0.2) as proxy:
        for scenario in ("status-400", "status-503", "slow"):
            with pytest.raises(openai.APIStatusError):
                await proxy.client.chat.completions.create(
                    model="fake-model", messages=HI, extra_body={"scenario": scenario, "sleep_s": 1.0}
                )
        found = await proxy.metrics()
    up = label(url)
    assert value(found, "tokenlean_upstream_errors_total", upstream=up, type="status", status="400") == 1
    retried = value(found, "tokenlean_upstream_errors_total", upstream=up, type="status", status="503")
    assert retried == 2  # max_retries=1: two attempts, both counted
    # a read timeout before the first byte is retried too (the retry policy): both attempts counted
    assert value(found, "tokenlean_upstream_errors_total", upstream=up, type="timeout", status="none") == 2
    assert value(found, "tokenlean_upstream_request_seconds_count", upstream=up, stream="false") is None
    async with proxy_for(free_port_url) as proxy:
        with pytest.raises(openai.InternalServerError):
            await proxy.client.chat.completions.create(model="fake-model", messages=HI)
        found = await proxy.metrics()
    down = label(free_port_url)
    assert value(found, "tokenlean_upstream_errors_total", upstream=down, type="connect", status="none") == 2
    assert value(found, "tokenlean_upstream_healthy", upstream=down) == 0


async def test_drafting_counters_mirror_each_upstream_and_vanish_when_it_is_down(start_upstream) -> None:
    speculative, spec_server = start_upstream()
    plain, plain_server = start_upstream()
    _silent, silent_server = start_upstream()
    speculative.metrics_text = vllm_page(drafts=20, tokens=80, accepted=40)
    plain.metrics_text = 'vllm:num_requests_running{engine="0"} 0.0\n'  # a vLLM that does not draft
    urls = [spec_server.url, plain_server.url, silent_server.url]  # the silent one has no /metrics (404)
    async with proxy_for(*urls) as proxy:
        found = await proxy.metrics()
        up = label(spec_server.url)
        assert value(found, SPEC + "drafts_total", upstream=up) == 20
        assert value(found, SPEC + "draft_tokens_total", upstream=up) == 80
        assert value(found, SPEC + "accepted_tokens_total", upstream=up) == 40
        assert value(found, SPEC + "acceptance_rate", upstream=up) == pytest.approx(0.5)
        assert {dict(k[1])["upstream"] for k in found if k[0].startswith(SPEC)} == {up}
        speculative.metrics_text = vllm_page(drafts=30, tokens=120, accepted=90)
        assert value(await proxy.metrics(), SPEC + "accepted_tokens_total", upstream=up) == 40  # cached (5 s)
        proxy.backend.upstream_metrics.scrape_interval = 0.0
        found = await proxy.metrics()
        assert value(found, SPEC + "accepted_tokens_total", upstream=up) == 90
        assert value(found, SPEC + "acceptance_rate", upstream=up) == pytest.approx(0.75)
        spec_server.stop()
        found = await proxy.metrics()
        assert not [k for k in found if k[0].startswith(SPEC)]
        assert value(found, "tokenlean_upstream_healthy", upstream=up) == 1  # not routed to yet: still "up"


async def test_a_hanging_upstream_metrics_page_does_not_hold_up_the_proxy(upstream) -> None:
    fake, url = upstream
    fake.metrics_text, fake.metrics_delay_s = vllm_page(2, 8, 4), 30.0
    async with proxy_for(url) as proxy:
        proxy.backend.upstream_metrics.scrape_timeout = 0.3
        await proxy.client.chat.completions.create(model="fake-model", messages=HI)
        found = await asyncio.wait_for(proxy.metrics(), 15)  # not held for the page's 30 s
    assert not [k for k in found if k[0].startswith(SPEC)]
    assert value(found, "tokenlean_upstream_request_seconds_count", upstream=label(url), stream="false") == 1


async def test_one_backend_behind_two_apps_and_many_backends_per_process(upstream) -> None:
    from tokenlean.proxy.app import create_app

    fake, url = upstream
    fake.metrics_text = vllm_page(4, 16, 8)
    async with proxy_for(url) as first, proxy_for(url) as second:
        await first.client.chat.completions.create(model="fake-model", messages=HI)
        other = create_app(Pipeline(first.backend))  # a second app around the same backend
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://o") as http:
            shared = (await http.get("/metrics")).text
        mine, theirs = await first.metrics(), await second.metrics()
    up = label(url)
    assert value(mine, "tokenlean_upstream_headers_seconds_count", upstream=up) == 1
    assert value(theirs, "tokenlean_upstream_headers_seconds_count", upstream=up) is None  # its own backend
    assert value(theirs, SPEC + "accepted_tokens_total", upstream=up) == 8
    assert 'tokenlean_upstream_headers_seconds_count{upstream="' + up + '"} 1.0' in shared


async def test_afetch_reports_absent_drafting_as_none_and_labels_drop_credentials(upstream) -> None:
    fake, url = upstream
    fake.metrics_text = vllm_page(2, 8, 6)
    figures = await afetch_spec_decode_metrics(url + "/v1")
    assert figures is not None
    assert (figures.drafts, figures.draft_tokens, figures.accepted_tokens) == (2, 8, 6)
    assert figures.accepted_per_position == (3.0,)
    fake.metrics_text = "vllm:num_requests_running 0\n"
    assert await afetch_spec_decode_metrics(url) is None
    fake.metrics_text = None
    with pytest.raises(httpx.HTTPStatusError):
        await afetch_spec_decode_metrics(url)
    assert public_url("http://user:secret@vllm:8000/v1/") == "http://vllm:8000/v1/"
    assert public_url("http://vllm:8000/v1/") == "http://vllm:8000/v1/"
