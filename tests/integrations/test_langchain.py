"""TokenleanChatModel in LCEL chains (the embedded model), options, streaming, errors; LangChainBackend."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel, ParrotFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from pydantic import Field

from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import BackendError, BackendTimeoutError, BadRequestError, UpstreamStatusError
from tokenlean.integrations.langchain import LangChainBackend, TokenleanChatModel
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.stage import Capabilities, Handler
from tokenlean.middleware.types import Choice, Request, Response

PROMPT = ChatPromptTemplate.from_messages([("user", "What is the capital of {country}?")])


def tag_events(message: BaseMessage) -> list[dict[str, Any]]:
    return [e for e in message.response_metadata["tokenlean"]["events"] if e["stage"] == "tag"]


# --- the embedded model ---------------------------------------------------------------------


@pytest.mark.slow
def test_lcel_chain_invoke_and_stream_with_embedded_model(shared_backend, stage_types) -> None:  # type: ignore[no-untyped-def]
    model = TokenleanChatModel(
        pipeline=Pipeline(shared_backend, [stage_types["tag"]()]), max_tokens=8, temperature=0
    )
    config: Any = {"metadata": {"tokenlean": {"tag": {"run": "sync"}}}}
    message = (PROMPT | model).invoke({"country": "France"}, config=config)
    assert "Paris" in message.content
    usage = message.usage_metadata
    assert usage is not None and 0 < usage["output_tokens"] <= 8 and usage["input_tokens"] > 5
    assert tag_events(message)[0]["options"] == {"run": "sync"}

    pieces = list((PROMPT | model | StrOutputParser()).stream({"country": "France"}))
    assert len([p for p in pieces if p]) > 2, "streamed token by token, not as one piece"
    assert "".join(pieces) == message.content  # greedy: the stream is the same answer


@pytest.mark.slow
async def test_lcel_chain_astream_with_embedded_model(shared_backend) -> None:  # type: ignore[no-untyped-def]
    model = TokenleanChatModel(pipeline=Pipeline(shared_backend), max_tokens=6, temperature=0)
    merged: Any = None
    async for chunk in (PROMPT | model).astream({"country": "France"}):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and "Paris" in merged.content
    assert merged.usage_metadata is not None and 0 < merged.usage_metadata["output_tokens"] <= 6
    assert merged.response_metadata["finish_reason"] in {"stop", "length"}


# --- options, requests and native async (fake backend: pure plumbing) -------------------------


def test_options_reach_the_stages_from_every_entry_point(stage_types) -> None:  # type: ignore[no-untyped-def]
    model = TokenleanChatModel(
        pipeline=Pipeline(FakeBackend(), [stage_types["tag"]()]), options={"tag": {"d": 0}}
    )

    def config(value: int) -> Any:
        return {"metadata": {"tokenlean": {"tag": {"v": value}}}}

    assert tag_events(model.invoke("hi", config=config(1)))[0]["options"] == {"d": 0, "v": 1}
    assert tag_events(asyncio.run(model.ainvoke("hi", config=config(2))))[0]["options"] == {"d": 0, "v": 2}
    streamed = list(model.stream("hi", config=config(3)))
    assert tag_events(streamed[-1])[0]["options"] == {"d": 0, "v": 3}
    batched = model.batch(["a", "b"], config=[config(4), config(5)])
    assert [tag_events(m)[0]["options"]["v"] for m in batched] == [4, 5]
    bound = model.bind(tokenlean={"tag": {"v": 6, "b": 1}})
    assert tag_events(bound.invoke("hi", config=config(7)))[0]["options"] == {"d": 0, "v": 6, "b": 1}
    chained = (PROMPT | model).invoke({"country": "x"}, config=config(8))
    assert tag_events(chained)[0]["options"] == {"d": 0, "v": 8}


async def test_options_reach_the_stages_through_astream_and_abatch(stage_types) -> None:  # type: ignore[no-untyped-def]
    model = TokenleanChatModel(pipeline=Pipeline(FakeBackend(), [stage_types["tag"]()]))
    config: Any = {"metadata": {"tokenlean": {"tag": {"v": 1}}}}
    chunks = [c async for c in (PROMPT | model).astream({"country": "x"}, config=config)]
    assert tag_events(chunks[-1])[0]["options"] == {"v": 1}
    batched = await model.abatch(["a", "b"], config={"metadata": {"tokenlean": {"tag": {"v": 2}}}})
    assert [tag_events(m)[0]["options"] for m in batched] == [{"v": 2}, {"v": 2}]


def test_call_arguments_map_to_request_fields() -> None:
    fake = FakeBackend()
    model = TokenleanChatModel(
        pipeline=Pipeline(fake), model="fake", max_tokens=9, temperature=0.5, stop=["\n"]
    )
    model.invoke([("system", "sys"), ("human", "hi")], max_tokens=3, seed=7, top_k=5)
    request = fake.requests[-1]
    assert [(m.role, m.content) for m in request.messages] == [("system", "sys"), ("user", "hi")]
    assert (request.model, request.max_tokens, request.temperature, request.seed) == ("fake", 3, 0.5, 7)
    assert request.stop == ("\n",) and request.extra == {"top_k": 5} and not request.stream
    list(model.stream("hi", stop=["x"]))
    assert fake.requests[-1].stream and fake.requests[-1].stop == ("x",)


class _ThreadRecorder(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    async def complete(self, request: Request) -> Response:
        self.threads.append(threading.current_thread().name)
        return await super().complete(request)


async def test_async_calls_run_natively_and_sync_calls_use_the_one_bridge() -> None:
    backend = _ThreadRecorder()
    model = TokenleanChatModel(pipeline=Pipeline(backend))
    await model.ainvoke("a")
    _ = [c async for c in model.astream("b")]
    await model.abatch(["c", "d"])
    here = threading.current_thread().name
    assert backend.threads == [here] * 4, "ainvoke/astream/abatch must not hop to a thread"
    await asyncio.to_thread(model.invoke, "e")
    await asyncio.to_thread(lambda: list(model.stream("f")))
    assert backend.threads[4:] == ["tokenlean-sync-bridge"] * 2


def test_sync_stream_yields_before_the_answer_is_complete_and_closes_early() -> None:
    closed = threading.Event()
    release = threading.Event()

    class SlowStream(FakeBackend):
        async def complete(self, request: Request) -> Response:
            async def chunks() -> AsyncIterator[Any]:
                from tokenlean.middleware.types import Chunk

                try:
                    yield Chunk(0, "first")
                    await asyncio.to_thread(release.wait, 10)
                    yield Chunk(0, " second")
                finally:
                    closed.set()

            return Response(model="slow", stream=chunks())

    stream: Any = TokenleanChatModel(pipeline=Pipeline(SlowStream())).stream("hi")
    assert next(stream).content == "first"  # arrived while the backend still holds the rest
    release.set()
    stream.close()
    assert closed.wait(5), "closing the LangChain stream must close the pipeline's stream"


def test_a_whole_answer_to_a_stream_request_streams_as_one_chunk() -> None:
    class WholeAnswer:  # a cache hit answers a stream request with a completed response
        name: ClassVar[str] = "whole"

        async def __call__(self, request: Request, call_next: Handler, /) -> Response:
            return Response(model="cached", choices=(Choice(0, "from cache"),))

    model = TokenleanChatModel(pipeline=Pipeline(FakeBackend(), [WholeAnswer()]))
    chunks = list(model.stream("hi"))
    assert "".join(str(c.content) for c in chunks) == "from cache"
    assert chunks[-1].response_metadata["model_name"] == "cached"


# --- errors -------------------------------------------------------------------------------------


async def test_backend_errors_surface_as_tokenlean_types(stage_types) -> None:  # type: ignore[no-untyped-def]
    model = TokenleanChatModel(pipeline=Pipeline(stage_types["failing"](), [stage_types["tag"]()]))
    with pytest.raises(BackendTimeoutError, match="timed out"):
        await asyncio.to_thread(model.invoke, "hi")
    with pytest.raises(BackendTimeoutError):
        await model.ainvoke("hi")
    with pytest.raises(BackendTimeoutError):
        await asyncio.to_thread(lambda: list((PROMPT | model | StrOutputParser()).stream({"country": "x"})))
    with pytest.raises(BackendTimeoutError):
        _ = [c async for c in model.astream("hi")]


def test_bad_input_is_a_bad_request_naming_the_field() -> None:
    model = TokenleanChatModel(pipeline=Pipeline(FakeBackend()))
    with pytest.raises(BadRequestError) as bad_options:
        model.invoke("hi", config={"metadata": {"tokenlean": ["cache"]}})
    assert bad_options.value.param == "metadata.tokenlean"
    image = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "data:,"}}])
    with pytest.raises(BadRequestError) as bad_content:  # FakeBackend reads text parts only
        model.invoke([image])
    assert bad_content.value.param == "messages.0.content"


# --- LangChainBackend: an existing LangChain model behind tokenlean's stages -------------------


class _RecordingChatModel(BaseChatModel):
    """Answers "ok" and records the keyword arguments each call received."""

    calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recording"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append({"messages": [(m.type, m.content) for m in messages], "stop": stop, **kwargs})
        usage = {"input_tokens": 4, "output_tokens": 1, "total_tokens": 5}
        return ChatResult(generations=[ChatGeneration(message=AIMessage("ok", usage_metadata=usage))])


async def test_langchain_model_as_backend_behind_stages(stage_types) -> None:  # type: ignore[no-untyped-def]
    inner = _RecordingChatModel(calls=[])
    model = TokenleanChatModel.around(inner, stages=[stage_types["upper"]()], max_tokens=5, temperature=0)
    reply = await model.ainvoke([("system", "be brief"), ("human", "hello")], stop=["."])
    assert (
        reply.content == "ok"
        and reply.usage_metadata is not None
        and reply.usage_metadata["input_tokens"] == 4
    )
    assert inner.calls == [
        {
            "messages": [("system", "be brief"), ("human", "HELLO")],
            "stop": ["."],
            "max_tokens": 5,
            "temperature": 0,
        }
    ]
    backend = LangChainBackend(inner, forward_params=False)
    await backend.complete(Request(prompt="raw", max_tokens=3, n=2))
    assert [c["messages"] for c in inner.calls[1:]] == [[("human", "raw")]] * 2
    assert all("max_tokens" not in c for c in inner.calls[1:])


async def test_langchain_backend_streams_the_wrapped_model(stage_types) -> None:  # type: ignore[no-untyped-def]
    inner = GenericFakeChatModel(messages=iter(["alpha beta gamma"]))
    model = TokenleanChatModel.around(inner, stages=[stage_types["tag"]()])
    chunks = [str(c.content) async for c in (PROMPT | model).astream({"country": "x"}, config={})]
    assert "".join(chunks) == "alpha beta gamma" and len([c for c in chunks if c]) >= 3
    parrot = TokenleanChatModel.around(ParrotFakeChatModel(), stages=[stage_types["upper"]()])
    assert (PROMPT | parrot | StrOutputParser()).invoke({"country": "peru"}) == "WHAT IS THE CAPITAL OF PERU?"


class _BrokenChatModel(_RecordingChatModel):
    error: Any = None

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise self.error


class _StatusError(Exception):
    status_code = 429


async def test_wrapped_model_errors_become_tokenlean_errors() -> None:
    broken = _BrokenChatModel(calls=[], error=ValueError("quota"))
    with pytest.raises(BackendError) as caught:
        await TokenleanChatModel.around(broken).ainvoke("hi")
    assert type(caught.value) is BackendError and isinstance(caught.value.__cause__, ValueError)
    limited = _BrokenChatModel(calls=[], error=_StatusError("slow down"))
    with pytest.raises(UpstreamStatusError) as status:
        await LangChainBackend(limited).complete(Request(prompt="hi"))
    assert status.value.status == 429
    with pytest.raises(BackendError):
        response = await LangChainBackend(broken).complete(Request(prompt="hi", stream=True))
        await response.aread()
    assert LangChainBackend(broken).capabilities == Capabilities(streaming=True, n=False)
