"""Shared fixtures: one embedded model for the whole session (loading it costs seconds)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from typing import NoReturn

import httpx
import pytest

from tokenlean.middleware.pipeline import Pipeline


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose outside requirement (a server, a model package, ../shared/data) is absent;
    under ``CI=true`` fail instead: CI installs all of them, so an absent one is a broken setup."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def local_backend():  # type: ignore[no-untyped-def]
    """The embedded SmolLM2 backend, shared by every test that needs a real model."""
    from tokenlean.backends.local import LocalBackend

    return LocalBackend()


@pytest.fixture(scope="session")
def model_name(local_backend) -> str:  # type: ignore[no-untyped-def]
    """The name the embedded model is served under."""
    return str(local_backend.models()[0])


class _SharedBackend:
    """Wraps the session backend so closing one test's pipeline does not stop the shared model."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.capabilities = inner.capabilities

    async def complete(self, request):  # type: ignore[no-untyped-def]
        return await self.inner.complete(request)

    def models(self) -> list[str]:
        return list(self.inner.models())

    async def aclose(self) -> None:
        return None


@pytest.fixture
def shared_backend(local_backend):  # type: ignore[no-untyped-def]
    """The session's embedded backend behind a wrapper whose ``aclose`` does nothing."""
    return _SharedBackend(local_backend)


@pytest.fixture
async def asgi_client(shared_backend) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """An httpx client talking in-process to a proxy app over the embedded model."""
    from tokenlean.proxy.app import create_app

    app = create_app(Pipeline(shared_backend))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client:
        yield client
