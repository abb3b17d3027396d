"""FrugalGPT cascades: tiers cheapest first, a scorer that decides whether to escalate.

Chen, Zaharia & Zou, "FrugalGPT: How to Use Large Language Models While Reducing Cost and
Improving Performance" (2023, arXiv 2305.05176). See ``stage.py`` for the stage, ``scorers.py``
and ``learnt.py`` for the scorers, ``thresholds.py`` for choosing thresholds from data.
Heavy libraries (the embedder, scikit-learn) load only when a learnt scorer is used or trained.
"""

from tokenlean.reasoning.cascade.learnt import LearntModel, LearntScorer, train_from_csv
from tokenlean.reasoning.cascade.routing import cascade_models, is_cascade_model, resolve_cascade_model
from tokenlean.reasoning.cascade.runner import Cascade
from tokenlean.reasoning.cascade.scorers import AgreementScorer, LogprobScorer, Scorer, build_scorer
from tokenlean.reasoning.cascade.stage import CASCADE_PREFIX, CascadeStage
from tokenlean.reasoning.cascade.thresholds import CurvePoint, choose_threshold, threshold_curve
from tokenlean.reasoning.cascade.tiers import Tier

__all__ = [
    "CASCADE_PREFIX",
    "AgreementScorer",
    "Cascade",
    "CascadeStage",
    "CurvePoint",
    "LearntModel",
    "LearntScorer",
    "LogprobScorer",
    "Scorer",
    "Tier",
    "build_scorer",
    "cascade_models",
    "choose_threshold",
    "is_cascade_model",
    "resolve_cascade_model",
    "threshold_curve",
    "train_from_csv",
]
