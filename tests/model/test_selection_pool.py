"""The pool-aware priorities screened against margin: density weighting and medoids."""

import numpy as np
import pytest

from model.errors import InvalidInputError
from model.selection import density_weighted_margin, pool_density, representatives, select

# two identical texts and an outlier: TF-IDF rows (1/√2, 1/√2, 0) twice and (0, 0, 1); the
# mean row is (√2/3, √2/3, 1/3), so the densities are 2/3, 2/3 and 1/3
POOL = ["ant bee", "ant bee", "cat"]


def test_pool_density_by_hand():
    np.testing.assert_allclose(pool_density(POOL), [2 / 3, 2 / 3, 1 / 3])


def test_a_typical_close_call_comes_before_a_closer_call_on_an_outlier():
    proba = np.array([[0.6, 0.4], [0.9, 0.1], [0.5, 0.5]])
    # margin alone: the outlier (1 - margin = 1.0) before item 0 (0.8);
    # weighted: 0.8 × 2/3 = 0.533 for item 0, 1.0 × 1/3 = 0.333 for the outlier, 0.2 × 2/3
    scores = density_weighted_margin(proba, pool_density(POOL))
    np.testing.assert_allclose(scores, [0.8 * 2 / 3, 0.2 * 2 / 3, 1 / 3])
    picks = select(1, proba, priorities=scores, audit_rate=0.0, random_state=0)
    assert [p.index for p in picks] == [0]
    assert [p.index for p in select(1, proba, audit_rate=0.0, random_state=0)] == [2]


def test_beta_zero_is_plain_margin_priority():
    proba = np.array([[0.6, 0.4], [0.5, 0.5]])
    np.testing.assert_allclose(density_weighted_margin(proba, [0.1, 0.9], beta=0.0), [0.8, 1.0])


def test_density_of_the_wrong_length_is_refused():
    with pytest.raises(InvalidInputError, match="density has 2 values for 3 rows"):
        density_weighted_margin(np.full((3, 2), 0.5), [0.1, 0.2])


def test_representatives_are_each_clusters_most_central_text_largest_cluster_first():
    texts = ["ant bee elk", "ant bee", "ant bee owl", "cat fox", "cat fox"]
    assert representatives(texts, 2, random_state=0).tolist() == [1, 3]


def test_representatives_never_exceed_the_pool():
    assert sorted(representatives(["ant bee", "cat fox"], 25, random_state=0).tolist()) == [0, 1]


def test_a_pool_without_words_has_zero_density_not_an_error():
    np.testing.assert_allclose(pool_density(["!!", "?"]), [0.0, 0.0])


def test_duplicate_texts_give_one_medoid_each_and_no_warning():
    assert representatives(["ant bee", "ant bee", "cat fox"], 25, random_state=0).tolist() == [0, 2]
