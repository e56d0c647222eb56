"""Texts with no word of 2+ characters (one character, emoji, digits, punctuation) train on the
character n-grams instead of failing with "empty vocabulary"."""

from __future__ import annotations

import pytest
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer

from model.classifier import TextClassifier, fit_pipeline
from model.registry import ModelRegistry
from model.training import train_candidate

REPLIES = ["好", "是", "👍", "对", "好", "👍", "不", "否", "👎", "不", "否", "👎"]
LABELS = ["yes"] * 6 + ["no"] * 6


def _word_part(classifier: TextClassifier):
    return dict(classifier.pipeline_.named_steps["features"].transformer_list)["word"]


def test_one_character_and_emoji_replies_train_on_character_ngrams(tmp_path):
    cand = train_candidate(REPLIES, LABELS)
    assert cand.is_trained, cand.reason
    # a reply and its repeats are held out together: a held-out reply is never one trained on
    assert cand.evaluation.n_splits == 3
    assert cand.classifier.predict(["好", "👎", "不"]) == ["yes", "no", "no"]
    assert _word_part(cand.classifier) == "drop"
    # the model file saves and loads with skops' default trusted types, predictions unchanged
    registry = ModelRegistry(tmp_path / "models")
    meta = registry.save(cand.classifier, n_train=cand.n_train)
    loaded = registry.load(meta.version)
    assert loaded.predict(["好", "👎", "不"]) == ["yes", "no", "no"]
    assert (loaded.predict_proba(REPLIES) == cand.classifier.predict_proba(REPLIES)).all()


@pytest.mark.parametrize(
    "texts",
    [
        ["1", "2", "3", "1", "2", "3", "7", "8", "9", "7", "8", "9"],
        ["!", "!!", "?!", "!", "!!", "?!", "?", "??", ".", "?", "??", "."],
    ],
    ids=["digits", "punctuation"],
)
def test_digit_only_and_punctuation_only_texts_train(texts):
    cand = train_candidate(texts, LABELS)
    assert cand.is_trained, cand.reason
    assert cand.classifier.predict([texts[0], texts[-1]]) == ["yes", "no"]


def test_blank_texts_fail_with_one_line_about_the_data():
    cand = train_candidate([""] * 3 + [" "] * 3, ["a"] * 3 + ["b"] * 3)
    assert not cand.is_trained
    assert cand.reason == "not trained: every training text is blank: nothing to learn from"


def test_a_words_only_pipeline_says_the_texts_have_no_word():
    cand = train_candidate(REPLIES, LABELS, pipeline_name="word_lr")
    assert not cand.is_trained
    assert "no training text has a word" in cand.reason
    assert "stop words" not in cand.reason


def test_texts_with_words_keep_the_word_ngrams_also_in_a_clone_of_a_model_without_them():
    words = ["good day", "fine thanks", "great", "bad day", "awful", "not good"]
    labels = ["yes"] * 3 + ["no"] * 3
    normal = TextClassifier().fit(words, labels)
    assert isinstance(_word_part(normal), TfidfVectorizer)
    assert "good" in _word_part(normal).vocabulary_
    # the champion's configuration refitted on data with words (decide's clone) has them again
    short = TextClassifier().fit(REPLIES, LABELS)
    refit = fit_pipeline(clone(short.pipeline_), words, labels)
    again = dict(refit.named_steps["features"].transformer_list)["word"]
    assert "good" in again.vocabulary_
    assert (refit.predict_proba(words) == normal.pipeline_.predict_proba(words)).all()
