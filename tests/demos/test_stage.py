"""DemoStage in a Pipeline over FakeBackend, with real pools, the real embedder and tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.demos.conftest import PARAPHRASES
from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.types import Message, Request
from tokenlean.selectors import DemoPool, DemoStage

SYSTEM = Message("system", "You answer customer questions briefly.")


def _run(stage: DemoStage, request: Request):  # type: ignore[no-untyped-def]
    fake = FakeBackend()
    pipeline = Pipeline(fake, [stage], default_policy="raise")
    return fake, pipeline(request)


def _events(response):  # type: ignore[no-untyped-def]
    return [e for e in response.events if e.stage == "demos" and e.action != "timing"]


async def test_turns_go_after_the_system_prompt_which_stays_first(paraphrase_pool: DemoPool) -> None:
    stage = DemoStage(pools={"faq": paraphrase_pool}, pool="faq", k=3)
    history = (
        SYSTEM,
        Message("user", "hi"),
        Message("assistant", "Hello!"),
        Message("user", PARAPHRASES[0][2]),
    )
    fake, pending = _run(stage, Request(messages=history))
    response = await pending
    sent = fake.requests[0].messages
    assert sent[0] == SYSTEM
    assert [m.role for m in sent[1:7]] == ["user", "assistant"] * 3
    assert sent[5].content == PARAPHRASES[0][0]  # the most similar demonstration is the last one
    assert sent[7:] == history[1:]
    (event,) = _events(response)
    assert event.data["chosen"] == 3 and event.data["selection_ms"] > 0 and event.data["pool"] == "faq"


async def test_tokens_added_match_the_target_chat_template(paraphrase_pool: DemoPool) -> None:
    from tokenlean.tokens import shared_token_counter

    tokenizer = shared_token_counter().tokenizer
    stage = DemoStage(pools={"faq": paraphrase_pool}, pool="faq", k=4)
    request = Request(messages=(SYSTEM, Message("user", PARAPHRASES[2][2])))
    fake, pending = _run(stage, request)
    (event,) = _events(await pending)

    def length(messages) -> int:  # type: ignore[no-untyped-def]
        chat = [{"role": m.role, "content": m.content} for m in messages]
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        return len(tokenizer.encode(text, add_special_tokens=False))

    assert event.data["tokens_added"] == length(fake.requests[0].messages) - length(request.messages)


async def test_system_block_appends_after_the_unchanged_system_text(paraphrase_pool: DemoPool) -> None:
    stage = DemoStage(pools={"faq": paraphrase_pool}, pool="faq", k=2, placement="system")
    fake, pending = _run(stage, Request(messages=(SYSTEM, Message("user", PARAPHRASES[5][2]))))
    await pending
    sent = fake.requests[0].messages
    assert len(sent) == 2 and sent[0].role == "system"
    assert sent[0].content.startswith(SYSTEM.content + "\n\nExamples:\n\n")
    assert sent[0].content.endswith(f"Input: {PARAPHRASES[5][0]}\nOutput: {PARAPHRASES[5][1]}")
    assert sent[1].content == PARAPHRASES[5][2]


async def test_without_a_system_prompt_the_block_becomes_one(paraphrase_pool: DemoPool) -> None:
    stage = DemoStage(pools={"faq": paraphrase_pool}, pool="faq", k=1)
    options = {"demos": {"placement": "system"}}
    fake, pending = _run(stage, Request(messages=(Message("user", "hello"),), options=options))
    await pending
    assert [m.role for m in fake.requests[0].messages] == ["system", "user"]


async def test_per_request_options_pick_pool_k_and_method(
    paraphrase_pool: DemoPool, sst2_pool: DemoPool
) -> None:
    stage = DemoStage(pools={"faq": paraphrase_pool, "sst2": sst2_pool}, pool="faq", k=4)
    options = {"demos": {"pool": "sst2", "k": 2, "method": "mmr"}}
    fake, pending = _run(stage, Request(messages=(SYSTEM, Message("user", "a superb film")), options=options))
    (event,) = _events(await pending)
    assert event.data["pool"] == "sst2" and event.data["method"] == "mmr" and event.data["chosen"] == 2
    assert {m.content for m in fake.requests[0].messages[2:5:2]} <= {"positive", "negative"}


async def test_k_larger_than_the_pool_inserts_the_whole_pool(paraphrase_pool: DemoPool) -> None:
    stage = DemoStage(pools={"faq": paraphrase_pool}, pool="faq", k=100)
    fake, pending = _run(stage, Request(messages=(SYSTEM, Message("user", "question"))))
    (event,) = _events(await pending)
    assert event.data["chosen"] == len(paraphrase_pool)
    assert len(fake.requests[0].messages) == 2 + 2 * len(paraphrase_pool)


async def test_budget_caps_the_tokens_added(sst2_pool: DemoPool) -> None:
    stage = DemoStage(pools={"sst2": sst2_pool}, pool="sst2", k=None, budget=120)
    _, pending = _run(stage, Request(messages=(SYSTEM, Message("user", "a tender, funny film"))))
    (event,) = _events(await pending)
    assert 0 < event.data["tokens_added"] <= 120 and event.data["chosen"] >= 2


async def test_unknown_pool_is_a_bad_request_naming_it(paraphrase_pool: DemoPool) -> None:
    stage = DemoStage(pools={"faq": paraphrase_pool}, pool="faq")
    _, pending = _run(stage, Request(messages=(Message("user", "q"),), options={"demos": {"pool": "nope"}}))
    with pytest.raises(BadRequestError, match="'nope'") as caught:
        await pending
    assert caught.value.param == "tokenlean.demos.pool"
    _, pending = _run(stage, Request(messages=(Message("user", " "),), options={"demos": {"pool": "nope"}}))
    with pytest.raises(BadRequestError):  # even when there is no query to select for
        await pending


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"k": "4"}, "k"),
        ({"k": 65}, "k"),
        ({"k": None}, "k"),
        ({"method": "bm25"}, "method"),
        ({"mmr_lambda": 2}, "mmr_lambda"),
        ({"balance": "yes"}, "balance"),
        ({"kk": 1}, "kk"),
    ],
)
async def test_bad_options_name_the_field(paraphrase_pool: DemoPool, options: dict, param: str) -> None:  # type: ignore[type-arg]
    stage = DemoStage(pools={"faq": paraphrase_pool}, pool="faq")
    _, pending = _run(stage, Request(messages=(Message("user", "q"),), options={"demos": options}))
    with pytest.raises(BadRequestError) as caught:
        await pending
    assert caught.value.param == f"tokenlean.demos.{param}"


async def test_disabled_or_poolless_requests_pass_through_untouched(paraphrase_pool: DemoPool) -> None:
    request = Request(messages=(SYSTEM, Message("user", "q")), options={"demos": False})
    fake, pending = _run(DemoStage(pools={"faq": paraphrase_pool}, pool="faq"), request)
    assert not _events(await pending) and fake.requests[0] == request
    fake, pending = _run(DemoStage(pools={"faq": paraphrase_pool}), request.replace(options={}))
    await pending
    assert fake.requests[0].messages == request.messages


async def test_streaming_passes_through_with_the_event(paraphrase_pool: DemoPool) -> None:
    stage = DemoStage(pools={"faq": paraphrase_pool}, pool="faq", k=2)
    _, pending = _run(stage, Request(messages=(Message("user", "where is my order"),), stream=True))
    response = await pending
    assert response.is_streaming and _events(response)
    assert (await response.aread()).text == "where is my order"


async def test_text_prompt_gets_a_block_in_front(paraphrase_pool: DemoPool) -> None:
    stage = DemoStage(pools={"faq": paraphrase_pool}, pool="faq", k=1)
    fake, pending = _run(stage, Request(prompt=PARAPHRASES[3][2]))
    await pending
    assert fake.requests[0].prompt.startswith("Examples:\n\nInput: ")  # type: ignore[union-attr]
    assert fake.requests[0].prompt.endswith("\n\n" + PARAPHRASES[3][2])  # type: ignore[union-attr]


async def test_spec_builds_the_stage_from_a_jsonl_file_and_saves_the_pool(tmp_path: Path) -> None:
    source = tmp_path / "faq.jsonl"
    source.write_text("".join(json.dumps({"input": t, "output": l}) + "\n" for t, l, _ in PARAPHRASES))
    options = {
        "pools": {"faq": {"path": str(source), "save_to": str(tmp_path / "saved")}},
        "pool": "faq",
        "k": 1,
    }
    spec = {"backend": {"type": "fake"}, "stages": [{"type": "demos", "policy": "raise", "options": options}]}
    pipeline = PipelineSpec.parse(spec).build()
    await pipeline(Request(messages=(Message("user", PARAPHRASES[6][2]),)))
    sent = pipeline.backend.requests[0].messages  # type: ignore[attr-defined]
    assert sent[0].content == PARAPHRASES[6][0]
    assert (tmp_path / "saved" / "meta.json").exists()
    reloaded = DemoStage(pools={"faq": str(tmp_path / "saved")}, pool="faq")
    assert len(reloaded.pool("faq")) == len(PARAPHRASES)


def test_bad_construction_is_a_config_error(paraphrase_pool: DemoPool) -> None:
    with pytest.raises(ConfigError, match="default pool"):
        DemoStage(pools={"faq": paraphrase_pool}, pool="other")
    with pytest.raises(ConfigError, match="placement"):
        DemoStage(pools={"faq": paraphrase_pool}, placement="inline")  # type: ignore[arg-type]


async def test_through_the_proxy_options_work_and_an_unknown_pool_is_a_400(paraphrase_pool: DemoPool) -> None:
    import httpx

    from tokenlean.proxy.app import create_app

    fake = FakeBackend()
    app = create_app(Pipeline(fake, [DemoStage(pools={"faq": paraphrase_pool})]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client:
        body = {"model": "fake", "messages": [{"role": "user", "content": PARAPHRASES[1][2]}]}
        ok = await client.post(
            "/v1/chat/completions", json={**body, "tokenlean": {"demos": {"pool": "faq", "k": 1}}}
        )
        bad = await client.post(
            "/v1/chat/completions", json={**body, "tokenlean": {"demos": {"pool": "sst9"}}}
        )
    assert ok.status_code == 200
    assert fake.requests[0].messages[0].content == PARAPHRASES[1][0]
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "tokenlean.demos.pool" and "sst9" in bad.json()["error"]["message"]


async def test_warm_up_reads_every_pool_before_any_request(tmp_path: Path) -> None:
    stage = DemoStage(pools={"faq": str(tmp_path / "missing.jsonl")}, pool="faq")  # read lazily
    with pytest.raises(ConfigError, match="missing.jsonl"):
        await stage.warm_up()  # found at startup, not in the first request that uses the pool
