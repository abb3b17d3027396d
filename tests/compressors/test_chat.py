"""Which parts of a chat request are blocks, and putting compressed blocks back (pure logic)."""

from __future__ import annotations

from tokenlean.compressors.chat import rebuild_request, split_request
from tokenlean.middleware.types import Message, Request


def words(text: str) -> int:
    return len(text.split())


LONG_A = "alpha " * 60
LONG_B = "beta " * 60
LONG_C = "gamma " * 60


def test_policy_picks_long_paragraphs_and_keeps_the_question() -> None:
    request = Request(
        messages=(
            Message("system", "Be brief.\n\n" + LONG_A),
            Message("assistant", LONG_B),  # the model's own words are never compressed
            Message("user", "Documents:\n\n" + LONG_B + "\n\n" + LONG_C + "\n\nWhat is gamma?"),
        )
    )
    split = split_request(request, words, min_block_tokens=20)
    assert split.blocks == (LONG_A, LONG_B, LONG_C)
    assert split.question == "What is gamma?"
    assert "Be brief." in split.instruction and "Documents:" in split.instruction
    rebuilt = rebuild_request(request, split, ["alpha", "", "gamma"])
    assert rebuilt.messages[0].content == "Be brief.\n\nalpha"
    assert rebuilt.messages[1] == request.messages[1]
    assert (
        rebuilt.messages[2].content == "Documents:\n\ngamma\n\nWhat is gamma?"
    )  # dropped block and its break gone


def test_last_user_keep_and_single_paragraph_questions_are_untouched() -> None:
    request = Request(messages=(Message("user", LONG_A + "\n\n" + "Summarise."),))
    kept = split_request(request, words, min_block_tokens=20, last_user="keep")
    assert kept.blocks == () and kept.question == request.messages[0].content
    single = Request(messages=(Message("system", LONG_B), Message("user", LONG_C)))
    split = split_request(single, words, min_block_tokens=20)
    assert split.blocks == (LONG_B,) and split.question == LONG_C.strip()


def test_roles_outside_the_policy_and_legacy_prompts() -> None:
    request = Request(messages=(Message("tool", LONG_A), Message("user", "Which letter?")))
    assert split_request(request, words, roles=("system",), min_block_tokens=20).blocks == ()
    split = split_request(request, words, min_block_tokens=20)
    emptied = rebuild_request(request, split, [""])
    assert emptied.messages[0] == Message("tool", "")  # a tool turn stays, even when emptied
    legacy = Request(prompt=LONG_A + "\n\n" + "Continue:")
    split = split_request(legacy, words, min_block_tokens=20)
    assert (
        split.blocks == (LONG_A,) and rebuild_request(legacy, split, ["alpha"]).prompt == "alpha\n\nContinue:"
    )
