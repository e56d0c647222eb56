import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.errors import InvalidInputError
from model.selection import (
    STRATEGIES,
    entropy,
    is_near_duplicate,
    least_confidence,
    margin,
    priority,
    register_strategy,
    select,
    uncertainty,
    unregister_strategy,
)

ROWS = np.array([[0.5, 0.5], [0.9, 0.1]])


def test_first_row_has_the_smaller_margin():
    np.testing.assert_allclose(margin(ROWS), [0.0, 0.8])


def test_least_confidence_by_hand():
    np.testing.assert_allclose(least_confidence(ROWS), [0.5, 0.1])


def test_entropy_by_hand():
    expected = [math.log(2), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))]
    np.testing.assert_allclose(entropy(ROWS), expected)


def test_entropy_ignores_zero_probabilities():
    np.testing.assert_allclose(entropy(np.array([[1.0, 0.0, 0.0]])), [0.0])


def test_margin_uses_the_two_largest_in_any_column_order():
    np.testing.assert_allclose(margin(np.array([[0.1, 0.3, 0.6]])), [0.3])


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy"])
def test_every_strategy_ranks_the_even_row_as_more_uncertain(strategy):
    scores = uncertainty(ROWS, strategy)
    assert scores[0] > scores[1]


def test_unknown_strategy_is_refused():
    with pytest.raises(InvalidInputError, match="unknown strategy 'random'"):
        uncertainty(ROWS, "random")


def test_without_audit_the_most_uncertain_come_first():
    proba = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3], [0.55, 0.45]])
    picks = select(3, proba, audit_rate=0.0, random_state=0)
    assert [p.index for p in picks] == [1, 3, 2]
    assert {p.reason for p in picks} == {"uncertain"}
    assert picks[0].uncertainty == pytest.approx(1.0)


def test_top_k_columns_are_enough_for_margin():
    top2 = np.array([[0.9, 0.05], [0.4, 0.35]])
    assert [p.index for p in select(1, top2, audit_rate=0.0, random_state=0)] == [1]


def test_threshold_keeps_confident_items_out_of_the_uncertain_picks():
    proba = np.array([[0.95, 0.05], [0.85, 0.15], [0.6, 0.4]])
    picks = select(3, proba, audit_rate=0.0, threshold=0.8, random_state=0)
    assert [p.index for p in picks] == [2]


def test_full_audit_rate_draws_only_audit_picks():
    proba = np.tile([0.5, 0.5], (20, 1))
    picks = select(5, proba, audit_rate=1.0, random_state=3)
    assert len(picks) == 5
    assert {p.reason for p in picks} == {"audit"}


def test_cold_start_picks_are_random_and_tagged():
    picks = select(4, None, n_items=10, random_state=0)
    assert len(picks) == 4
    assert {p.reason for p in picks} == {"cold_start"}
    assert len({p.index for p in picks}) == 4
    assert all(p.uncertainty is None for p in picks)


def test_cold_start_with_another_seed_picks_other_items():
    draws = {tuple(p.index for p in select(3, None, n_items=50, random_state=s)) for s in range(5)}
    assert len(draws) > 1


def test_near_duplicates_are_not_picked_into_the_same_batch():
    texts = ["Hello, world!", "hello   WORLD", "something else", "a third thing"]
    proba = np.array([[0.5, 0.5], [0.5, 0.5], [0.6, 0.4], [0.9, 0.1]])
    picks = select(3, proba, texts=texts, audit_rate=0.0, random_state=0)
    assert [p.index for p in picks] == [0, 2, 3]


def test_cold_start_also_skips_near_duplicates():
    texts = ["same text"] * 5 + ["other"]
    picks = select(6, None, texts=texts, random_state=0)
    assert sorted(texts[p.index] for p in picks) == ["other", "same text"]


def test_near_duplicate_detection_by_trigram_overlap():
    a = "please reset my card pin, I forgot it yesterday evening"
    assert is_near_duplicate(a, a + "!")
    assert not is_near_duplicate(a, "how do I top up my account with a cheque")


def test_pool_smaller_than_batch_returns_the_whole_pool():
    assert len(select(10, np.array([[0.5, 0.5], [0.6, 0.4]]), random_state=0)) == 2


def test_empty_pool_and_zero_batch_give_nothing():
    assert select(5, np.zeros((0, 3)), random_state=0) == []
    assert select(0, ROWS, random_state=0) == []


def test_pool_sizes_must_agree():
    with pytest.raises(InvalidInputError, match="pool sizes disagree"):
        select(1, ROWS, texts=["only one"])


def test_pool_size_must_be_known():
    with pytest.raises(InvalidInputError, match="give proba, n_items or texts"):
        select(1, None)


def test_audit_rate_outside_zero_one_is_refused():
    with pytest.raises(InvalidInputError, match="audit_rate must be between 0 and 1"):
        select(1, ROWS, audit_rate=1.5)


@settings(max_examples=40, deadline=None, database=None)
@given(
    n_items=st.integers(min_value=0, max_value=60),
    batch_size=st.integers(min_value=0, max_value=15),
    audit_rate=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    cold=st.booleans(),
)
def test_select_never_duplicates_and_never_exceeds_the_batch(
    n_items, batch_size, audit_rate, seed, cold
):
    rng = np.random.default_rng(seed)
    proba = None if cold else rng.dirichlet(np.ones(3), size=n_items)
    picks = select(batch_size, proba, n_items=n_items, audit_rate=audit_rate, random_state=rng)
    indices = [p.index for p in picks]
    assert len(indices) == len(set(indices))
    assert len(picks) == min(batch_size, n_items)
    assert all(0 <= i < n_items for i in indices)
    expected = {"cold_start"} if cold else {"uncertain", "audit"}
    assert {p.reason for p in picks} <= expected


@settings(max_examples=15, deadline=None, database=None)
@given(
    audit_rate=st.floats(min_value=0.0, max_value=1.0),
    batch_size=st.integers(min_value=1, max_value=10),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_audit_share_holds_over_many_draws(audit_rate, batch_size, seed):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(4), size=200)
    n_draws = 300
    n_audit = n_total = 0
    for _ in range(n_draws):
        picks = select(batch_size, proba, audit_rate=audit_rate, random_state=rng)
        n_total += len(picks)
        n_audit += sum(p.reason == "audit" for p in picks)
    # binomial: standard deviation of the share is at most 0.5 / sqrt(n_total)
    assert abs(n_audit / n_total - audit_rate) <= 5 * 0.5 / math.sqrt(n_total)


def test_audit_picks_cover_the_whole_pool_uniformly():
    proba = np.tile([0.5, 0.5], (10, 1))
    rng = np.random.default_rng(7)
    counts = np.zeros(10)
    for _ in range(2_000):
        for p in select(1, proba, audit_rate=1.0, random_state=rng):
            counts[p.index] += 1
    assert counts.min() > 150  # 200 expected per item


# -- the strategy registry --


def test_each_registered_strategy_gives_a_priority_by_hand():
    # rows [.5,.5] and [.9,.1]: margin 0 and .8; top probability .5 and .9
    np.testing.assert_allclose(priority(ROWS, "margin"), [1.0, 0.2])
    np.testing.assert_allclose(priority(ROWS, "least_confidence"), [0.5, 0.1])
    np.testing.assert_allclose(priority(ROWS, "entropy"), entropy(ROWS))
    assert set(STRATEGIES) >= {"margin", "least_confidence", "entropy"}


def test_a_registered_strategy_is_used_by_priority_and_select():
    @register_strategy("second_column")
    def second_column(proba: np.ndarray) -> np.ndarray:
        return proba[:, 1]

    try:
        proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
        np.testing.assert_allclose(priority(proba, "second_column"), [0.1, 0.8, 0.5])
        picks = select(3, proba, strategy="second_column", audit_rate=0.0, random_state=0)
        assert [p.index for p in picks] == [1, 2, 0]
        with pytest.raises(InvalidInputError, match="'second_column' is registered already"):
            register_strategy("second_column")(second_column)
    finally:
        unregister_strategy("second_column")
    assert "second_column" not in STRATEGIES


def test_unknown_strategy_names_the_choices():
    with pytest.raises(InvalidInputError) as caught:
        priority(ROWS, "random")
    assert str(caught.value) == (
        "unknown strategy 'random'; choose one of: entropy, least_confidence, margin"
    )


def test_a_strategy_that_does_not_give_one_number_per_row_is_refused():
    register_strategy("broken")(lambda proba: proba)
    try:
        with pytest.raises(InvalidInputError, match="one finite number per row"):
            priority(ROWS, "broken")
    finally:
        unregister_strategy("broken")


def test_select_can_take_priorities_computed_earlier():
    stored = np.array([0.1, 0.9, 0.5, 0.95])
    confidence = np.array([0.5, 0.5, 0.6, 0.99])  # the last is confident: not asked
    picks = select(3, None, priorities=stored, confidence=confidence, threshold=0.8, audit_rate=0.0)
    assert [(p.index, p.uncertainty) for p in picks] == [(1, 0.9), (2, 0.5), (0, 0.1)]
