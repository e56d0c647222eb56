import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import SGDClassifier

from model.classifier import TextClassifier, fit_pipeline
from model.errors import InvalidInputError
from model.evaluation import cross_validate
from model.training import Candidate, decide, train_candidate
from tests.model.conftest import make_texts


def suffix_texts(seed: int, n_per_class: int = 15) -> tuple[list[str], list[str]]:
    """Each text is three never-repeated words; only their suffix ('xq' or 'zv') tells
    the class. Character n-grams learn it, word n-grams cannot."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnoprstuwy")
    texts, labels = [], []
    for label, suffix in (("a", "xq"), ("b", "zv")):
        for _ in range(n_per_class):
            words = ["".join(rng.choice(letters, 5)) + suffix for _ in range(3)]
            texts.append(" ".join(words))
            labels.append(label)
    return texts, labels


def test_candidate_is_fitted_and_cross_validated(toy):
    texts, labels = toy
    cand = train_candidate(texts, labels, label_set=["ant", "bee", "cat", "dog"])
    assert cand.is_trained
    assert cand.reason == ""
    assert cand.n_train == 24
    assert len(cand.folds) == 5
    assert cand.evaluation.n_samples == 24
    assert cand.evaluation.macro_f1 > 0.9
    assert cand.label_set == ["ant", "bee", "cat", "dog"]


def test_progress_counts_folds_and_the_final_fit(toy):
    texts, labels = toy
    calls = []
    train_candidate(texts, labels, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]


@pytest.mark.parametrize(
    ("texts", "labels"),
    [
        ([], []),
        (["x", "y", "z"], ["only", "only", "only"]),
        (["x", "y"], ["a", "b"]),
        (["x", "y", "z"], ["a", "a", "b"]),
    ],
    ids=["empty", "one-class", "one-each", "two-plus-one"],
)
def test_too_few_labels_give_a_reason_and_no_model(texts, labels):
    cand = train_candidate(texts, labels)
    assert not cand.is_trained
    assert cand.classifier is None
    assert cand.evaluation is None
    assert cand.reason.startswith("not trained: cross-validation needs at least 2 classes")


def test_a_fit_that_raises_gives_a_reason_not_a_crash(monkeypatch):
    # (blank and punctuation-only texts made scikit-learn raise here; they train now, so
    # the fit is made to raise: tests/model/test_short_texts.py)
    def fails(*args, **kwargs):
        raise ValueError("empty vocabulary")

    monkeypatch.setattr("model.classifier.fit_pipeline", fails)
    # (four different texts: two equal ones would count once, too few to cross-validate)
    cand = train_candidate(["", "-", "!", "?"], ["a", "a", "b", "b"])
    assert not cand.is_trained
    assert cand.reason == "not trained: fitting failed with ValueError: empty vocabulary"


def test_mismatched_lengths_are_a_caller_error():
    with pytest.raises(InvalidInputError):
        train_candidate(["a"], ["x", "y"])


@pytest.fixture(scope="module")
def toy_candidate() -> Candidate:
    """A candidate trained on the ``toy`` data, once for the tests below that only read it:
    ``decide`` changes neither the candidate nor the champion (it refits clones)."""
    return train_candidate(*make_texts(np.random.default_rng(0), ["ant", "bee", "cat"], 8))


@pytest.fixture(scope="module")
def toy_champion() -> TextClassifier:
    """A champion fitted on all the ``toy`` data, as ``toy_candidate`` is."""
    return TextClassifier().fit(*make_texts(np.random.default_rng(0), ["ant", "bee", "cat"], 8))


def test_the_shared_toy_candidate_is_the_toy_fixtures(toy, toy_candidate):
    assert (toy_candidate.texts, toy_candidate.labels) == (list(toy[0]), list(toy[1]))


def test_first_model_is_promoted(toy_candidate):
    decision = decide(toy_candidate, None)
    assert decision.promote
    assert decision.reason.startswith("promoted: first model, macro-F1 1.000 (5-fold CV, n=24)")
    assert decision.champion_macro_f1 is None


def test_failed_candidate_is_rejected_with_its_reason():
    decision = decide(train_candidate(["x", "y"], ["a", "a"]), None)
    assert not decision.promote
    assert decision.reason.startswith("rejected: not trained: cross-validation needs")


def test_candidate_worse_than_the_champion_on_the_same_folds_is_rejected():
    texts, labels = suffix_texts(0)
    champion = TextClassifier("word_char_lr").fit(texts, labels)
    cand = train_candidate(texts, labels, pipeline_name="word_lr")
    decision = decide(cand, champion)
    assert not decision.promote
    assert decision.champion_macro_f1 > decision.candidate_macro_f1 + 0.2
    assert decision.reason.startswith("rejected: macro-F1 ")
    assert "worse than the champion by more than 0.010" in decision.reason


def test_better_candidate_is_promoted_with_both_scores_in_the_reason():
    texts, labels = suffix_texts(1)
    champion = TextClassifier("word_lr").fit(texts, labels)
    decision = decide(train_candidate(texts, labels, pipeline_name="word_char_lr"), champion)
    assert decision.promote
    assert decision.candidate_macro_f1 > decision.champion_macro_f1
    assert "on the same 5 folds (n=30)" in decision.reason


def test_equal_candidate_is_promoted_within_tolerance(toy_candidate, toy_champion):
    decision = decide(toy_candidate, toy_champion)
    assert decision.promote
    assert decision.candidate_macro_f1 == decision.champion_macro_f1


def test_champion_mask_limits_the_champion_to_its_own_training_rows(toy, toy_candidate):
    texts, labels = toy
    champion = TextClassifier().fit(texts[:8] + texts[8:16], labels[:8] + labels[8:16])
    mask = [label != "cat" for label in labels]  # the champion never saw "cat"
    decision = decide(toy_candidate, champion, champion_mask=mask)
    assert decision.promote
    assert decision.champion_macro_f1 < 0.8 < decision.candidate_macro_f1


def test_champion_with_no_rows_in_the_mask_predicts_a_constant(toy_candidate, toy_champion):
    decision = decide(toy_candidate, toy_champion, champion_mask=[False] * 24)
    assert decision.promote
    assert decision.champion_macro_f1 == pytest.approx(0.5 / 3)  # F1 of one class in three


def test_champion_mask_must_match_the_candidate_rows(toy_candidate, toy_champion):
    with pytest.raises(InvalidInputError, match="champion_mask has 3 entries for 24 labels"):
        decide(toy_candidate, toy_champion, champion_mask=[True] * 3)


def test_decide_reports_progress_while_rescoring_the_champion(toy_candidate, toy_champion):
    calls = []
    decide(toy_candidate, toy_champion, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_every_fold_fits_the_configuration_of_the_model_that_is_promoted():
    # 2,100 labels: word_char_auto fits SGD on all of them, but each fold's 1,680 would pick
    # logistic regression; the evaluation (and so the gate) must be of the SGD model. Short
    # texts (two shared words, class words like "r7"): the count is what picks the model, and
    # the character n-grams of long ones only made each of the 11 fits slower.
    rng = np.random.default_rng(0)
    vocab = {c: [f"{c[0]}{i}" for i in range(40)] for c in ("red", "green", "blue")}
    shared = [f"w{i}" for i in range(200)]
    texts, labels = [], []
    for n in range(2_100):
        label = ("red", "green", "blue")[n % 3]
        words = list(rng.choice(shared, 2)) + list(rng.choice(vocab[label], 1))
        if rng.random() < 0.3:  # some texts carry another class's word: the models disagree
            words += list(rng.choice(vocab[("red", "green", "blue")[(n + 1) % 3]], 1))
        texts.append(" ".join(words))
        labels.append(label)
    cand = train_candidate(texts, labels)
    final = cand.classifier.pipeline_
    assert isinstance(final.steps[-1][1], SGDClassifier)

    def as_promoted(train: list[int], test: list[int]) -> list[str]:
        fitted = fit_pipeline(clone(final), [texts[i] for i in train], [labels[i] for i in train])
        return TextClassifier.from_pipeline(fitted, sorted(set(labels))).predict(
            [texts[i] for i in test]
        )

    expected = cross_validate(as_promoted, labels, cand.folds)
    assert cand.evaluation.fold_macro_f1 == expected.fold_macro_f1
    assert cand.evaluation == expected


class Fixed:
    """A stand-in model that answers ``answers`` (what ``gold_check`` asks of a model)."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    def predict(self, texts: list[str]) -> list[str]:
        return self.answers[: len(texts)]


def test_gold_check_is_mcnemars_exact_test_on_the_questions_only_one_model_got_right():
    from scipy.stats import binomtest

    from model.training import MIN_GOLD, gold_check

    truth = ["a"] * 30
    champion = Fixed(["a"] * 21 + ["b"] * 9)  # 21 right
    candidate = Fixed(["b"] * 6 + ["a"] * 11 + ["b"] * 4 + ["a"] * 4 + ["b"] * 5)  # 15 right
    # only the champion right: 6 + 4 = 10; only the candidate: 4 (rows 21-24)
    check = gold_check(candidate, champion, [f"t{i}" for i in range(30)], truth)
    assert (check.n, check.candidate_correct, check.champion_correct) == (30, 15, 21)
    assert check.p_worse == pytest.approx(binomtest(10, 14, 0.5, alternative="greater").pvalue)
    assert not check.worse  # p = 0.09: 6 questions of 30 are not evidence at 5 %
    assert check.text() == "50 % vs 70 % for the champion (one-sided McNemar p = 0.09)"
    few = MIN_GOLD - 1
    assert gold_check(candidate, champion, ["t"] * few, ["a"] * few) is None


def test_a_candidate_worse_on_the_gold_questions_is_rejected_whatever_the_folds_say(
    toy_candidate, toy_champion
):
    texts, labels = toy_candidate.texts, toy_candidate.labels
    # the folds say "equal" (test_equal_candidate_is_promoted_within_tolerance); on 24 gold
    # questions whose answers are the other way round from the training labels of two labels
    swap = {"ant": "bee", "bee": "ant"}
    gold = (texts, [swap.get(v, v) for v in labels])
    decision = decide(toy_candidate, toy_champion, gold=gold)
    assert decision.promote  # both models answer alike: no disagreement, no evidence
    assert "on the 24 gold questions: 33 % vs 33 % for the champion" in decision.reason

    wrong = TextClassifier().fit(texts, [swap.get(v, v) for v in labels])
    decision = decide(toy_candidate, wrong, gold=gold)
    assert not decision.promote
    assert decision.reason.startswith(
        "rejected: worse on the 24 gold questions: 33 % vs 100 % for the champion"
    )
    assert decision.gold is not None and decision.gold.worse
