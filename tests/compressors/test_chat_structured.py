"""Compression keeps tool/JSON instructions and non-text parts whole (issue 15): pure split logic."""

from __future__ import annotations

from tokenlean.compressors.chat import rebuild_request, split_request
from tokenlean.middleware.types import Message, Request

DOC = "word " * 80  # one long paragraph: a block at min_block_tokens=48 with a word counter
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def _count(text: str) -> int:
    return len(text.split())


def test_instructions_stay_whole_for_tool_and_json_requests_and_documents_are_still_blocks() -> None:
    system = Message("system", f"Answer with a JSON object.\n\n{DOC}")
    user = Message("user", f"{DOC}\n\nWhat is it?")
    plain = split_request(Request(messages=(system, user)), _count)
    assert len(plain.blocks) == 2  # the system document is compressible in a plain request
    for fields in ({"response_format": {"type": "json_object"}}, {"tools": ({"type": "function"},)}):
        split = split_request(Request(messages=(system, user), **fields), _count)  # type: ignore[arg-type]
        assert split.parts[0] is None and len(split.blocks) == 1, "only the user's document"


def test_a_message_with_an_image_is_never_compressed_and_keeps_its_parts() -> None:
    parts = ({"type": "text", "text": DOC}, IMAGE)
    with_image = Message("user", DOC, parts=parts)
    tool_turn = Message("tool", DOC, tool_call_id="call_1")
    request = Request(messages=(with_image, tool_turn, Message("user", "Describe it.")))
    split = split_request(request, _count)
    assert split.parts[0] is None and len(split.blocks) == 1
    rebuilt = rebuild_request(request, split, ["short"])
    assert rebuilt.messages[0] == with_image
    assert rebuilt.messages[1].tool_call_id == "call_1" and rebuilt.messages[1].content.strip() == "short"
