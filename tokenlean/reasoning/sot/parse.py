"""Reading a skeleton out of whatever the model wrote, and cleaning what it wrote for a point.

Skeleton-of-Thought (Ning et al., ICLR 2024, arXiv 2307.15337) asks the model for a short
numbered list of points. Models do not always comply: they number with ``1.``, ``1)``, ``(1)``,
``Point 1:``, bullets or Markdown headings, put the whole list on one line, add a preamble
("Sure! Here is the outline:"), a closing remark, sub-bullets, a second example list, or
repeat the same point. Known failure mode: a skeleton that only *looks* like a list (a list of
steps of one derivation) parses fine; deciding whether points are independent is the router's
job, not the parser's. What does not parse as at least ``min_points`` distinct points is
refused (``None``), and the stage then falls back to normal generation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["clean_expansion", "clean_lead", "drop_restated_opening", "parse_skeleton", "trim_to_sentence"]

_NUMBERED = re.compile(
    r"^(?P<indent>\s*)(?:#{1,6}\s*)?(?:\*\*)?(?:(?:point|step|item)\s*)?\(?(?P<num>\d{1,2})\s*(?:[.):\]]|-(?=\s))(?:\*\*)?\s+(?P<text>.+)$",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^(?P<indent>\s*)(?:[-*+\u2022\u00b7\u25cf\u25aa\u2013]|#{1,6})\s+(?P<text>.+)$")
_INLINE = re.compile(r"(?:^|(?<=\s))(?:\(?(\d{1,2})[.)])\s+")
_TITLE_SPLIT = re.compile(r"\s*(?::|\s[-\u2013\u2014]\s)\s*")
_NOISE = re.compile(r"^(?:outline|skeleton|answer|points?|summary)\s*:?$", re.IGNORECASE)
_MAX_TITLE_WORDS = 12
_FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "to",
        "of",
        "in",
        "on",
        "for",
        "and",
        "or",
        "is",
        "are",
        "be",
        "by",
        "with",
        "your",
        "you",
        "my",
        "i",
        "we",
        "our",
        "it",
        "its",
        "this",
        "that",
        "how",
        "what",
        "can",
        "do",
        "does",
        "if",
        "would",
    ]
)


def parse_skeleton(
    text: str,
    *,
    min_points: int = 2,
    max_points: int = 8,
    truncated: bool = False,
    question: str = "",
) -> tuple[str, ...] | None:
    """The skeleton's points in order (at most ``max_points``), or ``None`` if it is not a list.

    Numbered lines win over bullets, and both over numbers run together on one line; when lists
    nest, only the outermost level counts. A numbered list ends where its numbering restarts (a
    second list or an echoed example). Repeated points count once, and so does a point that is a
    prefix of another. ``truncated`` (the model hit its token limit) drops a last point cut off
    mid-line; a point that only restates ``question`` is dropped.
    """
    if truncated and not text.endswith("\n"):
        text = (
            text[: text.rfind("\n")]
            if "\n" in text.strip()
            else re.sub(r"^(.*)\s\(?\d{1,2}[.)]\s.*$", r"\1", text, flags=re.DOTALL)
        )
    lines = [line.rstrip() for line in text.replace("\r", "").split("\n")]
    for bodies in (_numbered_points(lines), _bulleted_points(lines), _inline_points(text)):
        points = _distinct((_title(body) for body in bodies), question)
        if len(points) >= min_points:
            return points[:max_points]
    return None


def _numbered_points(lines: list[str]) -> list[str]:
    found = [
        (m.group("indent"), int(m.group("num")), m.group("text")) for m in map(_NUMBERED.match, lines) if m
    ]
    if not found:
        return []
    top = min(len(indent.expandtabs(4)) for indent, _, _ in found)
    points: list[str] = []
    expected: int | None = None
    for indent, number, body in found:
        if len(indent.expandtabs(4)) != top:
            continue
        if expected is not None and number != expected:
            if points and number <= 1:
                break  # numbering restarted: a second list, an example, a repetition
            if number < expected:
                continue
        points.append(body)
        expected = number + 1
    return points


def _bulleted_points(lines: list[str]) -> list[str]:
    found = [(m.group("indent"), m.group("text")) for m in map(_BULLET.match, lines) if m]
    if not found:
        return []
    top = min(len(indent.expandtabs(4)) for indent, _ in found)
    return [body for indent, body in found if len(indent.expandtabs(4)) == top]


def _inline_points(text: str) -> list[str]:
    """``1. a 2. b 3. c`` on one line: split where the numbers count up from 1."""
    matches = list(_INLINE.finditer(text))
    points: list[str] = []
    expected = 1
    starts: list[tuple[int, int]] = []
    for match in matches:
        if int(match.group(1)) == expected:
            starts.append((match.start(), match.end()))
            expected += 1
    for index, (_, body_start) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else len(text)
        points.append(text[body_start:end].split("\n\n")[0])
    return points


def _title(body: str) -> str:
    """A point's short title: Markdown removed, cut at ``Title: explanation``, a few words at most."""
    text = re.sub(r"[*_`]+", "", body).strip()
    head = _TITLE_SPLIT.split(text, maxsplit=1)[0].strip()
    if 0 < len(head.split()) <= _MAX_TITLE_WORDS:
        text = head
    words = text.split()
    if len(words) > _MAX_TITLE_WORDS:
        first_clause = re.split(r"(?<=[.;!?,])\s", text, maxsplit=1)[0]
        words = first_clause.split()[:_MAX_TITLE_WORDS]
        text = " ".join(words)
    return text.strip(" .;,:-\u2013\u2014\"'")


def _distinct(titles: Iterable[str], question: str) -> tuple[str, ...]:
    asked = set(_key(question).split())
    seen: list[str] = []
    kept: list[str] = []
    for title in titles:
        key = _key(title)
        words = key.split()
        if not key or _NOISE.match(title) or any(_word_prefix(words, k.split()) for k in seen):
            continue
        if len(words) >= 4 and sum(w in asked for w in words) >= 0.9 * len(words):
            continue  # the question again, not a point of its answer
        seen.append(key)
        kept.append(title)
    return tuple(kept)


def _word_prefix(a: list[str], b: list[str]) -> bool:
    """One word sequence starts the other (a repeated point, or one cut off)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _key(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().lower()


def clean_expansion(text: str, title: str, others: Sequence[str] = ()) -> str:
    """What a model wrote for one point, without a restated title or the skeleton's other points.

    Small models often begin with ``3. Title:`` or the title itself, and run on into the next
    points of the skeleton (``others``); both would repeat in the assembled answer. A numbered
    list of the point's own (whose items are not other points' titles) is kept.
    """
    text = re.sub(r"^(?:\*\*)?\(?\d{1,2}[.)](?:\*\*)?\s+", "", text.strip())
    plain = re.sub(r"[*_`#]+", "", text).lstrip()
    if title and plain.lower().startswith(title.lower()):
        rest = plain[len(title) :]
        if not rest.strip() or rest.lstrip(" ")[:1] in {":", ".", "-", "\u2013", "\u2014", "\n"}:
            text = rest.lstrip(" :.-\u2013\u2014\n")  # a heading; "Title is ..." stays a sentence
    other_keys = {_key(other) for other in others if _key(other)}
    kept: list[str] = []
    for line in text.split("\n"):
        match = _NUMBERED.match(line) or _BULLET.match(line)
        if kept and match and _key(_title(match.group("text"))) in other_keys:
            break
        kept.append(line)
    return "\n".join(kept).strip()


def trim_to_sentence(text: str) -> str:
    """``text`` up to its last complete sentence, when it has one; a point cut off by its token
    budget reads better one sentence shorter than ending mid-word."""
    ends = [m.end() for m in re.finditer(r"[.!?][\"')\]]*(?=\s+[A-Z0-9\"'(*]|\s*$)", text)]
    return text[: ends[-1]].rstrip() if ends else text


def clean_lead(text: str, *, truncated: bool = False) -> str:
    """The opening sentence the model wrote for an answer, or ``""`` when there is none.

    Only the first line counts (a model that goes on into a list of its own is cut there); a
    first line that is itself a list item is no opening. A lead cut by its token cap ends at its
    last full sentence or, without one, at its last clause (``", and so on"`` is dropped and a
    full stop added); fewer than four words left is no lead at all.
    """
    line = next((line.strip() for line in text.strip().split("\n") if line.strip()), "")
    line = re.sub(r"[*_`#]+", "", line).strip().strip("\"'").strip()
    if not line or _NUMBERED.match(line) or _BULLET.match(line):
        return ""
    if truncated or not re.search(r"[.!?][\"')\]]*$", line):
        whole = trim_to_sentence(line)
        if whole != line or re.search(r"[.!?][\"')\]]*$", whole):
            line = whole
        elif "," in line:
            line = line.rsplit(",", 1)[0].rstrip(" ;:-\u2013\u2014") + "."
        else:
            return ""
    return line if len(line.split()) >= 4 else ""


def drop_restated_opening(text: str, question: str) -> str:
    """``text`` without an opening clause that only restates ``question``.

    Expanded one by one, every point of a small model's answer tends to open with the question
    again ("To improve your time management skills, ..."); in the assembled list that clause
    repeats once per point. A first clause (up to a comma) of at most a dozen words, four fifths
    of its content words from the question, is dropped and the rest capitalised.
    """
    head, comma, rest = text.partition(",")
    words = _key(head).split()
    content = [word for word in words if word not in _FUNCTION_WORDS]
    asked = set(_key(question).split())
    if not comma or not rest.strip() or not 2 <= len(words) <= 12 or not content:
        return text
    if sum(word in asked for word in content) < 0.8 * len(content):
        return text
    rest = rest.strip()
    return rest[0].upper() + rest[1:]
