"""The prompts of Skeleton-of-Thought: the skeleton, one point's expansion, and the opening line.

Skeleton-of-Thought (Ning et al., ICLR 2024, arXiv 2307.15337) describes their structure: the
skeleton prompt asks for a short numbered list of brief points and no details; the expansion
prompt gives the question (and optionally the skeleton) and asks for only one point, briefly.
The wording and the worked examples here are our own, tuned on the embedded SmolLM2-135M, on
Vicuna-80 questions *outside* the benchmark's sample. What shaped them:

- told only to be brief, so small a model writes "Title: a sentence" per point and runs out of
  skeleton tokens (9 of 16 Vicuna skeletons parsed); shown two worked examples as earlier chat
  turns it writes bare short lists (15 of 16 parsed, 29 tokens on average instead of 46);
- shown the whole skeleton, it copies the list back instead of writing about its point, so the
  expansion prompt names only the question and the point (``point_template`` can add
  ``{skeleton}`` for a larger model that uses it to avoid overlap);
- zero-shot, an expansion often echoes the instruction ("This answer is a one-sentence
  explanation of the answer") or stays vague ("Several key factors come into play"); one
  worked expansion as an earlier turn fixes most of that;
- expanded alone, no point names the subject of the question, so the list reads as detached
  fragments (and a reader, or an embedding, cannot tell what it answers). An *opening line*,
  written by one more request in the same parallel batch as the points, introduces the answer.

Measured on 19 Vicuna-80 questions outside the benchmark's sample, ``max_tokens=160``, mean
MiniLM cosine to GPT-3.5's answers (normal generation: 0.679): zero-shot points 0.682; with a
two-sentence worked expansion 0.724; with the opening line as well 0.785, but batched rows
prefill their whole prompt (no prefix reuse in a batch) and the longer expansions cost speed
(median speed-up 1.5x instead of 2.1x). The defaults, a *one*-sentence worked expansion plus
the opening line, scored 0.769 at a 1.9x median speed-up (2.1x zero-shot, same run).

Known failure mode: points expanded without each other's text can repeat one another, and the
opening line, written without the points, can announce something the points do not deliver.

Conversation context is kept: system messages come first, then the worked examples, then the
earlier turns, and the prompt replaces only the last user turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenlean.middleware.types import Message, Request

__all__ = [
    "DEFAULT_LEAD_EXAMPLES",
    "DEFAULT_LEAD_TEMPLATE",
    "DEFAULT_POINT_EXAMPLES",
    "DEFAULT_POINT_TEMPLATE",
    "DEFAULT_SKELETON_EXAMPLES",
    "DEFAULT_SKELETON_TEMPLATE",
    "SkeletonPrompts",
]

DEFAULT_SKELETON_TEMPLATE = (
    "Question: {question}\n\n"
    "Do not answer yet. List the {min_points} to {max_points} main points an answer should cover, "
    "one per line, numbered 1., 2., 3. Each point is a short phrase of 2 to 5 words."
)
DEFAULT_POINT_TEMPLATE = (
    "Question: {question}\n\nExplain this one point of the answer in one or two sentences: {point}"
)
DEFAULT_LEAD_TEMPLATE = (
    "Question: {question}\n\n"
    "Write only the first sentence of your answer: one short sentence that introduces the topic."
)
# (question, opening sentence) pairs shown as earlier turns before the real question
DEFAULT_LEAD_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What are good ways to save money?", "Saving money mostly comes down to a few everyday habits."),
    (
        "What if trains had never been invented?",
        "Without trains, the last two centuries would have unfolded very differently.",
    ),
)
# (question, skeleton) pairs shown as earlier turns before the real question
DEFAULT_SKELETON_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "What are good ways to save money?",
        "1. Track your spending\n2. Set a monthly budget\n3. Cook at home\n4. Cancel unused subscriptions",
    ),
    (
        "What if trains had never been invented?",
        "1. Slower travel\n2. Smaller cities\n3. Later industrial growth\n4. More canals and roads",
    ),
)
# (question, point, expansion) triples shown as an earlier turn before the real point
DEFAULT_POINT_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "What are good ways to save money?",
        "Cook at home",
        "Restaurant meals cost several times more than the same dish cooked at home.",
    ),
)


@dataclass(frozen=True, slots=True)
class SkeletonPrompts:
    """Templates and worked examples for the skeleton request and each point's expansion request.

    ``skeleton_template`` may use ``{question}``, ``{min_points}``, ``{max_points}``;
    ``point_template`` may use ``{question}``, ``{point}``, ``{index}`` (1-based) and
    ``{skeleton}`` (the numbered list of all points); ``lead_template`` may use ``{question}``.
    Empty example tuples mean zero-shot.
    """

    skeleton_template: str = DEFAULT_SKELETON_TEMPLATE
    point_template: str = DEFAULT_POINT_TEMPLATE
    skeleton_examples: tuple[tuple[str, str], ...] = field(default=DEFAULT_SKELETON_EXAMPLES)
    point_examples: tuple[tuple[str, str, str], ...] = field(default=DEFAULT_POINT_EXAMPLES)
    lead_template: str = DEFAULT_LEAD_TEMPLATE
    lead_examples: tuple[tuple[str, str], ...] = field(default=DEFAULT_LEAD_EXAMPLES)

    def skeleton(self, request: Request, *, min_points: int, max_points: int) -> tuple[Message, ...]:
        """The messages that ask for the skeleton of ``request``'s last user question."""

        def ask(question: str) -> str:
            return self.skeleton_template.format(
                question=question, min_points=max(min_points, 3), max_points=max_points
            )

        shots = [(ask(question), skeleton) for question, skeleton in self.skeleton_examples]
        return _compose(request.messages, shots, ask(request.last_user_text))

    def point(self, request: Request, points: Sequence[str], index: int) -> tuple[Message, ...]:
        """The messages that ask for point ``index`` (0-based) of ``points``, alone."""

        def ask(question: str, point: str, number: int, skeleton: str) -> str:
            return self.point_template.format(question=question, point=point, index=number, skeleton=skeleton)

        skeleton = "\n".join(f"{i}. {p}" for i, p in enumerate(points, 1))
        shots = [(ask(q, p, 1, f"1. {p}"), answer) for q, p, answer in self.point_examples]
        return _compose(
            request.messages, shots, ask(request.last_user_text, points[index], index + 1, skeleton)
        )

    def lead(self, request: Request) -> tuple[Message, ...]:
        """The messages that ask for the answer's opening sentence alone."""

        def ask(question: str) -> str:
            return self.lead_template.format(question=question)

        shots = [(ask(question), lead) for question, lead in self.lead_examples]
        return _compose(request.messages, shots, ask(request.last_user_text))


def _compose(messages: Sequence[Message], shots: Sequence[tuple[str, str]], text: str) -> tuple[Message, ...]:
    """System turns, worked examples as user/assistant turns, the conversation, then ``text``."""
    system = [m for m in messages if m.role in ("system", "developer")]
    rest = [m for m in messages if m.role not in ("system", "developer")]
    examples: list[Message] = []
    for question, answer in shots:
        examples += [Message("user", question), Message("assistant", answer)]
    return (*system, *examples, *_with_last_user(rest, text))


def _with_last_user(messages: Sequence[Message], text: str) -> tuple[Message, ...]:
    """``messages`` with the last user turn's content replaced by ``text``."""
    out = list(messages)
    for position in range(len(out) - 1, -1, -1):
        if out[position].role == "user":
            out[position] = Message("user", text, out[position].name)
            return tuple(out)
    return (*out, Message("user", text))
