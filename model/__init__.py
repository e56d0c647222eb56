"""The learning half of slack-hitl: texts and labels in, models, picks and numbers out.

``model/`` imports only the standard library, numpy, scipy, scikit-learn and skops.
"""

from model.classifier import DEFAULT_PIPELINE, PIPELINES, Scores, TextClassifier, build_pipeline
from model.errors import (
    InsufficientDataError,
    IntegrityError,
    InvalidInputError,
    ModelError,
    NotFittedError,
    RegistryError,
)
from model.evaluation import (
    ClassReport,
    ConfusionPair,
    Evaluation,
    cohens_kappa,
    evaluate_predictions,
    fleiss_kappa,
    make_folds,
    wilson_interval,
)
from model.registry import LoadedModel, ModelRegistry, ModelVersion
from model.selection import (
    STRATEGIES,
    Pick,
    entropy,
    least_confidence,
    margin,
    priority,
    register_strategy,
    select,
    uncertainty,
)
from model.training import Candidate, Decision, decide, train_candidate

__all__ = [
    "DEFAULT_PIPELINE",
    "PIPELINES",
    "STRATEGIES",
    "Candidate",
    "ClassReport",
    "ConfusionPair",
    "Decision",
    "Evaluation",
    "InsufficientDataError",
    "IntegrityError",
    "InvalidInputError",
    "LoadedModel",
    "ModelError",
    "ModelRegistry",
    "ModelVersion",
    "NotFittedError",
    "Pick",
    "RegistryError",
    "Scores",
    "TextClassifier",
    "build_pipeline",
    "cohens_kappa",
    "decide",
    "entropy",
    "evaluate_predictions",
    "fleiss_kappa",
    "least_confidence",
    "make_folds",
    "margin",
    "priority",
    "register_strategy",
    "select",
    "train_candidate",
    "uncertainty",
    "wilson_interval",
]
