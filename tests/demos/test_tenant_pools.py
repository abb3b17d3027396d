"""Demonstration pools scoped to API keys, through the proxy: one tenant's pool is invisible to another."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import ConfigError
from tokenlean.middleware import Pipeline
from tokenlean.proxy.app import create_app
from tokenlean.proxy.auth import tenant_id
from tokenlean.selectors import DemoPool, DemoStage

ACME, OTHER = "sk-acme", "sk-other"


@pytest.fixture
async def proxy(paraphrase_pool: DemoPool) -> AsyncIterator[tuple[httpx.AsyncClient, FakeBackend]]:
    backend = FakeBackend()
    stage = DemoStage(
        pools={"shared": paraphrase_pool, "acme": paraphrase_pool}, tenants={"acme": [tenant_id(ACME)]}, k=2
    )
    app = create_app(Pipeline(backend, [stage]), api_keys=[ACME, OTHER])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        yield http, backend


async def ask(http: httpx.AsyncClient, key: str, pool: str) -> httpx.Response:
    body: dict[str, Any] = {
        "model": "fake",
        "messages": [{"role": "user", "content": "How can I set a new password?"}],
        "tokenlean": {"demos": {"pool": pool}},
    }
    return await http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


async def test_a_scoped_pool_serves_its_tenant_only(proxy: tuple[httpx.AsyncClient, FakeBackend]) -> None:
    http, backend = proxy
    own = await ask(http, ACME, "acme")
    assert own.status_code == 200 and len(backend.requests[-1].messages) == 5  # 2 demo pairs + the question

    other = await ask(http, OTHER, "acme")
    assert other.status_code == 400
    error = other.json()["error"]
    assert error["param"] == "tokenlean.demos.pool" and "'acme'" in error["message"]
    assert "known: shared" in error["message"]  # the other tenant's pool is not even listed
    assert len(backend.requests) == 1

    shared = await ask(http, OTHER, "shared")
    assert shared.status_code == 200 and len(backend.requests[-1].messages) == 5


async def test_a_scoped_default_pool_is_skipped_for_other_tenants(paraphrase_pool: DemoPool) -> None:
    stage = DemoStage(pools={"acme": paraphrase_pool}, pool="acme", tenants={"acme": [tenant_id(ACME)]}, k=1)
    backend = FakeBackend()
    app = create_app(Pipeline(backend, [stage]), api_keys=[ACME, OTHER])
    body = {"model": "fake", "messages": [{"role": "user", "content": "When does the shop open?"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        for key, turns in ((OTHER, 1), (ACME, 3)):
            reply = await http.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            assert reply.status_code == 200 and len(backend.requests[-1].messages) == turns


def test_scopes_naming_no_pool_or_no_list_fail_at_startup(paraphrase_pool: DemoPool) -> None:
    with pytest.raises(ConfigError, match="no pool named 'acme'"):
        DemoStage(pools={"faq": paraphrase_pool}, tenants={"acme": ["key-1"]})
    with pytest.raises(ConfigError, match="list of tenant ids"):
        DemoStage(pools={"faq": paraphrase_pool}, tenants={"faq": "key-1"})  # type: ignore[dict-item]
