import numpy as np
import pytest

from model.errors import InsufficientDataError, InvalidInputError
from model.evaluation import (
    ConfusionPair,
    cohens_kappa,
    cross_validate,
    evaluate_predictions,
    fleiss_kappa,
    fleiss_kappa_from_table,
    make_folds,
    n_splits_for,
    wilson_interval,
)


def test_wilson_interval_for_8_of_10():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.490, abs=5e-4)
    assert high == pytest.approx(0.943, abs=5e-4)


def test_wilson_interval_stays_inside_zero_one():
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=5e-4)


def test_wilson_interval_with_no_answers_is_everything():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_refuses_more_correct_than_answers():
    with pytest.raises(InvalidInputError, match="got 11 of 10"):
        wilson_interval(11, 10)


def test_metrics_by_hand():
    ev = evaluate_predictions(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert ev.accuracy == 0.75
    assert ev.per_class["a"].precision == 1.0
    assert ev.per_class["a"].recall == 0.5
    assert ev.per_class["a"].f1 == pytest.approx(2 / 3)
    assert ev.per_class["b"].precision == pytest.approx(2 / 3)
    assert ev.per_class["b"].f1 == pytest.approx(0.8)
    assert ev.per_class["b"].support == 2
    assert ev.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert ev.confusions == [ConfusionPair("a", "b", 1)]


def test_a_label_never_predicted_scores_zero_without_warning():
    ev = evaluate_predictions(["a", "b", "c"], ["a", "b", "b"])
    assert ev.per_class["c"].precision == 0.0
    assert ev.per_class["c"].f1 == 0.0


def test_evaluating_nothing_is_refused():
    with pytest.raises(InsufficientDataError):
        evaluate_predictions([], [])


def test_metrics_serialise_to_plain_json_types():
    import json

    ev = evaluate_predictions(["a", "b"], ["a", "a"])
    data = json.loads(json.dumps(ev.as_dict()))
    assert data["accuracy"] == 0.5
    assert data["confusions"] == [["b", "a", 1]]


@pytest.mark.parametrize(
    ("counts", "k"),
    [
        ({"a": 10, "b": 10}, 5),
        ({"a": 3, "b": 10}, 3),
        ({"a": 2, "b": 2}, 2),
        ({"a": 1, "b": 4, "c": 4}, 4),
    ],
)
def test_fold_count_follows_the_smallest_class(counts, k):
    labels = [label for label, n in counts.items() for _ in range(n)]
    assert n_splits_for(labels) == k


@pytest.mark.parametrize(
    "labels", [[], ["a"] * 10, ["a", "b"], ["a", "a", "b"]], ids=["empty", "one", "1+1", "2+1"]
)
def test_cross_validation_needs_two_classes_of_two(labels):
    with pytest.raises(InsufficientDataError, match="at least 2 classes with at least 2"):
        n_splits_for(labels)


def test_folds_are_stratified_disjoint_and_keep_rare_classes_in_training():
    labels = ["a"] * 7 + ["b"] * 9 + ["rare"]
    folds = make_folds(labels, random_state=0)
    assert len(folds) == 5
    held_out = np.concatenate([test for _, test in folds])
    assert sorted(held_out.tolist()) == list(range(16))
    for train, test in folds:
        assert set(train.tolist()).isdisjoint(test.tolist())
        assert 16 in train
        assert {labels[i] for i in test} == {"a", "b"}


def test_folds_are_reproducible_from_random_state():
    labels = ["a", "b"] * 10
    first = make_folds(labels, random_state=3)
    again = make_folds(labels, random_state=3)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(first, again, strict=True))


def test_cross_validate_pools_out_of_fold_predictions():
    labels = ["a", "b"] * 6
    folds = make_folds(labels, n_splits=3, random_state=0)
    calls = []
    ev = cross_validate(
        lambda train, test: ["a"] * len(test),
        labels,
        folds,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert ev.n_splits == 3
    assert ev.n_samples == 12
    assert ev.accuracy == 0.5
    assert ev.macro_f1 == pytest.approx((2 / 3 + 0) / 2)
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_cohens_kappa_by_hand():
    # observed agreement 3/4; chance 0.5*0.25 + 0.5*0.75 = 0.5 -> kappa 0.5
    assert cohens_kappa(["x", "x", "y", "y"], ["x", "y", "y", "y"]) == pytest.approx(0.5)


def test_cohens_kappa_of_two_identical_constant_annotators_is_one():
    assert cohens_kappa(["x"] * 4, ["x"] * 4) == 1.0


def test_cohens_kappa_needs_equal_lengths():
    with pytest.raises(InvalidInputError, match="differ in length"):
        cohens_kappa(["x"], ["x", "y"])


def test_fleiss_kappa_by_hand():
    # P_i = 1, 0, 1 -> mean 2/3; p_j = 1/2, 1/2 -> P_e = 1/2; kappa = (2/3-1/2)/(1/2) = 1/3
    assert fleiss_kappa([["a", "a"], ["a", "b"], ["b", "b"]]) == pytest.approx(1 / 3)


def test_fleiss_kappa_matches_the_published_example():
    # Fleiss' kappa worked example (10 items, 14 raters, 5 categories): kappa = 0.210
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa_from_table(table) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_with_total_agreement_is_one():
    assert fleiss_kappa([["a", "a", "a"]] * 3) == 1.0


def test_fleiss_kappa_of_two_raters_equals_scotts_pi():
    a = ["x", "x", "y", "y", "x", "y"]
    b = ["x", "y", "y", "y", "x", "x"]
    # Scott's pi: P_o = 4/6; pooled p(x) = 6/12 -> P_e = 0.5; pi = (2/3 - 1/2)/(1/2) = 1/3
    assert fleiss_kappa(list(zip(a, b, strict=True))) == pytest.approx(1 / 3)


def test_fleiss_kappa_needs_the_same_number_of_ratings_per_item():
    with pytest.raises(InvalidInputError, match=r"same number of ratings, got \[2, 3\]"):
        fleiss_kappa([["a", "b"], ["a", "a", "b"]])


def test_fleiss_kappa_needs_two_ratings():
    with pytest.raises(InsufficientDataError, match="at least 2 ratings"):
        fleiss_kappa([["a"], ["b"]])
