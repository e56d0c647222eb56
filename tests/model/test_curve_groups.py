"""The learning curve keeps a text and its repeats on one side of a split, as the
cross-validation folds do (a code review's ML finding 4): split at random, its larger training
parts held the texts it was tested on, so on labels unrelated to the texts (each text labelled
four times) it climbed from ~0.6 to 1.00 on memory alone, and the forecast said "more labels
should still help" where new texts stay at chance."""

from __future__ import annotations

import random

import numpy as np
from sklearn.model_selection import ShuffleSplit, learning_curve

from model.classifier import build_pipeline, prepare_texts
from model.selection import text_key
from model.stopping import CURVE_SIZES, _half_of, curve_points


def repeated_at_random(n_texts: int = 100, times: int = 4) -> tuple[list[str], list[str]]:
    """``n_texts`` texts of random words, each labelled ``times`` times (case variants: one
    ``text_key``) with a label drawn at random: a model is right on a new text 25 % of the time.
    At 100 texts (400 labels) a split that ignores the repeats still scores 1.00 on memory, as
    at 150 (600 labels), for two thirds of the fits' CPU."""
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(2000)]
    texts, labels = [], []
    for _ in range(n_texts):
        text, label = " ".join(rng.sample(vocab, 8)), rng.choice("abcd")
        for k in range(times):
            texts.append(text.upper() if k % 2 else text)
            labels.append(label)
    order = list(range(len(texts)))
    rng.shuffle(order)
    return [texts[i] for i in order], [labels[i] for i in order]


def model():
    return build_pipeline("word_char_auto", n_samples=600, n_classes=4)


def test_repeated_texts_do_not_make_the_curve_climb_on_memory():
    texts, labels = repeated_at_random()
    found = curve_points(texts, labels, model)
    largest = [s for n, s in zip(found.sizes, found.scores, strict=True) if n == max(found.sizes)]
    assert max(found.scores) < 0.5, found.scores  # was 0.97–1.00 at 480 labels
    assert np.mean(largest) < 0.5


def test_tested_on_the_uniform_picks_too():
    texts, labels = repeated_at_random()
    uniform = [n % 2 == 0 for n in range(len(texts))]
    found = curve_points(texts, labels, model, uniform=uniform)
    assert found.scores and max(found.scores) < 0.5, found.scores  # was up to 0.95


def test_a_uniform_half_keeps_every_repeat_of_its_texts_out_of_training():
    texts, _ = repeated_at_random(40, 3)
    _, group = np.unique([text_key(t) for t in texts], return_inverse=True)
    drawn = np.arange(0, len(texts), 2)
    train, test = _half_of(drawn, group, np.random.default_rng(0))
    assert set(test) <= set(drawn.tolist())
    assert not set(group[train].tolist()) & set(group[test].tolist())
    assert len(test) >= len(drawn) // 2 and len(train) + len(test) <= len(texts)


def test_without_repeats_the_splits_are_those_of_before():
    # the uniform half: the first half of a permutation of the drawn positions, as before
    drawn = np.arange(3, 90, 3)
    train, test = _half_of(drawn, np.arange(100), np.random.default_rng(4))
    old = np.sort(np.random.default_rng(4).permutation(drawn)[: len(drawn) // 2])
    assert test.tolist() == old.tolist()
    assert train.tolist() == np.setdiff1d(np.arange(100), old).tolist()
    # shuffled splits: the same scores as scikit-learn's ShuffleSplit learning curve
    rng = random.Random(1)
    texts = [f"{rng.choice('ab')}{n} filler {n % 7}" for n in range(80)]
    labels = [t[0] for t in texts]
    found = curve_points(texts, labels, lambda: build_pipeline("word_lr"))
    _, _, scores = learning_curve(
        build_pipeline("word_lr"),
        np.array(prepare_texts(texts), dtype=object),
        np.array(labels, dtype=object),
        train_sizes=list(CURVE_SIZES),
        cv=ShuffleSplit(n_splits=2, test_size=0.2, random_state=0),
        scoring="accuracy",
        shuffle=True,
        random_state=0,
    )
    assert found.scores == [float(s) for row in scores for s in row]
    assert found.n_test == 16
