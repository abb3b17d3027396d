"""SoT-R, the router of Skeleton-of-Thought: does this request suit a skeleton at all?

Skeleton-of-Thought (Ning et al., ICLR 2024, arXiv 2307.15337) helps where an answer is a set
of independent points (advice, comparisons, consequences) and hurts where each step needs the
previous one (maths, code, step-by-step reasoning), where the answer is short, or where it must
read as one piece (role-play, stories). The paper's trained router is a RoBERTa classifier on
labelled LIMA requests; ours is a logistic regression over the embedded chat model's hidden state
as it starts to answer (``states.py``; older weights read the MiniLM sentence vector), optionally
with a few lexical cues for the request's form (``features.py``), trained on SoT's labelled LIMA
and Vicuna-80 requests (``python -m tokenlean.reasoning.sot.train_router``), Platt-calibrated on
held-out folds, shipped as a few kilobytes of weights (``router.npz``) that numpy applies to the
encoder's rows. Its threshold is chosen for precision (a wrong "yes" costs answer quality, a
wrong "no" only the speed-up), so it says "no" to many requests that would suit SoT. In front of
it sits a guard for kinds the paper names as unsuitable and that a learnt score blurs: requests
that contain a formula or code, ask to write a program, or ask for step-by-step reasoning are
never routed.

Known failure mode: a router trained on one set of requests keeps its ranking better than its
calibration on another (trained on LIMA alone it scored ROC AUC 0.80 but precision 0.55 on a
third set); the calibration is fitted on held-out folds of the training sets, not on the traffic
it routes, so its probability is an estimate, and ``threshold`` is a constructor option.
"""

from __future__ import annotations

import csv
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tokenlean.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_WEIGHTS",
    "MINILM",
    "RequestEncoder",
    "Route",
    "RouterWeights",
    "SkeletonRouter",
    "maths_or_code",
    "read_router_csv",
]

DEFAULT_WEIGHTS = Path(__file__).with_name("router.npz")


class RequestEncoder(Protocol):
    """Turns requests into the feature rows router weights read (a MiniLM ``Embedder`` is one)."""

    def embed(self, texts: list[str]) -> np.ndarray:
        """An array with one row per text."""
        ...


MINILM = "all-MiniLM-L6-v2"
"""The encoder of weights written before ``encoder`` was stored: the unit-norm sentence vector."""

_FORMULA = re.compile(
    r"\d\s*[-+*/^\u00d7\u00f7=]\s*\(?\d"  # 3 + 4, 2^10, 5 = (5
    r"|\b[a-z]\s*[=^]\s*-?\d"  # x = 3, x^2
    r"|\d\s*[a-z]\s*[-+=]"  # 3x + 1
    r"|\b[a-z]\s*\(\s*[a-z0-9]\s*\)\s*="  # f(x) =
    r"|\\frac|\$[^$]+\$",  # LaTeX
    re.IGNORECASE,
)
_CODE = re.compile(
    r"```"
    r"|\b(?:def|class|function|return|import|#include)\b.*[({:;]"
    r"|\b(?:write|implement|develop)\s+(?:\S+\s+){0,3}?(?:program|function|script|code|algorithm|class"
    r"|regex|regular expression|data structure)\b",
    re.IGNORECASE,
)


# asks for a chain of dependent steps (the paper: step-by-step reasoning does not suit SoT)
_STEPWISE = re.compile(
    r"step[- ]by[- ]step|explain your (?:answer|reasoning)|through your reasoning|show your work",
    re.IGNORECASE,
)


def maths_or_code(text: str) -> str | None:
    """``"maths"``, ``"code"`` or ``"step-by-step"`` when ``text`` holds a formula or code, asks
    for a program, or asks for its reasoning step by step; ``None`` otherwise."""
    if _FORMULA.search(text):
        return "maths"
    if _CODE.search(text):
        return "code"
    if _STEPWISE.search(text):
        return "step-by-step"
    return None


@dataclass(frozen=True, slots=True)
class Route:
    """The router's decision: ``suits`` SoT or not, with the calibrated probability and the
    threshold it was held against, or (both ``None``) the guard that decided."""

    suits: bool
    probability: float | None
    reason: str
    threshold: float | None = None


@dataclass(frozen=True, eq=False)
class RouterWeights:
    """A logistic regression with Platt calibration: ``sigmoid(a * (features @ coef + intercept) + b)``.

    The features are the request's vector from ``encoder`` (``states.ENCODING``, or ``MINILM``
    for the unit-norm sentence vector), followed, when ``lexical`` is a cue-list
    version (``features.VERSION``), by that version's lexical cues; ``lexical=0`` means the
    vector alone (weights written before the cues existed). ``calibration`` is ``(a, b)``;
    weights written before it existed load as ``(1, 0)``, the raw regression.
    """

    coef: np.ndarray
    intercept: float
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    lexical: int = 0
    calibration: tuple[float, float] = (1.0, 0.0)
    encoder: str = MINILM

    def save(self, path: str | Path) -> None:
        """Write the weights (float32) and their provenance to an ``.npz`` file."""
        import numpy as np

        np.savez_compressed(
            path,
            coef=np.asarray(self.coef, dtype=np.float32),
            intercept=np.float32(self.intercept),
            threshold=np.float64(self.threshold),
            lexical=np.int32(self.lexical),
            calibration=np.asarray(self.calibration, dtype=np.float64),
            encoder=np.array(self.encoder),
            meta=np.array(json.dumps(self.meta, sort_keys=True)),
        )

    @classmethod
    def load(cls, path: str | Path) -> RouterWeights:
        """Read weights written by ``save``; ``ConfigError`` if the file is missing or malformed."""
        import numpy as np

        from tokenlean.reasoning.sot.features import VERSION

        try:
            with np.load(path, allow_pickle=False) as data:
                weights = cls(
                    coef=data["coef"].astype(np.float32),
                    intercept=float(data["intercept"]),
                    threshold=round(float(data["threshold"]), 6),  # older files: float32
                    meta=json.loads(str(data["meta"])),
                    lexical=int(data["lexical"]) if "lexical" in data.files else 0,
                    calibration=_calibration(data),
                    encoder=str(data["encoder"]) if "encoder" in data.files else MINILM,
                )
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"cannot read SoT router weights {path}: {exc}", param="router_weights"
            ) from exc
        if weights.lexical not in (0, VERSION):
            raise ConfigError(
                f"SoT router weights {path} use lexical cues v{weights.lexical}, this tokenlean has "
                f"v{VERSION}: retrain them with train_router",
                param="router_weights",
            )
        if weights.encoder not in _encoders():
            raise ConfigError(
                f"SoT router weights {path} read {weights.encoder!r}, which this tokenlean cannot "
                f"compute (it has: {'; '.join(_encoders())}): retrain them with train_router",
                param="router_weights",
            )
        return weights

    def features(self, vectors: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        """The rows the classifier reads: ``vectors``, plus the lexical cues of ``texts`` if used."""
        import numpy as np

        if not self.lexical:
            return vectors
        if texts is None or len(texts) != len(vectors):
            raise ValueError("these router weights need the texts as well as their vectors")
        from tokenlean.reasoning.sot.features import lexical_features

        return np.hstack([vectors, lexical_features(texts)])

    def logits(self, vectors: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        """The regression's uncalibrated log-odds for each row of ``vectors``."""
        import numpy as np

        return np.asarray(self.features(vectors, texts) @ self.coef + self.intercept, dtype=np.float64)

    def probabilities(self, vectors: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        """Calibrated P(suits SoT) for each row of ``vectors`` (``texts``: the requests they embed)."""
        import numpy as np

        scale, shift = self.calibration
        return np.asarray(1.0 / (1.0 + np.exp(-(scale * self.logits(vectors, texts) + shift))))


class SkeletonRouter:
    """Scores requests for SoT; the encoder and weights load on first use, not at construction.

    ``embedder`` replaces the encoder the weights name (tests; weights trained on other vectors).
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        threshold: float | None = None,
        embedder: RequestEncoder | None = None,
    ) -> None:
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"router threshold must be within [0, 1], got {threshold}", param="threshold")
        self.path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        self._threshold = threshold
        self._embedder = embedder
        self._weights: RouterWeights | None = None
        self._lock = threading.Lock()

    @property
    def weights(self) -> RouterWeights:
        """The classifier, read from ``path`` once."""
        with self._lock:
            if self._weights is None:
                self._weights = RouterWeights.load(self.path)
            return self._weights

    @property
    def threshold(self) -> float:
        """Probability at or above which a request is routed to SoT."""
        return self._threshold if self._threshold is not None else self.weights.threshold

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """P(suits SoT) for each text (blocking: runs the weights' encoder)."""
        if self._embedder is None:
            self._embedder = encoder_for(self.weights.encoder)
        return self.weights.probabilities(self._embedder.embed(texts), texts)

    def probability(self, text: str) -> float:
        """P(``text`` suits SoT) by the classifier alone."""
        return float(self.probabilities([text])[0])

    def route(self, text: str) -> Route:
        """The guard first (no embedding needed), then the classifier against ``threshold``."""
        return self.routes([text])[0]

    def routes(self, texts: list[str]) -> list[Route]:
        """``route`` for many texts, embedding only those the guard lets through, in one batch."""
        kinds = [maths_or_code(text) for text in texts]
        open_texts = [text for text, kind in zip(texts, kinds, strict=True) if kind is None]
        probabilities = iter(self.probabilities(open_texts).tolist() if open_texts else [])
        routes = []
        for kind in kinds:
            if kind is not None:
                routes.append(Route(False, None, f"{kind} (guard)"))
                continue
            probability = round(next(probabilities), 4)
            suits = probability >= self.threshold
            reason = f"classifier {'at or above' if suits else 'below'} {self.threshold:g}"
            routes.append(Route(suits, probability, reason, self.threshold))
        return routes


def _encoders() -> tuple[str, ...]:
    from tokenlean.reasoning.sot.states import ENCODING

    return (ENCODING, MINILM)


def encoder_for(name: str) -> RequestEncoder:
    """The process-wide encoder that computes the vectors weights with ``encoder=name`` read."""
    from tokenlean.reasoning.sot.states import ENCODING, shared_state_encoder

    if name == ENCODING:
        return shared_state_encoder()
    from tokenlean.embeddings import shared_embedder

    return shared_embedder()


def _calibration(data: Any) -> tuple[float, float]:
    """Platt's ``(a, b)`` from a weights file; ``(1, 0)`` for files written before calibration."""
    if "calibration" not in data.files:
        return (1.0, 0.0)
    scale, shift = (float(x) for x in data["calibration"])
    return (scale, shift)


def read_router_csv(path: str | Path) -> tuple[list[str], list[int]]:
    """Requests and 0/1 labels from SoT's ``router.csv`` (``;``-separated, quoted multi-line fields)."""
    texts: list[str] = []
    labels: list[int] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter=";"):
            texts.append(row["request"])
            labels.append(int(row["label"]))
    return texts, labels
