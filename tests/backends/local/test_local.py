"""LocalBackend on the real embedded SmolLM2 (short generations: this CPU decodes ~20 tokens/s)."""

from __future__ import annotations

import asyncio

import pytest

from tokenlean.errors import BadRequestError, ContextLengthError
from tokenlean.middleware.types import Message, Request

pytestmark = pytest.mark.slow


def _ask(text: str, **kw: object) -> Request:
    return Request(messages=(Message("user", text),), max_tokens=8, temperature=0, **kw)  # type: ignore[arg-type]


async def test_greedy_answer_matches_transformers_generate(local_backend) -> None:  # type: ignore[no-untyped-def]
    import torch

    request = _ask("What is the capital of France?")
    response = await local_backend.complete(request)
    ids = local_backend.encode(request)
    with torch.inference_mode():
        out = local_backend.model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)
    expected = local_backend.tokenizer.decode(out[0][len(ids) :], skip_special_tokens=True)
    assert response.text == expected.strip() or response.text == expected
    assert "Paris" in response.text
    assert response.usage.prompt_tokens == len(ids) and 0 < response.usage.completion_tokens <= 8


async def test_concurrent_requests_keep_their_answers(local_backend) -> None:  # type: ignore[no-untyped-def]
    """However the requests are grouped into batches (that depends on timing), each gets its own
    greedy answer, the same as when asked alone."""
    questions = ["Name a colour.", "What is 2+2?", "Who wrote Hamlet?"]
    singles = [(await local_backend.complete(_ask(q))).text for q in questions]
    together = await asyncio.gather(*(local_backend.complete(_ask(q)) for q in questions))
    assert [r.text for r in together] == singles


async def test_streaming_yields_tokens_then_finish_and_usage(local_backend) -> None:  # type: ignore[no-untyped-def]
    response = await local_backend.complete(_ask("Count from one to five.", stream=True))
    chunks = [chunk async for chunk in response.stream]
    texts = [c.text for c in chunks if c.text]
    assert len(texts) >= 3  # token by token, not one blob
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


async def test_stop_string_is_cut_and_never_sent(local_backend) -> None:  # type: ignore[no-untyped-def]
    full = (await local_backend.complete(_ask("What is the capital of France?"))).text
    word = full.split()[2]
    response = await local_backend.complete(_ask("What is the capital of France?", stop=(word,), stream=True))
    read = await response.aread()
    assert word not in read.text and full.startswith(read.text)
    assert read.choices[0].finish_reason == "stop"


async def test_n_and_seed_give_reproducible_distinct_samples(local_backend) -> None:  # type: ignore[no-untyped-def]
    request = _ask("Write a word.", n=3).replace(temperature=1.0, seed=7)
    first = await local_backend.complete(request)
    second = await local_backend.complete(request)
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    assert len(first.choices) == 3 and len({c.text for c in first.choices}) > 1


async def test_logprobs_are_returned_per_token(local_backend) -> None:  # type: ignore[no-untyped-def]
    response = await local_backend.complete(_ask("Say yes.", logprobs=True, top_logprobs=2))
    entries = response.choices[0].logprobs
    assert entries and all(e["logprob"] <= 0 and len(e["top_logprobs"]) == 2 for e in entries)


async def test_closing_a_stream_cancels_generation(local_backend) -> None:  # type: ignore[no-untyped-def]
    response = await local_backend.complete(_ask("Tell a long story.", stream=True).replace(max_tokens=200))
    stream = response.stream
    await stream.__anext__()
    await stream.aclose()
    # the row was cancelled: the next request is served promptly rather than after 200 tokens
    answer = await asyncio.wait_for(local_backend.complete(_ask("Say hi.")), timeout=60)
    assert answer.text


async def test_context_and_empty_input_are_caller_errors(local_backend) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContextLengthError) as info:
        await local_backend.complete(_ask("hi").replace(max_tokens=10**6))
    assert info.value.param == "max_tokens"
    with pytest.raises(BadRequestError):
        await local_backend.complete(Request(messages=()))


async def test_the_backend_sets_the_thread_count_for_the_whole_process() -> None:
    """The model shares the cores with every stage, so the backend sets torch's count once, on
    the building thread too, before any stage runs a pass (tokenlean.threads)."""
    import threading

    import torch

    from tokenlean.backends.local import LocalBackend
    from tokenlean.threads import torch_threads

    seen: list[int] = []
    with torch_threads(2):
        backend = LocalBackend(draft="off", threads=1)
        try:
            reader = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
            reader.start()
            reader.join()
            seen.append(torch.get_num_threads())
        finally:
            await backend.aclose()
    assert seen == [1, 1]
