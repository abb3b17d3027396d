"""The two prompts of Skeleton-of-Thought: one asks for the skeleton, one expands a single point.

Skeleton-of-Thought (Ning et al., ICLR 2024, arXiv 2307.15337) describes their structure: the
skeleton prompt asks for a short numbered list of brief points and no details; the expansion
prompt gives the question (and optionally the skeleton) and asks for only one point, briefly.
The wording here is our own, tuned on the embedded SmolLM2-135M: shown the whole skeleton, so
small a model copies the list back instead of writing about its point, so the default
expansion prompt names only the question and the point (``point_template`` can add
``{skeleton}`` for a larger model that uses it to avoid overlapping points). Known failure mode:
points expanded without each other's text can repeat one another or restate the question.

Conversation context is kept: the prompts replace only the last user turn, so system messages
and earlier turns still reach the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenlean.middleware.types import Message, Request

__all__ = ["DEFAULT_POINT_TEMPLATE", "DEFAULT_SKELETON_TEMPLATE", "SkeletonPrompts"]

DEFAULT_SKELETON_TEMPLATE = (
    "Question: {question}\n\n"
    "Do not answer yet. List the {min_points} to {max_points} main points an answer should cover, "
    "one per line, numbered 1., 2., 3. Each point is a short phrase of 2 to 5 words."
)
DEFAULT_POINT_TEMPLATE = (
    "Question: {question}\n\n"
    "Explain this one point of the answer in one or two sentences: {point}"
)


@dataclass(frozen=True, slots=True)
class SkeletonPrompts:
    """Templates for the skeleton request and each point's expansion request.

    ``skeleton_template`` may use ``{question}``, ``{min_points}``, ``{max_points}``;
    ``point_template`` may use ``{question}``, ``{point}``, ``{index}`` (1-based) and
    ``{skeleton}`` (the numbered list of all points).
    """

    skeleton_template: str = DEFAULT_SKELETON_TEMPLATE
    point_template: str = DEFAULT_POINT_TEMPLATE

    def skeleton(self, request: Request, *, min_points: int, max_points: int) -> tuple[Message, ...]:
        """The messages that ask for the skeleton of ``request``'s last user question."""
        text = self.skeleton_template.format(
            question=request.last_user_text, min_points=max(min_points, 3), max_points=max_points
        )
        return _with_last_user(request.messages, text)

    def point(self, request: Request, points: Sequence[str], index: int) -> tuple[Message, ...]:
        """The messages that ask for point ``index`` (0-based) of ``points``, alone."""
        skeleton = "\n".join(f"{i}. {p}" for i, p in enumerate(points, 1))
        text = self.point_template.format(
            question=request.last_user_text, point=points[index], index=index + 1, skeleton=skeleton
        )
        return _with_last_user(request.messages, text)


def _with_last_user(messages: Sequence[Message], text: str) -> tuple[Message, ...]:
    """``messages`` with the last user turn's content replaced by ``text``."""
    out = list(messages)
    for position in range(len(out) - 1, -1, -1):
        if out[position].role == "user":
            out[position] = Message("user", text, out[position].name)
            return tuple(out)
    return (*out, Message("user", text))
