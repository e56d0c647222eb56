"""Majority and Dawid–Skene on small fixed tallies and on a simulated team of mixed quality."""

from __future__ import annotations

import numpy as np
import pytest

from model.aggregation import dawid_skene, majority
from model.agreement import Tally
from model.errors import InvalidInputError

LABELS = ["ant", "bee", "cat", "dog"]


def simulate(
    accuracies: list[float], n_items: int, seed: int
) -> tuple[Tally, dict[str, str], dict[str, float]]:
    """Every annotator labels every item: right with their accuracy, else a uniformly drawn
    other label. Returns the tally, the truth and each annotator's realised accuracy."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(LABELS), n_items)
    votes, realised = [], {}
    for a, p in enumerate(accuracies):
        right = rng.random(n_items) < p
        wrong = (truth + rng.integers(1, len(LABELS), n_items)) % len(LABELS)
        given = np.where(right, truth, wrong)
        realised[f"p{a}"] = float((given == truth).mean())
        votes += [(f"i{i:04d}", f"p{a}", LABELS[given[i]]) for i in range(n_items)]
    return Tally.from_votes(votes), {f"i{i:04d}": LABELS[t] for i, t in enumerate(truth)}, realised


def accuracy(resolved: dict[str, str | None], truth: dict[str, str]) -> float:
    return float(np.mean([resolved[item] == label for item, label in truth.items()]))


@pytest.fixture(scope="module")
def team() -> tuple[Tally, dict[str, str], dict[str, float]]:
    return simulate([0.95, 0.85, 0.6], n_items=600, seed=7)


def test_majority_by_hand():
    tally = Tally.from_matrix([["x", "x", "y"], ["x", "y", "z"], ["y", None, None]])
    result = majority(tally)
    assert result.label_of() == {"0": "x", "1": None, "2": "y"}
    assert [r.posterior for r in result.resolved] == pytest.approx([2 / 3, 1 / 3, 1.0])
    assert [r.n_votes for r in result.resolved] == [3, 3, 1]
    # agreement with the decided label, the three-way split left out: a0 x on 0 and y on 2,
    # both right (2/2); a1 x on 0 (1/1); a2 y on 0 (0/1)
    assert result.accuracy == {"a0": 1.0, "a1": 1.0, "a2": 0.0}


def test_dawid_skene_beats_majority_when_one_annotator_is_poor(team):
    tally, truth, _ = team
    by_majority = accuracy(majority(tally).label_of(), truth)
    weighted = dawid_skene(tally)
    # stopped on its own (the likelihood rule, so not ``converged``: that is its fixed point)
    assert weighted.n_iter < 500
    # the fixed seed gives 0.90 against 0.95; most of the gap is the three-way splits, which
    # majority leaves undecided
    assert accuracy(weighted.label_of(), truth) >= by_majority + 0.03


def test_dawid_skene_recovers_each_annotators_accuracy(team):
    tally, _, realised = team
    estimated = dawid_skene(tally).accuracy
    for annotator, true in realised.items():
        assert estimated[annotator] == pytest.approx(true, abs=0.03), annotator
    assert estimated["p0"] > estimated["p1"] > estimated["p2"]


def test_gold_items_keep_their_gold_label_and_help_a_little(team):
    tally, truth, realised = team
    gold = {item: truth[item] for item in tally.items[:30]}
    # one gold item whose votes all say otherwise still resolves to gold, with certainty
    wrong_item = "i9999"
    votes = [(wrong_item, a, "ant") for a in ("p0", "p1", "p2")]
    tally_plus = Tally.from_votes(tally.votes() + votes)
    seeded = dawid_skene(tally_plus, gold={**gold, wrong_item: "bee"})
    assert seeded.method == "dawid_skene_gold"
    resolved = {r.item: r for r in seeded.resolved}
    assert resolved[wrong_item].label == "bee" and resolved[wrong_item].posterior == 1.0
    assert all(resolved[item].label == label for item, label in gold.items())
    for annotator, true in realised.items():
        assert seeded.accuracy[annotator] == pytest.approx(true, abs=0.03)


def test_a_gold_label_nobody_chose_joins_the_labels():
    tally = Tally.from_matrix([["x", "x"], ["y", "y"]], items=["i1", "i2"])
    result = dawid_skene(tally, gold={"i2": "z", "elsewhere": "w"})
    assert result.labels == ["x", "y", "z"]
    assert result.label_of() == {"i1": "x", "i2": "z"}


def test_a_tie_with_nothing_else_to_go_on_stays_undecided():
    tally = Tally.from_matrix([["x", "y"]])
    for result in (majority(tally), dawid_skene(tally)):
        (only,) = result.resolved
        assert only.label is None and only.posterior == pytest.approx(0.5), result.method


def test_three_way_splits_are_decided_mostly_for_the_most_reliable_annotator(team):
    tally, truth, _ = team
    splits = [r.item for r in majority(tally).resolved if r.label is None]
    weighted = dawid_skene(tally).label_of()
    best = {item: label for item, annotator, label in tally.votes() if annotator == "p0"}
    assert len(splits) == 40  # the fixed seed's three-way splits, undecided by majority
    assert all(weighted[item] is not None for item in splits)
    # the full confusion matrices are estimated from few errors each, so not always p0's label
    assert sum(weighted[item] == best[item] for item in splits) >= 0.8 * len(splits)
    assert sum(weighted[item] == truth[item] for item in splits) > 0.6 * len(splits)


def test_a_single_vote_resolves_to_it_with_a_posterior_that_reflects_its_author(team):
    tally, _, _ = team
    result = dawid_skene(
        Tally.from_votes([*tally.votes(), ("solo-good", "p0", "dog"), ("solo-poor", "p2", "dog")])
    )
    resolved = {r.item: r for r in result.resolved}
    assert resolved["solo-good"].label == resolved["solo-poor"].label == "dog"
    assert resolved["solo-good"].n_votes == 1
    assert resolved["solo-good"].posterior > 0.9 > resolved["solo-poor"].posterior > 0.5


def test_an_item_with_no_votes_is_undecided():
    tally = Tally.from_matrix([["x", "x"], [None, None], ["y", "y"]])
    for result in (majority(tally), dawid_skene(tally)):
        assert result.label_of() == {"0": "x", "1": None, "2": "y"}, result.method
        assert result.resolved[1].n_votes == 0


def test_dawid_skene_is_deterministic(team):
    tally, _, _ = team
    first, second = dawid_skene(tally), dawid_skene(tally)
    assert np.array_equal(first.posteriors, second.posteriors)
    assert first.n_iter == second.n_iter


def test_posteriors_are_probabilities_and_confusion_rows_sum_to_one(team):
    tally, _, _ = team
    result = dawid_skene(tally)
    assert result.posteriors.shape == (len(tally.items), len(LABELS))
    assert np.allclose(result.posteriors.sum(axis=1), 1.0)
    assert result.priors is not None and result.priors.sum() == pytest.approx(1.0)
    for matrix in result.confusion.values():
        assert np.allclose(matrix.sum(axis=1), 1.0)


def test_max_iter_bounds_the_rounds():
    tally, _, _ = simulate([0.9, 0.7, 0.5], n_items=100, seed=1)
    result = dawid_skene(tally, max_iter=2)
    assert result.n_iter == 2 and not result.converged


def few_votes_over_many_labels(n_items: int, n_labels: int, people: int, seed: int):
    """Two of ``people`` answer each item, right 60–95 % of the time, else a uniform label:
    confusion matrices with far more cells than votes, where EM's posteriors drift."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, n_items)
    skill = rng.uniform(0.6, 0.95, people)
    votes = []
    for i in range(n_items):
        for a in rng.choice(people, 2, replace=False):
            given = truth[i] if rng.random() < skill[a] else rng.integers(0, n_labels)
            votes.append((f"i{i:04d}", f"p{a}", f"l{given}"))
    return Tally.from_votes(votes), {f"i{i:04d}": f"l{t}" for i, t in enumerate(truth)}


def test_dawid_skene_stops_once_the_likelihood_stops_rising():
    # 1,000 items over 40 labels, two votes each: the posteriors of a few items keep moving
    # for the whole 500 rounds, while the likelihood stopped rising long before
    tally, truth = few_votes_over_many_labels(1000, 40, people=10, seed=0)
    drifting = dawid_skene(tally, gain_tol=0)
    assert drifting.n_iter == 500 and not drifting.converged
    stopped = dawid_skene(tally)
    assert stopped.n_iter < 250
    assert not stopped.converged  # posteriors still moving: not its fixed point
    # what people see barely moves: the labels of 99 % of the items, and their accuracy
    same = np.mean(
        [a.label == b.label for a, b in zip(stopped.resolved, drifting.resolved, strict=True)]
    )
    assert same >= 0.99
    assert accuracy(stopped.label_of(), truth) == pytest.approx(
        accuracy(drifting.label_of(), truth), abs=0.005
    )


def test_bad_settings_are_refused_in_one_line():
    tally = Tally.from_matrix([["x", "y"]])
    with pytest.raises(InvalidInputError, match=r"^max_iter must be at least 1, got 0$"):
        dawid_skene(tally, max_iter=0)
    with pytest.raises(InvalidInputError, match=r"^smoothing must be above 0, got 0$"):
        dawid_skene(tally, smoothing=0)
    with pytest.raises(InvalidInputError, match=r"^gain_tol must be 0 or above, got -1$"):
        dawid_skene(tally, gain_tol=-1)


def test_an_empty_tally_resolves_nothing():
    empty = Tally.from_votes([])
    for result in (majority(empty), dawid_skene(empty)):
        assert result.resolved == [] and result.accuracy == {}, result.method


def test_one_em_step_sums_each_persons_votes_as_the_textbook_loops_do():
    # the M and E steps sum over groups of votes (np.add.reduceat); written out as loops over
    # people, votes and labels, one step from the vote shares gives the same matrices
    rng = np.random.default_rng(11)
    votes = [
        (f"i{i}", f"p{a}", LABELS[rng.integers(0, len(LABELS))])
        for i in range(40)
        for a in rng.choice(5, rng.integers(1, 4), replace=False)
    ]
    tally = Tally.from_votes(votes)
    result = dawid_skene(tally, max_iter=1, smoothing=0.5)
    shares = majority(tally).posteriors  # the vote shares EM starts from
    n_labels = len(tally.labels)
    for a, person in enumerate(tally.annotators):
        counts = np.full((n_labels, n_labels), 0.5)
        for i in range(len(tally.items)):
            given = tally.codes[i, a]
            if given >= 0:
                counts[:, given] += shares[i]
        expected = counts / counts.sum(axis=1, keepdims=True)
        assert np.allclose(result.confusion[person], expected)
    priors = (shares.sum(axis=0) + 0.5) / (shares.sum() + 0.5 * n_labels)
    log_post = np.tile(np.log(priors), (len(tally.items), 1))
    for i in range(len(tally.items)):
        for a, person in enumerate(tally.annotators):
            if tally.codes[i, a] >= 0:
                log_post[i] += np.log(result.confusion[person][:, tally.codes[i, a]])
    expected = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    assert np.allclose(result.posteriors, expected / expected.sum(axis=1, keepdims=True))
