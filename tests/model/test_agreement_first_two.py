"""Agreement measured where answers stop early (HITL_VOTES=3: an item closes as soon as two
answers agree) is measured on each item's first two answers, which the stopping rule does not
select, and comes out near the agreement of the same people answering every item; on every
counted answer it would not (Fleiss' κ over the items with two answers is 1.00 by
construction, the pairs' κ biased low by third answers that exist only where the first two
disagreed)."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from model.agreement import Tally, agreement, first_two_votes, overall_agreement

LABELS = ["a", "b", "c", "d", "e", "f"]
PEOPLE = {"ana": 0.95, "raj": 0.82, "mei": 0.64}  # how often each is right
N_ITEMS = 3000


def simulate(seed: int = 7) -> tuple[dict[str, dict[str, str]], list[tuple[str, str, str]]]:
    """Every person's answer to every item, and the votes counted when the item closes as
    soon as two agree (each item asked of the people in a random order), in the order given."""
    rng = np.random.default_rng(seed)
    full: dict[str, dict[str, str]] = {}
    counted: list[tuple[str, str, str]] = []
    for n in range(N_ITEMS):
        item = f"i{n}"
        truth = LABELS[rng.integers(len(LABELS))]
        others = [lb for lb in LABELS if lb != truth]
        full[item] = {
            who: truth if rng.random() < right else others[rng.integers(len(others))]
            for who, right in PEOPLE.items()
        }
        given: list[str] = []
        for who in rng.permutation(list(PEOPLE)).tolist():
            counted.append((item, who, full[item][who]))
            given.append(full[item][who])
            if max(given.count(lb) for lb in given) >= 2:  # two agree: the item closes
                break
    return full, counted


@pytest.fixture(scope="module")
def run() -> tuple[dict[str, dict[str, str]], list[tuple[str, str, str]]]:
    return simulate()


def test_fleiss_kappa_on_the_first_two_answers_is_near_everyones_not_one(run):
    full, counted = run
    everyone = overall_agreement(Tally.from_votes(
        (item, who, label) for item, given in full.items() for who, label in given.items()
    ))  # fmt: skip
    tally = Tally.from_votes(counted)
    # on every counted answer: the most common number of answers is 2, all agreeing
    assert overall_agreement(tally).n_raters == 2 and overall_agreement(tally).fleiss == 1.0

    report = agreement(tally, first_two=Tally.from_votes(first_two_votes(counted)))
    overall = report.overall
    assert 0.4 < everyone.fleiss < 0.6  # people who often disagree
    assert overall.fleiss is not None and abs(overall.fleiss - everyone.fleiss) < 0.04
    assert overall.alpha is not None and abs(overall.alpha - everyone.alpha) < 0.04
    assert overall.n_alpha_items == overall.n_fleiss_items == N_ITEMS and overall.n_raters == 2
    assert report.n_beyond_two == sum(
        1 for item in full if sum(1 for i, _, _ in counted if i == item) == 3
    )


def test_each_pairs_kappa_is_measured_where_both_are_among_the_first_two(run):
    full, counted = run
    first = first_two_votes(counted)
    report = agreement(Tally.from_votes(counted), first_two=Tally.from_votes(first))
    pairs = {(p.a, p.b): p for p in report.pairs}
    assert len(pairs) == 3
    for a, b in combinations(sorted(PEOPLE), 2):
        everyone = cohen_kappa_score([full[i][a] for i in full], [full[i][b] for i in full])
        pair = pairs[(a, b)]
        both = {i for i, who, _ in first if who == a} & {i for i, who, _ in first if who == b}
        assert pair.n_shared == len(both)
        assert pair.kappa is not None and abs(pair.kappa - everyone) < 0.06, (a, b)


def test_first_two_votes_keep_the_order_given_and_a_persons_latest_vote():
    votes = [
        ("i1", "ana", "x"), ("i1", "raj", "y"), ("i1", "mei", "x"),  # the third is left out
        ("i2", "raj", None), ("i2", "mei", "x"), ("i2", "ana", "x"),  # a skip is no vote
        ("i3", "ana", "x"), ("i3", "raj", "x"), ("i3", "ana", "y"),  # ana's latest, at her first
    ]  # fmt: skip
    assert first_two_votes(votes) == [
        ("i1", "ana", "x"), ("i1", "raj", "y"),
        ("i2", "mei", "x"), ("i2", "ana", "x"),
        ("i3", "ana", "y"), ("i3", "raj", "x"),
    ]  # fmt: skip


def test_a_changed_answer_keeps_its_place_before_a_third_answer():
    """HITL_VOTES=3: ana and raj disagree, so mei is asked; then ana changes her answer. The
    first two answerers are ana (her latest answer) and raj, not raj and mei: mei answered only
    because the first two disagreed."""
    history = [("i1", "ana", "x"), ("i1", "raj", "y"), ("i1", "mei", "z"), ("i1", "ana", "y")]
    assert first_two_votes(history) == [("i1", "ana", "y"), ("i1", "raj", "y")]
    # each person's latest vote only (as the store reads them), with when each first answered
    latest = [("i1", "raj", "y"), ("i1", "mei", "z"), ("i1", "ana", "y")]
    first = {("i1", "ana"): 1, ("i1", "raj"): 2, ("i1", "mei"): 3}
    assert first_two_votes(latest, first) == [("i1", "ana", "y"), ("i1", "raj", "y")]
