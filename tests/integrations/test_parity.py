"""One pipeline through the three front-ends: same backend traffic, same answers, same events.

The pipeline is cache + demonstrations + compression (+ a stage that reports its per-call
options). The real stages (``CacheStage``, ``DemoStage``, ``CompressionStage``) are used where
they are installed; until then, small stand-ins of the same names and shapes defined here. The
proxy leg needs ``tokenlean.proxy.app``. The backend records what it received: a ``FakeBackend``
behind the proxy and the LangChain model, the decorated function itself behind the decorator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import httpx
import openai

from tokenlean.backends.fake import FakeBackend
from tokenlean.integrations import call_options, optimize
from tokenlean.integrations.langchain import TokenleanChatModel
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.stage import Handler, Stage
from tokenlean.middleware.types import Event, Message, Request, Response

MODEL = "fake"
SYSTEM = "You answer questions about geography in a few words."
QUESTIONS = [
    "Please could you very kindly tell me what the capital city of France is?",
    "Which river actually flows through the city of Vienna, if you really know?",
]
# (question, per-call options): the repeat of the first question is a cache hit.
CALLS = [
    (QUESTIONS[0], {"tag": {"call": 0}}),
    (QUESTIONS[1], {"tag": {"call": 1}}),
    (QUESTIONS[0], {"tag": {"call": 2}}),
]
Traffic = tuple[tuple[tuple[str, str], ...], int | None, float | None]


def reply(messages: Sequence[tuple[str, str]]) -> str:
    """The backends' answer: a function of exactly what they received."""
    return f"{len(messages)} messages; last: {messages[-1][1][:60]}"


# --- the stand-in stages (used only while the real ones are not installed) ----------------------


class StandInCacheStage:
    """Exact-match response cache keyed on the request's content."""

    name: ClassVar[str] = "cache"

    def __init__(self) -> None:
        self.store: dict[Any, Response] = {}

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        key = (request.model, request.messages, request.prompt, request.max_tokens, request.temperature)
        if key in self.store:
            return self.store[key].with_event(Event(self.name, "hit"))
        response = await (await call_next(request)).aread()
        self.store[key] = response
        return response.with_event(Event(self.name, "miss"))


class StandInDemoStage:
    """Prepends the two demonstrations sharing most words with the question."""

    name: ClassVar[str] = "demos"
    pool: ClassVar[list[tuple[str, str]]] = [
        ("What is the capital of Italy?", "Rome."),
        ("Which river flows through Paris?", "The Seine."),
        ("What is the largest ocean?", "The Pacific."),
    ]

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        words = set(request.last_user_text.lower().split())
        chosen = sorted(self.pool, key=lambda qa: -len(words & set(qa[0].lower().split())))[:2]
        demos = [message for q, a in chosen for message in (Message("user", q), Message("assistant", a))]
        messages = [*request.messages[:-1], *demos, request.messages[-1]]
        response = await call_next(request.replace(messages=messages))
        return response.with_event(Event(self.name, "selected", data={"k": len(chosen)}))


class StandInCompressionStage:
    """Drops filler words from the last user turn."""

    name: ClassVar[str] = "compress"
    filler: ClassVar[set[str]] = {
        "please",
        "could",
        "very",
        "kindly",
        "actually",
        "really",
        "if",
        "you",
        "know?",
    }

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        last = request.messages[-1]
        kept = [w for w in last.content.split() if w.lower() not in self.filler]
        messages = [*request.messages[:-1], Message(last.role, " ".join(kept), last.name)]
        response = await call_next(request.replace(messages=messages))
        saved = len(last.content.split()) - len(kept)
        return response.with_event(Event(self.name, "compressed", data={"tokens_saved": saved}))


class OptionTagStage:
    """Reports the per-call options it received (they must arrive alike from every front-end)."""

    name: ClassVar[str] = "tag"

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        response = await call_next(request)
        return response.with_event(
            Event(self.name, "seen", data={"options": dict(request.option("tag", {}))})
        )


def _installed(module: str) -> Any:
    """The real stage module, or None while the issue delivering it is open."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _demo_factory() -> Callable[[], Stage]:
    stage = _installed("tokenlean.selectors.stage")
    if stage is None:
        return StandInDemoStage
    from tokenlean.selectors.examples import Example
    from tokenlean.selectors.pool import DemoPool

    pool = DemoPool.build("geo", [Example(q, a) for q, a in StandInDemoStage.pool])  # real MiniLM, shared
    return lambda: stage.DemoStage(pools={"geo": pool}, pool="geo", k=2)


def stage_factory() -> tuple[Callable[[], list[Stage]], list[str]]:
    """Fresh stages for one leg (outermost first), and the names of the real ones among them."""
    cache, compress = _installed("tokenlean.cache.stage"), _installed("tokenlean.compressors.stage")
    make_cache = cache.CacheStage if cache else StandInCacheStage
    make_compress = compress.CompressionStage if compress else StandInCompressionStage
    make_demos = _demo_factory()
    real = [name for name, module in (("cache", cache), ("demos", make_demos is not StandInDemoStage),
                                      ("compress", compress)) if module]  # fmt: skip
    return lambda: [OptionTagStage(), make_cache(), make_demos(), make_compress()], real


# --- the three legs -------------------------------------------------------------------------------


def _conversation(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def _fake() -> FakeBackend:
    return FakeBackend(lambda r: reply([(m.role, m.content) for m in r.messages]), model=MODEL)


def _traffic(fake: FakeBackend) -> list[Traffic]:
    return [
        (tuple((m.role, m.content) for m in r.messages), r.max_tokens, r.temperature) for r in fake.requests
    ]


def _summary(text: str, events: Sequence[dict[str, Any]]) -> tuple[str, list[tuple[str, str]], list[Any]]:
    tags = [e["options"] for e in events if (e["stage"], e["action"]) == ("tag", "seen")]
    return text, [(e["stage"], e["action"]) for e in events], tags


async def proxy_leg(stages: list[Stage]) -> tuple[list[Any], list[Traffic], list[Request]]:
    from tokenlean.proxy.app import create_app

    fake = _fake()
    app = create_app(Pipeline(fake, stages))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as http:
        client = openai.AsyncOpenAI(api_key="unused", base_url="http://proxy/v1", http_client=http)  # type: ignore[arg-type]
        answers = []
        for question, options in CALLS:
            completion = await client.chat.completions.create(
                model=MODEL,
                messages=_conversation(question),  # type: ignore[arg-type]
                max_tokens=32,
                temperature=0,
                extra_body={"tokenlean": options},
            )
            events = (completion.model_extra or {})["tokenlean"]["events"]
            answers.append(_summary(completion.choices[0].message.content or "", events))
    return answers, _traffic(fake), fake.requests


async def langchain_leg(stages: list[Stage]) -> tuple[list[Any], list[Traffic], list[Request]]:
    fake = _fake()
    model = TokenleanChatModel(pipeline=Pipeline(fake, stages), model=MODEL, max_tokens=32, temperature=0)
    answers = []
    for question, options in CALLS:
        pairs = [(m["role"], m["content"]) for m in _conversation(question)]
        message = await model.ainvoke(pairs, config={"metadata": {"tokenlean": options}})
        answers.append(_summary(str(message.content), message.response_metadata["tokenlean"]["events"]))
    return answers, _traffic(fake), fake.requests


def decorator_leg(stages: list[Stage]) -> tuple[list[Any], list[Traffic]]:
    traffic: list[Traffic] = []

    @optimize(stages=stages, model=MODEL)
    def chat(
        messages: list[dict[str, str]], max_tokens: int | None = None, temperature: float | None = None
    ) -> dict[str, Any]:
        pairs = tuple((m["role"], m["content"]) for m in messages)
        traffic.append((pairs, max_tokens, temperature))
        text = reply(pairs)
        return {
            "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "model": MODEL,
        }

    answers = []
    for question, options in CALLS:
        with call_options(options):
            body = chat(_conversation(question), max_tokens=32, temperature=0)
        answers.append(_summary(body["choices"][0]["message"]["content"], body["tokenlean"]["events"]))
    return answers, traffic


def _comparable(request: Request) -> Request:
    return request.replace(request_id="")


async def test_proxy_langchain_and_decorator_agree() -> None:
    stages, real = stage_factory()
    print("real stages in the parity pipeline:", real or "none (stand-ins)")
    via_proxy, proxy_traffic, proxy_requests = await proxy_leg(stages())
    via_langchain, langchain_traffic, langchain_requests = await langchain_leg(stages())
    via_decorator, decorator_traffic = decorator_leg(stages())

    assert via_proxy == via_langchain == via_decorator
    assert proxy_traffic == langchain_traffic == decorator_traffic
    assert [_comparable(r) for r in proxy_requests] == [_comparable(r) for r in langchain_requests]
    # the pipeline did its work: a cache hit saved a call; demos and compression changed the prompt
    assert len(decorator_traffic) == len(CALLS) - 1
    assert any(stage == "cache" and "hit" in action for stage, action in via_proxy[2][1])
    sent = tuple((m["role"], m["content"]) for m in _conversation(QUESTIONS[0]))
    assert decorator_traffic[0][0] != sent
    assert [answer[2] for answer in via_proxy] == [[options["tag"]] for _, options in CALLS]
