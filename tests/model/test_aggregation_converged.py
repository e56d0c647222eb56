"""Dawid–Skene's ``converged`` means its fixed point, and ``accelerate`` (what `/hitl stats`
shows) reaches the fixed point plain EM reaches, in fewer rounds (outside test "quality",
finding 3: the figures shown came from a run the likelihood rule stopped, up to 11 points from
the fixed point, reported converged; review1 finding 4: SQUAREM from the first round could
settle at another of EM's fixed points, up to 11 points from plain EM's)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from model.aggregation import dawid_skene
from model.agreement import Tally

LABELS = ["account", "billing", "bug", "feature", "other"]


def small_team(seed: int) -> tuple[Tally, dict[str, str]]:
    """60 items, two of 12 people each (most right 90 % of the time, some 70 %, some 20 %),
    every sixth item gold: a team the size `/hitl stats` reports on."""
    rng = random.Random(seed)
    skill = {f"U0P{p:02d}": rng.choice([0.9, 0.9, 0.7, 0.2]) for p in range(12)}
    votes, gold = [], {}
    for i in range(60):
        truth = rng.choice(LABELS)
        for user in rng.sample(sorted(skill), 2):
            votes.append(
                (f"i{i}", user, truth if rng.random() < skill[user] else rng.choice(LABELS))
            )
        if i % 6 == 0:
            gold[f"i{i}"] = truth
    return Tally.from_votes(votes), gold


def test_a_run_the_likelihood_rule_stops_is_not_called_converged():
    tally, gold = small_team(0)
    fixed_point = dawid_skene(tally, gold=gold, gain_tol=0, max_iter=100_000)
    assert fixed_point.converged
    stopped = dawid_skene(tally, gold=gold)  # training's call: stops on the likelihood
    assert stopped.n_iter < fixed_point.n_iter
    # the accuracies it stopped at are points away from the fixed point's
    gap = max(abs(stopped.accuracy[a] - fixed_point.accuracy[a]) for a in tally.annotators)
    assert gap > 0.05
    assert not stopped.converged


def test_accelerated_em_reaches_plain_ems_fixed_point_in_fewer_rounds():
    for seed in (0, 52, 121):
        tally, gold = small_team(seed)
        plain = dawid_skene(tally, gold=gold, gain_tol=0, max_iter=100_000)
        fast = dawid_skene(tally, gold=gold, gain_tol=0, accelerate=True, max_iter=100_000)
        assert plain.converged and fast.converged, seed
        # training's rounds first (137 of 254 for seed 0, a third of plain's for the others)
        assert fast.n_iter < 0.6 * plain.n_iter, (seed, fast.n_iter, plain.n_iter)
        for annotator in tally.annotators:
            assert abs(fast.accuracy[annotator] - plain.accuracy[annotator]) < 1e-4, seed
        assert np.abs(fast.posteriors - plain.posteriors).max() < 1e-3, seed
        assert [r.label for r in fast.resolved] == [r.label for r in plain.resolved], seed
        for matrix in fast.confusion.values():
            assert np.allclose(matrix.sum(axis=1), 1.0)
        assert fast.priors is not None and fast.priors.sum() == pytest.approx(1.0)


def test_accelerated_em_out_of_rounds_is_not_converged():
    tally, gold = small_team(0)
    cut = dawid_skene(tally, gold=gold, gain_tol=0, accelerate=True, max_iter=10)
    assert cut.n_iter == 10 and not cut.converged


def reviewers_team(
    n_items: int, n_labels: int, people: int, per_item, seed: int, gold_every: int, skill
) -> tuple[Tally, dict[str, str]]:
    """review1's synthetic teams (its ds_common.team): numpy's default generator, each person
    right with a probability drawn from ``skill``, else a label at random."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, n_items)
    right = rng.uniform(*skill, people)
    votes = []
    for i in range(n_items):
        k = per_item if np.isscalar(per_item) else int(rng.integers(*per_item))
        for a in rng.choice(people, min(k, people), replace=False):
            given = truth[i] if rng.uniform() < right[a] else rng.integers(0, n_labels)
            votes.append((f"i{i}", f"p{a}", f"l{given}"))
    gold = {f"i{i}": f"l{truth[i]}" for i in range(0, n_items, gold_every)}
    return Tally.from_votes(votes), gold


@pytest.mark.parametrize(
    "team",
    [
        # 20 people, 20 labels, 600 items × 2 answers, every 25th gold: SQUAREM from the
        # first round put p18 at 59.7 % against plain EM's 70.3 %, 7 people > 1 point away
        (600, 20, 20, 2, 12, 25, (0.6, 0.95)),
        # 30 people, 20 labels, 400 items × 1–3 answers, weak people: 8 points away, at
        # another of EM's fixed points
        (400, 20, 30, (1, 4), 0, 11, (0.3, 0.95)),
    ],
)
def test_accelerated_em_settles_where_plain_em_does(team):
    """Accelerated EM ends at the fixed point plain EM reaches from the same start (EM has
    several here), not at another one: the same accuracies and posteriors, within 1e-6."""
    tally, gold = reviewers_team(*team)
    plain = dawid_skene(tally, gold=gold, gain_tol=0, tol=1e-10, max_iter=100_000)
    fast = dawid_skene(tally, gold=gold, gain_tol=0, tol=1e-10, accelerate=True, max_iter=100_000)
    assert plain.converged and fast.converged
    assert fast.n_iter < plain.n_iter, (fast.n_iter, plain.n_iter)
    gaps = {a: abs(fast.accuracy[a] - plain.accuracy[a]) for a in tally.annotators}
    assert max(gaps.values()) < 1e-6, sorted(gaps.items(), key=lambda g: -g[1])[:3]
    assert np.abs(fast.posteriors - plain.posteriors).max() < 1e-6
    assert [r.label for r in fast.resolved] == [r.label for r in plain.resolved]
