"""A real ``tokenlean serve`` process on loopback answering the official client, then stopped."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tokenlean.testing import ServeProcess

pytestmark = pytest.mark.slow


def test_tokenlean_serve_answers_a_real_client(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    proxy = ServeProcess("--api-key", "sk-test", env={"HF_HUB_OFFLINE": "1"}, log=log)
    with proxy:
        started = log.read_text()  # the lean default's stages (cache, compress, sot) loaded before serving
        assert "stages warmed up" in started and "did not warm up" not in started
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


def test_no_warm_up_starts_serving_before_the_stages_load(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with ServeProcess("--no-warm-up", env={"HF_HUB_OFFLINE": "1"}, log=log) as proxy:
        reply = openai.OpenAI(api_key="unused", base_url=proxy.url).chat.completions.create(
            model="SmolLM2-135M-Instruct",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=8,
            temperature=0,
        )
        assert "Paris" in reply.choices[0].message.content
    assert "warmed up" not in log.read_text()
