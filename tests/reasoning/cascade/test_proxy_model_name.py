"""A cascade chosen by the model name, through the official openai client and the in-process proxy."""

from __future__ import annotations

import httpx
import openai
import pytest

from tokenlean.middleware.spec import PipelineSpec
from tokenlean.proxy.app import create_app

HI = [{"role": "user", "content": "How many legs do two cats have?"}]


@pytest.fixture
async def client(kit):  # type: ignore[no-untyped-def]
    pipeline = PipelineSpec.from_file(kit.spec).build()
    transport = httpx.ASGITransport(app=create_app(pipeline))
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
        yield openai.AsyncOpenAI(api_key="unused", base_url="http://proxy/v1", http_client=http)
    await pipeline.aclose()


async def test_model_name_picks_the_cascade(client) -> None:  # type: ignore[no-untyped-def]
    models = {m.id async for m in client.models.list()}
    assert {"cascade:cheap-first", "cascade:always-strong"} <= models
    cheap = await client.chat.completions.create(model="cascade:cheap-first", messages=HI)
    strong = await client.chat.completions.create(model="cascade:always-strong", messages=HI)
    assert (cheap.model, strong.model) == ("small-model", "large-model")
    assert cheap.choices[0].message.content == strong.choices[0].message.content == HI[0]["content"]
    raw = await client.chat.completions.with_raw_response.create(model="cascade:always-strong", messages=HI)
    assert raw.headers["x-tokenlean-cascade"] == "escalated"


async def test_streamed_cascade_and_unknown_name(client) -> None:  # type: ignore[no-untyped-def]
    stream = await client.chat.completions.create(model="cascade:always-strong", messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == HI[0]["content"]
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="cascade:nope", messages=HI)
    assert "nope" in str(caught.value)
