"""Keys: what must and must not change a cache key."""

from __future__ import annotations

from tokenlean.cache.keys import canonical_text, request_keys
from tokenlean.middleware.types import Message, Request


def chat(user: str, system: str = "You are helpful.", **kw: object) -> Request:
    return Request(
        messages=(Message("system", system), Message("user", user)), model="m", temperature=0, **kw
    )  # type: ignore[arg-type]


def keys(request: Request, tenant: str | None = None, namespace: str = "default"):  # type: ignore[no-untyped-def]
    return request_keys(request, tenant=tenant, namespace=namespace)


def test_whitespace_and_line_endings_do_not_change_the_key() -> None:
    a = keys(chat("What is  up?\r\n\r\n\r\n\r\nreally  \n"))
    b = keys(chat("What is  up?\n\nreally"))
    assert a.exact == b.exact
    assert canonical_text("def f():\n    return 1\n") == "def f():\n    return 1"  # indentation kept


def test_json_key_order_and_int_vs_float_do_not_change_the_key() -> None:
    a = keys(chat("q", extra={"tools": [{"a": 1, "b": 2}], "user": "alice"}))
    b = keys(chat("q", extra={"tools": [{"b": 2.0, "a": 1}], "user": "bob"}))  # ``user`` never changes output
    assert a.exact == b.exact


def test_greedy_decoding_ignores_top_p_and_seed_but_sampling_does_not() -> None:
    assert keys(chat("q", top_p=0.5, seed=1)).exact == keys(chat("q", top_p=0.9)).exact
    sampled = Request(messages=(Message("user", "q"),), model="m", temperature=0.7, seed=1)
    assert keys(sampled).exact != keys(sampled.replace(seed=2)).exact


def test_everything_that_changes_the_answer_changes_the_key() -> None:
    base = keys(chat("q")).exact
    for variant in (
        chat("q", system="You are terse."),
        chat("q", max_tokens=5),
        chat("q", stop=("x",)),
        chat("q").replace(model="other"),
        chat("q", logprobs=True),
        chat("q", n=2),
        chat("q", extra={"tools": [{"name": "t"}]}),
    ):
        assert keys(variant).exact != base
    assert keys(chat("q", stop=("a", "b"))).exact == keys(chat("q", stop=("b", "a"))).exact
    assert keys(chat("q", stream=True)).exact == base


def test_context_key_covers_everything_but_the_final_user_turn() -> None:
    a, b = keys(chat("first question")), keys(chat("another question"))
    assert a.context == b.context and a.exact != b.exact and a.query == "first question"
    assert keys(chat("first question", system="Other system.")).context != a.context
    history = Request(
        messages=(Message("user", "hi"), Message("assistant", "hello"), Message("user", "first question")),
        model="m",
        temperature=0,
    )
    assert keys(history).context != a.context


def test_tenant_and_namespace_scope_every_key() -> None:
    request = chat("q")
    a, b, c = keys(request, "alice"), keys(request, "bob"), keys(request, "alice", "other")
    assert len({a.exact, b.exact, c.exact}) == 3 and len({a.context, b.context, c.context}) == 3


def test_requests_without_a_final_user_turn_are_exact_only() -> None:
    prompt = Request(prompt="Once upon a time", model="m", temperature=0)
    ends_on_assistant = Request(messages=(Message("user", "q"), Message("assistant", "partial")), model="m")
    assert keys(prompt).context is None and keys(ends_on_assistant).context is None
