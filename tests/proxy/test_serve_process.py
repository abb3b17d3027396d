"""A real ``tokenlean serve`` process on loopback answering the official client, then stopped."""

from __future__ import annotations

import openai
import pytest

from tokenlean.testing import ServeProcess

pytestmark = pytest.mark.slow


def test_tokenlean_serve_answers_a_real_client() -> None:
    proxy = ServeProcess("--api-key", "sk-test", env={"HF_HUB_OFFLINE": "1"})
    with proxy:
        client = openai.OpenAI(api_key="sk-test", base_url=proxy.url)
        model = client.models.list().data[0].id
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=8,
            temperature=0,
        )
        assert "Paris" in reply.choices[0].message.content
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(api_key="sk-wrong", base_url=proxy.url).models.list()
    assert proxy.process is not None and proxy.process.returncode is not None
