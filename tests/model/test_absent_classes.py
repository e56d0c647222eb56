"""A class with no held-out example does not count in macro-F1 (or "Weakest classes").

One label of a new class is never held out (``make_folds``); a candidate that learned it and
predicts it on a few held-out rows must be judged on the classes those rows hold, or the new
class scores F1 = 0 and an equally good model is rejected.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from model.evaluation import ConfusionPair, cross_validate, evaluate_predictions, make_folds
from model.training import decide, train_candidate


def test_macro_f1_is_over_the_true_classes_when_an_absent_class_is_predicted():
    ev = evaluate_predictions(["a", "a", "a", "a", "b", "b"], ["a", "a", "a", "new", "b", "b"])
    # a: precision 1, recall 3/4 → F1 6/7; b: F1 1; "new" has no true example: not averaged
    assert ev.macro_f1 == pytest.approx((6 / 7 + 1.0) / 2)
    assert set(ev.per_class) == {"a", "b"}
    assert ev.per_class["a"].recall == 0.75
    assert ev.accuracy == pytest.approx(5 / 6)  # the wrong prediction is still an error
    assert ev.confusions == [ConfusionPair("a", "new", 1)]


def test_each_folds_macro_f1_is_over_the_classes_it_holds_out():
    labels = ["a"] * 4 + ["b"] * 4
    folds = make_folds(labels, n_splits=2)

    def fit_predict(train: list[int], test: list[int]) -> list[str]:
        return ["new" if i == test[0] else labels[i] for i in test]

    ev = cross_validate(fit_predict, labels, folds)
    assert ev.macro_f1 > 0.8
    assert all(f1 > 0.8 for f1 in ev.fold_macro_f1)  # 2/3 if "new" counted as F1 = 0


def _tickets(n_per_class: int, seed: int = 1) -> tuple[list[str], list[str]]:
    """The tester's data, smaller: billing and bug tickets from 8 phrases each."""
    rng = random.Random(seed)
    bill = ["refund my card", "charged twice", "invoice wrong", "money back please"]
    bill += ["billing error on plan", "payment failed", "card declined", "need a receipt"]
    bug = ["app crashes", "login broken", "page is blank", "error 500 on save"]
    bug += ["button does nothing", "sync fails", "crash on startup", "export broken"]
    texts, labels = [], []
    for i in range(n_per_class):
        texts.append(f"{rng.choice(bill)} {rng.choice(bill)} ticket {i}")
        labels.append("billing")
        texts.append(f"{rng.choice(bug)} {rng.choice(bug)} ticket {i}")
        labels.append("bug")
    return texts, labels


def test_one_label_of_a_new_class_does_not_get_an_equal_model_rejected():
    texts, labels = _tickets(100)
    champion = train_candidate(texts, labels)
    cand = train_candidate(
        texts + ["refund my card charged twice"], labels + ["refund"]
    )  # one example of a new class: never held out, always trained on
    assert cand.is_trained
    # the scenario: the candidate does predict the new class on some held-out billing rows
    assert any(c.predicted == "refund" for c in cand.evaluation.confusions)
    decision = decide(cand, champion.classifier, champion_mask=[True] * len(texts) + [False])
    assert decision.promote, decision.reason
    assert decision.candidate_macro_f1 > 0.98
    assert decision.champion_macro_f1 > 0.98
    assert "refund" not in cand.evaluation.per_class


def test_weakest_classes_leave_out_classes_with_no_held_out_example(tmp_path):
    from bot.learning import reports
    from bot.store import Store

    per_class = {
        "billing": {"precision": 1.0, "recall": 0.98, "f1": 0.99, "support": 100},
        "bug": {"precision": 0.98, "recall": 1.0, "f1": 0.99, "support": 100},
        "refund": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},  # older metrics
    }
    champion = SimpleNamespace(
        version=2,
        status="champion",
        n_train=201,
        created_at="2024-01-01T00:00:00+00:00",
        metrics={"accuracy": 0.99, "macro_f1": 0.99, "n_splits": 5, "per_class": per_class},
    )
    registry = SimpleNamespace(champion=lambda: champion, versions=lambda: [champion])
    with Store.open(tmp_path / "hitl.db") as store:  # the real store, empty
        report = reports.accuracy_report(store, registry, datetime(2024, 1, 2, tzinfo=UTC))
    assert [label for label, _, _ in report.weakest] == ["billing", "bug"]
