"""The learning half of slack-hitl: texts and labels in, models, picks and numbers out.

``model/`` imports only the standard library, numpy, scipy, scikit-learn and skops.
Its names are imported on first use (``model.ModelRegistry`` imports ``model.registry`` and
no more), so that reading the registry does not pay for scikit-learn's import (~2 s of CPU):
``hitl serve`` asks whether there is a champion before its own heavy imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.classifier import PIPELINES, Scores, TextClassifier, build_pipeline
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
    from model.names import DEFAULT_PIPELINE
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

_WHERE: dict[str, str] = {
    # model.classifier
    "DEFAULT_PIPELINE": "model.names",
    "PIPELINES": "model.classifier",
    "Scores": "model.classifier",
    "TextClassifier": "model.classifier",
    "build_pipeline": "model.classifier",
    # model.errors
    "InsufficientDataError": "model.errors",
    "IntegrityError": "model.errors",
    "InvalidInputError": "model.errors",
    "ModelError": "model.errors",
    "NotFittedError": "model.errors",
    "RegistryError": "model.errors",
    # model.evaluation
    "ClassReport": "model.evaluation",
    "ConfusionPair": "model.evaluation",
    "Evaluation": "model.evaluation",
    "cohens_kappa": "model.evaluation",
    "evaluate_predictions": "model.evaluation",
    "fleiss_kappa": "model.evaluation",
    "make_folds": "model.evaluation",
    "wilson_interval": "model.evaluation",
    # model.registry
    "LoadedModel": "model.registry",
    "ModelRegistry": "model.registry",
    "ModelVersion": "model.registry",
    # model.selection
    "STRATEGIES": "model.selection",
    "Pick": "model.selection",
    "entropy": "model.selection",
    "least_confidence": "model.selection",
    "margin": "model.selection",
    "priority": "model.selection",
    "register_strategy": "model.selection",
    "select": "model.selection",
    "uncertainty": "model.selection",
    # model.training
    "Candidate": "model.training",
    "Decision": "model.training",
    "decide": "model.training",
    "train_candidate": "model.training",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
