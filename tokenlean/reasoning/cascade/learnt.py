"""The learnt scorer: a light model that predicts whether a cheap answer is correct.

FrugalGPT (Chen, Zaharia & Zou, 2023) trains a small scorer on (query, answer) pairs labelled
correct or not and escalates below a threshold. Here the model is a logistic regression over
(1) the cheap answer features of ``features.py`` (is the arithmetic right, does the final answer
follow from the working, is it cut off...) and (2) the embedder's vectors of the question and the
answer, reduced by PCA to a few components (with a few hundred labelled rows, 768 raw dimensions
only add noise). Trained from a CSV of (question, answer, correct) by ``tokenlean cascade train``.

The file is a NumPy ``.npz`` of plain arrays (read with ``allow_pickle=False``): loading a scorer
never executes code, and scoring needs no scikit-learn. Known failure mode: it learns the
mistakes of the model and task it was trained on; on a new task, or after the cheap model
changes, its confidences drift and the threshold must be re-fitted on fresh labelled answers.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tokenlean.errors import ConfigError
from tokenlean.middleware.types import Request, Response
from tokenlean.reasoning.cascade.features import FEATURE_NAMES, answer_features
from tokenlean.reasoning.cascade.scorers import SingleAnswerScorer

if TYPE_CHECKING:
    import numpy as np

    from tokenlean.embeddings import Embedder

__all__ = ["LearntModel", "LearntScorer", "featurise", "read_labelled_csv", "train_from_csv"]

FORMAT = "tokenlean-cascade-scorer-v1"
_TRUE = {"true", "1", "yes", "y", "t", "correct"}
_FALSE = {"false", "0", "no", "n", "f", "wrong", "incorrect"}


def featurise(
    questions: Sequence[str], answers: Sequence[str], embedder: Embedder | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Answer features, and (with an embedder) the question and answer vectors side by side."""
    import numpy as np

    features = np.array(
        [answer_features(q, a) for q, a in zip(questions, answers, strict=True)], dtype=np.float64
    )
    if embedder is None:
        return features, None
    vectors = np.hstack([embedder.embed(list(questions)), embedder.embed(list(answers))]).astype(np.float64)
    return features, vectors


@dataclass
class LearntModel:
    """The fitted parameters: standardisation, PCA of the vectors, logistic regression."""

    feature_mean: np.ndarray
    feature_scale: np.ndarray
    coef: np.ndarray
    intercept: float
    pca_mean: np.ndarray | None = None
    pca_components: np.ndarray | None = None
    vector_mean: np.ndarray | None = None
    vector_scale: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_vectors(self) -> bool:
        """Whether scoring needs the embedder."""
        return self.pca_components is not None

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        vectors: np.ndarray | None,
        labels: Sequence[bool],
        *,
        components: int = 8,
        c: float = 0.1,
        seed: int = 0,
    ) -> LearntModel:
        """Fit on labelled rows (scikit-learn is needed here only)."""
        import numpy as np
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(labels, dtype=bool)
        if y.all() or not y.any():
            raise ConfigError("training data needs both correct and incorrect answers", param="correct")
        mean, scale = features.mean(axis=0), _scale(features.std(axis=0))
        columns = [(features - mean) / scale]
        extra: dict[str, Any] = {}
        if vectors is not None:
            pca = PCA(n_components=min(components, *vectors.shape), random_state=seed).fit(vectors)
            reduced = pca.transform(vectors)
            extra = {
                "pca_mean": pca.mean_,
                "pca_components": pca.components_,
                "vector_mean": reduced.mean(axis=0),
                "vector_scale": _scale(reduced.std(axis=0)),
            }
            columns.append((reduced - extra["vector_mean"]) / extra["vector_scale"])
        regression = LogisticRegression(C=c, max_iter=5000).fit(np.hstack(columns), y)
        metadata = {"rows": len(y), "positive_rate": float(y.mean()), "c": c, "components": components}
        return cls(
            mean, scale, regression.coef_[0], float(regression.intercept_[0]), metadata=metadata, **extra
        )

    def predict(self, features: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        """Probability that each answer is correct."""
        import numpy as np

        columns = [(features - self.feature_mean) / self.feature_scale]
        if self.uses_vectors:
            if vectors is None:
                raise ValueError("this scorer was trained with embeddings: pass the vectors")
            reduced = (vectors - self.pca_mean) @ self.pca_components.T  # type: ignore[union-attr]
            columns.append((reduced - self.vector_mean) / self.vector_scale)
        logits = np.hstack(columns) @ self.coef + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=float)

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` file (plain arrays and a JSON metadata string)."""
        import numpy as np

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in vars(self).items() if k != "metadata" and v is not None}
        arrays["intercept"] = np.array(self.intercept)
        meta = {**self.metadata, "format": FORMAT, "features": list(FEATURE_NAMES)}
        with path.open("wb") as handle:  # a file object, so numpy never appends ".npz"
            np.savez(handle, metadata=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LearntModel:
        """Read a file written by ``save``; ``ConfigError`` if it is missing or of another version."""
        import numpy as np

        try:
            with np.load(Path(path), allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read cascade scorer {path}: {exc}", param="scorer.path") from exc
        meta = json.loads(str(arrays.pop("metadata")))
        if meta.get("format") != FORMAT or meta.get("features") != list(FEATURE_NAMES):
            raise ConfigError(
                f"cascade scorer {path} was written by another version: retrain it", param="scorer.path"
            )
        intercept = float(arrays.pop("intercept"))
        return cls(intercept=intercept, metadata=meta, **arrays)


def _scale(std: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.where(std > 1e-12, std, 1.0)


class LearntScorer(SingleAnswerScorer):
    """Scores an answer with a ``LearntModel`` file (the spec's ``scorer: {type: learnt, path: ...}``)."""

    name: ClassVar[str] = "learnt"

    def __init__(self, *, path: str | Path, embedder: Embedder | None = None) -> None:
        self.model = LearntModel.load(path)
        self.path = Path(path)
        self._embedder = embedder

    def _vectors_embedder(self) -> Embedder | None:
        if not self.model.uses_vectors:
            return None
        if self._embedder is None:
            from tokenlean.embeddings import shared_embedder

            self._embedder = shared_embedder()
        return self._embedder

    def confidences(self, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """Probability of correctness for many (question, answer) pairs at once (benchmarks, CLI)."""
        features, vectors = featurise(questions, answers, self._vectors_embedder())
        return self.model.predict(features, vectors)

    async def warm_up(self) -> None:
        """Load the embedder (when the model reads vectors) by scoring one pair, off the event loop."""
        await asyncio.to_thread(self.confidences, ["What is 2 + 3?"], ["2 + 3 = 5. The answer is 5."])

    async def score(self, request: Request, response: Response) -> float | None:
        """The model's probability that the first choice is correct (computed off the event loop)."""
        answer = self.choose(response).text
        values = await asyncio.to_thread(self.confidences, [request.last_user_text], [answer])
        return float(values[0])


def read_labelled_csv(
    path: str | Path, *, question: str = "question", answer: str = "answer", correct: str = "correct"
) -> tuple[list[str], list[str], list[bool]]:
    """Rows of (question, cheap answer, was it correct); the column names are configurable."""
    questions, answers, labels = [], [], []
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {question, answer, correct} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(
                f"{path}: missing column(s) {sorted(missing)}; found {reader.fieldnames}", param="csv"
            )
        for number, row in enumerate(reader, start=2):
            flag = str(row[correct]).strip().lower()
            if flag not in _TRUE | _FALSE:
                raise ConfigError(
                    f"{path}:{number}: {correct}={row[correct]!r} is not true/false", param=correct
                )
            questions.append(row[question])
            answers.append(row[answer])
            labels.append(flag in _TRUE)
    return questions, answers, labels


def train_from_csv(
    csv_path: str | Path,
    out_path: str | Path,
    *,
    embed: bool = True,
    components: int = 8,
    c: float = 0.1,
    columns: tuple[str, str, str] = ("question", "answer", "correct"),
    embedder: Embedder | None = None,
) -> LearntModel:
    """Train a scorer from a labelled CSV and save it to ``out_path`` (``tokenlean cascade train``)."""
    questions, answers, labels = read_labelled_csv(
        csv_path, question=columns[0], answer=columns[1], correct=columns[2]
    )
    if embed and embedder is None:
        from tokenlean.embeddings import shared_embedder

        embedder = shared_embedder()
    started = time.perf_counter()
    features, vectors = featurise(questions, answers, embedder if embed else None)
    model = LearntModel.fit(features, vectors, labels, components=components, c=c)
    model.metadata.update(
        {
            "source": str(csv_path),
            "train_seconds": round(time.perf_counter() - started, 2),
            "embedder": str(getattr(embedder, "path", "")) if embed else None,
        }
    )
    model.save(out_path)
    return model
