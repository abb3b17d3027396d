"""Scorers: how sure are we that a tier's answer is good enough to stop the cascade?

FrugalGPT (Chen, Zaharia & Zou, 2023, arXiv 2305.05176) scores each answer with a small learnt
model and escalates below a threshold. Every scorer here returns a confidence in [0, 1] (higher
is better) or ``None`` when it cannot judge (no log-probabilities came back): ``None`` escalates.

* ``LogprobScorer`` - the answer's own token probabilities (geometric mean, or the least likely
  token). Known failure mode: models are confidently wrong; calibration differs per model, so a
  threshold fitted on one tier does not transfer to another.
* ``AgreementScorer`` - self-consistency: ask the tier for ``n`` samples in one request (vLLM
  serves n>1 in one batch) and score the share that agree with the majority's final answer.
  Known failure mode: costs n answers of output tokens; consistent errors agree.
* ``LearntScorer`` (``learnt.py``) - a light model over the embedder's vectors and cheap answer
  features, trained from labelled answers.

A scorer may ask for what it needs by rewriting the tier's request (``prepare``) and may pick
which of several choices the client receives (``choose``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from tokenlean.errors import ConfigError
from tokenlean.middleware.types import Choice, Request, Response
from tokenlean.reasoning.cascade.arithmetic import final_number

__all__ = [
    "AgreementScorer",
    "LogprobScorer",
    "Scorer",
    "SingleAnswerScorer",
    "build_scorer",
    "normalise_answer",
    "register_scorer",
]


@runtime_checkable
class Scorer(Protocol):
    """Judges one tier's answer to one request. A scorer that loads a model on first use may also
    define ``async def warm_up(self)``, which the stage's ``warm_up`` calls at startup."""

    name: ClassVar[str]

    def prepare(self, request: Request) -> Request:
        """The request to send to a tier (ask for log-probabilities, for n samples, ...)."""
        ...

    async def score(self, request: Request, response: Response) -> float | None:
        """Confidence in [0, 1] that ``response`` answers ``request`` well; ``None``: cannot judge."""
        ...

    def choose(self, response: Response) -> Choice:
        """The choice the client receives if this answer is accepted."""
        ...


class SingleAnswerScorer:
    """Base for scorers that judge one answer: ask for nothing extra, hand the client the first choice."""

    def prepare(self, request: Request) -> Request:
        """Send the request as it is."""
        return request

    def choose(self, response: Response) -> Choice:
        """The first choice (a tier answers with one)."""
        return response.choices[0] if response.choices else Choice()


class LogprobScorer(SingleAnswerScorer):
    """Confidence from the answer's own token log-probabilities."""

    name: ClassVar[str] = "logprob"

    def __init__(self, *, reduce: str = "mean") -> None:
        if reduce not in {"mean", "min"}:
            raise ConfigError("logprob scorer: reduce must be 'mean' or 'min'", param="scorer.reduce")
        self.reduce = reduce

    def prepare(self, request: Request) -> Request:
        """Ask the tier for per-token log-probabilities."""
        return request.replace(logprobs=True)

    async def score(self, request: Request, response: Response) -> float | None:
        """exp(mean log-probability) (the per-token geometric mean), or the least likely token's probability."""
        choice = self.choose(response)
        values = [float(entry["logprob"]) for entry in choice.logprobs or () if "logprob" in entry]
        if not values:
            return None
        value = sum(values) / len(values) if self.reduce == "mean" else min(values)
        return math.exp(value)


class AgreementScorer:
    """Self-consistency over ``samples`` answers drawn in one request."""

    name: ClassVar[str] = "agreement"

    def __init__(self, *, samples: int = 5, temperature: float = 0.7) -> None:
        if samples < 2:
            raise ConfigError("agreement scorer: samples must be at least 2", param="scorer.samples")
        self.samples = samples
        self.temperature = temperature

    def prepare(self, request: Request) -> Request:
        """Ask for ``samples`` answers, sampled (greedy decoding would make them all agree)."""
        temperature = request.temperature if request.temperature else self.temperature
        return request.replace(n=self.samples, temperature=temperature)

    async def score(self, request: Request, response: Response) -> float | None:
        """The share of samples whose normalised answer equals the most common one."""
        answers = [normalise_answer(choice.text) for choice in response.choices]
        if not answers:
            return None
        return Counter(answers).most_common(1)[0][1] / len(answers)

    def choose(self, response: Response) -> Choice:
        """A sample that gives the majority answer, re-indexed as choice 0."""
        if not response.choices:
            return Choice()
        majority = Counter(normalise_answer(c.text) for c in response.choices).most_common(1)[0][0]
        chosen = next(c for c in response.choices if normalise_answer(c.text) == majority)
        return Choice(0, chosen.text, chosen.finish_reason, chosen.logprobs)


def normalise_answer(text: str) -> str:
    """What two answers must share to agree: the final number if there is one, else the words."""
    number = final_number(text)
    if number is not None:
        return f"{number:g}"
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))[:200]


_SCORERS: dict[str, Any] = {
    "logprob": LogprobScorer,
    "agreement": AgreementScorer,
    "learnt": "tokenlean.reasoning.cascade.learnt:LearntScorer",
}


def register_scorer(name: str, target: Any) -> None:
    """Make a scorer class (or ``"module:attr"``) available to specs as ``scorer: {type: name}``."""
    _SCORERS[name] = target


def build_scorer(spec: Mapping[str, Any]) -> Scorer:
    """Construct the scorer a spec names: ``{type: learnt, path: scorer.npz}``."""
    options = dict(spec)
    kind = options.pop("type", None)
    target = _SCORERS.get(str(kind))
    if target is None:
        raise ConfigError(
            f"unknown scorer {kind!r}; known: {', '.join(sorted(_SCORERS))}", param="scorer.type"
        )
    if isinstance(target, str):
        import importlib

        module, _, attribute = target.partition(":")
        target = _SCORERS[str(kind)] = getattr(importlib.import_module(module), attribute)
    try:
        return target(**options)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ConfigError(f"scorer {kind}: {exc}", param="scorer") from exc
