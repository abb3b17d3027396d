"""Which parts of a chat request get compressed, and how the compressed parts go back in.

The policy: messages of the listed roles (by default system, developer, tool and user) are split
into paragraphs at blank lines; a paragraph of at least ``min_block_tokens`` tokens is a context
block (a document, a demonstration), shorter ones stay as they are (headings, short
instructions). The last user message is special: its final paragraph is the question, which is
never compressed; with ``last_user="keep"`` the whole message is left alone. Assistant turns are
never compressed (the model's own words are cheap to keep and costly to misquote).

Requests using tools, a JSON response format or non-text parts (``Request.structured_features``):
tool definitions and ``response_format`` are never touched (they are not messages), system and
developer messages are kept whole (they carry the tool-use and JSON-mode instructions), and so is
any message with non-text parts; user and tool documents are compressed as usual.

Known failure mode: a document that has no blank lines inside a long user message is one block;
a question asked *before* the documents in the last user message is taken for a block.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tokenlean.middleware.types import Message, Request

__all__ = ["ChatSplit", "prefix_digests", "rebuild_request", "split_request"]

_PARAGRAPH_BREAK = re.compile(r"(\n[ \t]*\n\s*)")
DEFAULT_ROLES = ("system", "developer", "tool", "user")


@dataclass(frozen=True, slots=True)
class ChatSplit:
    """A request cut into context blocks, the text kept whole, and the question.

    ``parts[m]`` is message ``m``'s content as alternating paragraphs and separators (``None``
    for a message left alone); ``slots[b]`` is ``(message, part index)`` of block ``b``.
    """

    parts: tuple[tuple[str, ...] | None, ...]
    slots: tuple[tuple[int, int], ...]
    blocks: tuple[str, ...]
    instruction: str
    question: str


def _texts(request: Request) -> list[Message]:
    if request.prompt is not None:
        return [Message("user", request.prompt)]
    return list(request.messages)


def _last_user(messages: Sequence[Message]) -> int:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), -1)


def split_request(
    request: Request,
    count: Callable[[str], int],
    *,
    roles: Sequence[str] = DEFAULT_ROLES,
    min_block_tokens: int = 48,
    last_user: str = "blocks",
) -> ChatSplit:
    """Cut ``request`` into blocks under the policy; ``count`` is the target tokenizer's counter."""
    messages = _texts(request)
    last = _last_user(messages)
    parts: list[tuple[str, ...] | None] = []
    slots: list[tuple[int, int]] = []
    blocks: list[str] = []
    kept_whole: list[str] = []
    question = ""
    structured = bool(request.structured_features)
    for m, message in enumerate(messages):
        pieces = tuple(_PARAGRAPH_BREAK.split(message.content))
        whole = message.has_non_text_parts or (structured and message.role in ("system", "developer"))
        if whole and m != last:
            parts.append(None)
            kept_whole.append(message.content)
            continue
        if m == last:
            question = pieces[-1].strip()
            if last_user == "keep" or len(pieces) == 1 or message.has_non_text_parts:
                parts.append(None)
                question = message.content.strip()
                continue
        if message.role not in roles and m != last:
            parts.append(None)
            kept_whole.append(message.content)
            continue
        parts.append(pieces)
        for p in range(0, len(pieces), 2):
            text = pieces[p]
            if (m == last and p == len(pieces) - 1) or not text.strip():
                continue
            if count(text) >= min_block_tokens:
                slots.append((m, p))
                blocks.append(text)
            else:
                kept_whole.append(text)
    return ChatSplit(tuple(parts), tuple(slots), tuple(blocks), "\n\n".join(kept_whole), question)


def rebuild_request(request: Request, split: ChatSplit, compressed: Sequence[str]) -> Request:
    """``request`` with each block replaced by its compressed text; emptied paragraphs removed."""
    new_parts = [list(p) if p is not None else None for p in split.parts]
    for (m, p), text in zip(split.slots, compressed, strict=True):
        target = new_parts[m]
        assert target is not None  # a slot always points into a split message
        target[p] = text
    messages = _texts(request)
    rebuilt: list[Message] = []
    for message, parts in zip(messages, new_parts, strict=True):
        if parts is None:
            rebuilt.append(message)
            continue
        content = _join(parts)
        if content or message.role == "tool" or message.tool_calls or message.parts:
            rebuilt.append(message.replace(content=content))  # parts, tool calls and ids kept
    if request.prompt is not None:
        return request.replace(prompt=rebuilt[0].content if rebuilt else "")
    return request.replace(messages=rebuilt)


def prefix_digests(request: Request, split: ChatSplit) -> tuple[str, ...]:
    """Per block, a digest of the request's text from its start to the end of that block.

    Two requests with equal digests at block ``b`` sent the same messages (roles included) up to
    and including block ``b``: the example memo (``examples.py``) keys on this.
    """
    hasher = hashlib.blake2b(digest_size=16)
    block_at = {slot: b for b, slot in enumerate(split.slots)}
    digests: list[str] = [""] * len(split.slots)
    for m, message in enumerate(_texts(request)):
        hasher.update(f"\x00{message.role}\x00".encode())
        parts = split.parts[m]
        for p, text in enumerate(parts if parts is not None else (message.content,)):
            hasher.update(text.encode())
            if parts is not None and (m, p) in block_at:
                digests[block_at[(m, p)]] = hasher.copy().hexdigest()
    return tuple(digests)


def _join(parts: list[str]) -> str:
    """Paragraphs and separators back into text, dropping empty paragraphs and their separator."""
    out: list[str] = []
    for i in range(0, len(parts), 2):
        if not parts[i].strip():
            continue
        if out:
            out.append(parts[i - 1] if i > 0 else "\n\n")
        out.append(parts[i])
    return "".join(out)
