"""Tiny generated text data for the model tests (seeded, no files)."""

from __future__ import annotations

import numpy as np
import pytest

from model.classifier import TextClassifier
from model.registry import ModelRegistry


def make_texts(
    rng: np.random.Generator, classes: list[str], n_per_class: int, n_words: int = 6
) -> tuple[list[str], list[str]]:
    """Texts whose words mostly come from their class's own vocabulary, plus shared noise."""
    noise = ["the", "a", "of", "and", "to", "is", "in", "it"]
    texts, labels = [], []
    for label in classes:
        vocab = [f"{label}w{j}" for j in range(5)]
        for _ in range(n_per_class):
            words = list(rng.choice(vocab, n_words - 2)) + list(rng.choice(noise, 2))
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(label)
    return texts, labels


@pytest.fixture
def toy() -> tuple[list[str], list[str]]:
    """Three well-separated classes, 8 texts each."""
    return make_texts(np.random.default_rng(0), ["ant", "bee", "cat"], 8)


@pytest.fixture
def fitted(toy) -> TextClassifier:
    """A classifier fitted on ``toy`` (the registry's tests store it)."""
    texts, labels = toy
    return TextClassifier().fit(texts, labels, label_set=["ant", "bee", "cat", "dog"])


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "hitl.db.models")
