"""Agreement figures on small fixed tallies, each against its hand computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score

from model.agreement import (
    MISSING,
    Tally,
    agreement,
    annotator_agreement,
    gold_accuracy,
    krippendorff_alpha,
    label_agreement,
    overall_agreement,
    pairwise_kappa,
)
from model.errors import InvalidInputError

# Six items, three people, two labels; raj skipped i6, mei skipped i5:
#        ana raj mei
#   i1    x   x   x
#   i2    x   y   x
#   i3    y   y   y
#   i4    y   y   x
#   i5    x   x   -
#   i6    y   -   y
VOTES = [
    ("i1", "ana", "x"), ("i1", "raj", "x"), ("i1", "mei", "x"),
    ("i2", "ana", "x"), ("i2", "raj", "y"), ("i2", "mei", "x"),
    ("i3", "ana", "y"), ("i3", "raj", "y"), ("i3", "mei", "y"),
    ("i4", "ana", "y"), ("i4", "raj", "y"), ("i4", "mei", "x"),
    ("i5", "ana", "x"), ("i5", "raj", "x"),
    ("i6", "ana", "y"), ("i6", "mei", "y"),
]  # fmt: skip


@pytest.fixture
def tally() -> Tally:
    return Tally.from_votes(VOTES)


def test_a_tally_from_votes_and_from_a_matrix_is_the_same(tally: Tally):
    rows = [
        ["x", "x", "x"],
        ["x", "x", "y"],
        ["y", "y", "y"],
        ["y", "x", "y"],
        ["x", None, "x"],
        ["y", "y", None],
    ]
    same = Tally.from_matrix(rows, items=["i1", "i2", "i3", "i4", "i5", "i6"],
                             annotators=["ana", "mei", "raj"])  # fmt: skip
    assert tally.items == same.items and tally.annotators == same.annotators == [
        "ana",
        "mei",
        "raj",
    ]
    assert tally.labels == ["x", "y"]
    assert (tally.codes == same.codes).all()
    assert tally.n_votes == 16
    assert tally.counts().tolist() == [[3, 0], [2, 1], [0, 3], [1, 2], [2, 0], [0, 2]]


def test_a_later_vote_replaces_an_earlier_one_and_a_skip_is_no_vote():
    tally = Tally.from_votes([("i1", "ana", "x"), ("i1", "ana", "y"), ("i2", "ana", "x"),
                              ("i2", "ana", None)])  # fmt: skip
    assert tally.items == ["i1"]
    assert tally.labels == ["y"]
    assert tally.codes.tolist() == [[0]]


def test_cohens_kappa_per_pair_by_hand(tally: Tally):
    pairs = {(p.a, p.b): p for p in pairwise_kappa(tally, min_shared=5)}
    # raj and mei share only i1-i4: fewer than 5, left out
    assert set(pairs) == {("ana", "mei"), ("ana", "raj")}
    # ana, raj on i1-i5: x x y y x / x y y y x. p_o = 4/5;
    # p_e = P(x)P(x) + P(y)P(y) = 3/5·2/5 + 2/5·3/5 = 12/25; kappa = (4/5 − 12/25)/(1 − 12/25)
    ana_raj = pairs[("ana", "raj")]
    assert ana_raj.n_shared == 5 and ana_raj.observed == pytest.approx(4 / 5)
    assert (
        ana_raj.kappa == pytest.approx((4 / 5 - 12 / 25) / (1 - 12 / 25)) == pytest.approx(8 / 13)
    )
    lib = cohen_kappa_score(["x", "x", "y", "y", "x"], ["x", "y", "y", "y", "x"])
    assert ana_raj.kappa == pytest.approx(lib)
    # ana, mei on i1-i4, i6: x x y y y / x x y x y. p_o = 4/5; p_e = 2/5·3/5 + 3/5·2/5 = 12/25
    assert pairs[("ana", "mei")].kappa == pytest.approx(8 / 13)
    assert len(pairwise_kappa(tally, min_shared=4)) == 3


def test_krippendorffs_alpha_and_fleiss_kappa_by_hand(tally: Tally):
    overall = overall_agreement(tally)
    # votes per item (x, y): (3,0) (2,1) (0,3) (1,2) (2,0) (0,2); m = 3 3 3 3 2 2
    # n_x = 8, n_y = 8, n = 16; Σ_c n_c(n_c − 1) = 2·8·7 = 112
    # Σ_u Σ_c n_uc(n_uc − 1)/(m_u − 1) = 6/2 + 2/2 + 6/2 + 2/2 + 2/1 + 2/1 = 12
    # alpha = (15·12 − 112)/(16·15 − 112) = 68/128
    assert (
        overall.alpha == pytest.approx((15 * 12 - 112) / (16 * 15 - 112)) == pytest.approx(17 / 32)
    )
    assert overall.n_alpha_items == 6
    # Fleiss on the four items with 3 votes: P_i = 1, 1/3, 1, 1/3 → mean 2/3; p_x = p_y = 6/12,
    # P_e = 1/2; kappa = (2/3 − 1/2)/(1 − 1/2)
    assert overall.n_raters == 3 and overall.n_fleiss_items == 4
    assert overall.fleiss == pytest.approx((2 / 3 - 1 / 2) / (1 - 1 / 2))
    # agreeing ordered pairs of votes: 6+2+6+2+2+2 = 20 of 6+6+6+6+2+2 = 28
    assert overall.observed == pytest.approx(20 / 28)
    assert (overall.n_items, overall.n_annotators, overall.n_votes) == (6, 3, 16)
    assert overall.reason == ""


def test_krippendorffs_alpha_matches_krippendorffs_worked_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four
    # observers, twelve units, values 1-5 with gaps; nominal alpha = 0.743
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    rows = [[None if o[u] is None else str(o[u]) for o in observers] for u in range(12)]
    overall = overall_agreement(Tally.from_matrix(rows))
    assert overall.alpha == pytest.approx(0.743, abs=5e-4)
    assert overall.n_alpha_items == 11  # unit 12 has one value: not pairable


def test_per_label_agreement_by_hand():
    # three labels this time:  i1 x x x | i2 x x y | i3 y y z | i4 z z z
    tally = Tally.from_matrix([["x", "x", "x"], ["x", "x", "y"], ["y", "y", "z"],
                               ["z", "z", "z"]])  # fmt: skip
    per = {row.label: row for row in label_agreement(tally)}
    # specific agreement: Σ n_uc(n_uc − 1) / Σ n_uc(m_u − 1)
    # x: (3·2 + 2·1) / (3·2 + 2·2) = 8/10;  y: (0 + 2·1) / (1·2 + 2·2) = 2/6
    # z: (0 + 3·2) / (1·2 + 3·2) = 6/8
    assert per["x"].specific == pytest.approx(8 / 10)
    assert per["y"].specific == pytest.approx(2 / 6)
    assert per["z"].specific == pytest.approx(6 / 8)
    assert [per[c].n_votes for c in "xyz"] == [5, 3, 4]
    # alpha of "x or not": counts (3,0) (2,1) (0,3) (0,3); n_x = 5, n_not = 7, n = 12
    # observed Σ = 3 + 1 + 3 + 3 = 10; chance = 5·4 + 7·6 = 62; alpha = (11·10 − 62)/(12·11 − 62)
    assert per["x"].alpha == pytest.approx((11 * 10 - 62) / (12 * 11 - 62))
    assert krippendorff_alpha(np.array([[3, 0], [2, 1], [0, 3], [0, 3]])) == per["x"].alpha


def test_a_label_nobody_chose_has_no_agreement_and_says_why():
    tally = Tally.from_votes([("i1", "a", "x"), ("i1", "b", "x"), ("i2", "a", "y"),
                              ("i2", "b", "y")], labels=["z"])  # fmt: skip
    z = next(row for row in label_agreement(tally) if row.label == "z")
    assert (z.n_votes, z.specific, z.alpha) == (0, None, None)
    assert z.reason == "no votes on items with two or more"


def test_each_annotator_against_the_majority_of_the_others_by_hand(tally: Tally):
    per = {row.annotator: row for row in annotator_agreement(tally)}
    # ana: others' majority i1 x (agree), i2 tie, i3 y (agree), i4 tie, i5 x (raj, agree),
    #      i6 y (mei, agree) → 4 of 4, 2 tied
    ana = per["ana"]
    assert (ana.n_votes, ana.n, ana.n_agree, ana.n_tied, ana.rate) == (6, 4, 4, 2, 1.0)
    assert ana.kappa == pytest.approx(1.0)
    # raj: i1 x agree, i2 x vs his y, i3 y agree, i4 tie, i5 x agree → 3 of 4
    # raj x y y x vs x x y x: p_o = 3/4, p_e = 2/4·3/4 + 2/4·1/4 = 1/2 → kappa (3/4 − 1/2)/(1/2)
    raj = per["raj"]
    assert (raj.n, raj.n_agree, raj.n_tied) == (4, 3, 1)
    assert raj.kappa == pytest.approx((3 / 4 - 1 / 2) / (1 - 1 / 2))
    assert raj.kappa == pytest.approx(cohen_kappa_score(list("xyyx"), list("xxyx")))
    # mei: i1 agree, i2 tie, i3 agree, i4 y vs her x, i6 agree → 3 of 4
    mei = per["mei"]
    assert (mei.n, mei.n_agree, mei.n_tied, mei.rate) == (4, 3, 1, 0.75)
    low, high = binomtest(3, 4).proportion_ci(method="wilson")
    assert mei.interval == pytest.approx((low, high))


def test_gold_accuracy_per_annotator_with_a_wilson_interval(tally: Tally):
    gold = {"i2": "x", "i4": "y", "i9": "x"}  # i9 nobody answered
    per = {row.annotator: row for row in gold_accuracy(tally, gold)}
    # ana: i2 x ✓, i4 y ✓; raj: i2 y ✗, i4 y ✓; mei: i2 x ✓, i4 x ✗
    assert [(per[a].n, per[a].n_correct) for a in ("ana", "raj", "mei")] == [(2, 2), (2, 1), (2, 1)]
    assert per["raj"].accuracy == 0.5
    low, high = binomtest(1, 2).proportion_ci(method="wilson")
    assert per["raj"].interval == pytest.approx((low, high))
    low, high = binomtest(2, 2).proportion_ci(method="wilson")
    assert per["ana"].interval == pytest.approx((low, high))


def test_an_annotator_with_no_gold_answer_has_n_zero_and_no_accuracy(tally: Tally):
    per = {row.annotator: row for row in gold_accuracy(tally, {"i6": "y"})}
    assert (per["raj"].n, per["raj"].accuracy, per["raj"].interval) == (0, None, (0.0, 1.0))
    assert (per["mei"].n, per["mei"].accuracy) == (1, 1.0)


def test_one_annotator_has_no_pairs_and_no_overall_agreement():
    tally = Tally.from_votes([("i1", "ana", "x"), ("i2", "ana", "y")])
    report = agreement(tally, min_shared=1)
    assert report.pairs == []
    assert report.overall.alpha is None and report.overall.fleiss is None
    assert report.overall.reason == "no item has two or more votes"
    (ana,) = report.per_annotator
    assert (ana.n, ana.rate, ana.kappa) == (0, None, None)
    assert ana.reason == "no item shared with others who are not tied"


def test_annotators_with_no_shared_items_have_no_pair():
    tally = Tally.from_votes([("i1", "ana", "x"), ("i2", "raj", "y")])
    assert pairwise_kappa(tally, min_shared=1) == []
    assert overall_agreement(tally).reason == "no item has two or more votes"


def test_full_agreement_on_several_labels_is_kappa_and_alpha_one():
    tally = Tally.from_matrix([["x", "x"], ["y", "y"], ["z", "z"]])
    (pair,) = pairwise_kappa(tally, min_shared=3)
    assert pair.kappa == 1.0 and pair.observed == 1.0
    overall = overall_agreement(tally)
    assert overall.alpha == pytest.approx(1.0) and overall.fleiss == pytest.approx(1.0)


def test_full_agreement_on_a_single_label_leaves_kappa_undefined_with_a_reason():
    tally = Tally.from_matrix([["x", "x"], ["x", "x"], ["x", "x"]])
    (pair,) = pairwise_kappa(tally, min_shared=3)
    assert pair.observed == 1.0 and pair.kappa is None
    assert pair.reason == (
        "a single label throughout: chance agreement is total, kappa is undefined"
    )
    overall = overall_agreement(tally)
    assert overall.alpha is None and overall.fleiss is None
    assert overall.reason == (
        "every vote is the same label: chance agreement is total; "
        "the items with 2 votes all got one label: Fleiss' kappa is undefined"
    )


def test_fleiss_uses_the_most_common_number_of_votes():
    # two items with 2 votes, three with 3: Fleiss reads the three
    rows = [["x", "x", None], ["x", "y", None], ["x", "x", "x"], ["y", "y", "y"], ["x", "y", "y"]]
    overall = overall_agreement(Tally.from_matrix(rows))
    assert (overall.n_raters, overall.n_fleiss_items, overall.n_alpha_items) == (3, 3, 5)
    # (3,0) (0,3) (1,2): P_i = 1, 1, 1/3 → 7/9; p_x = 4/9, p_y = 5/9 → P_e = 41/81
    assert overall.fleiss == pytest.approx((7 / 9 - 41 / 81) / (1 - 41 / 81))


def test_bad_input_is_refused_in_one_line():
    with pytest.raises(
        InvalidInputError, match=r"^vote 2 has 2 fields; give \(item_id, annotator, label\)$"
    ):
        Tally.from_votes([("i1", "a", "x"), ("i2", "a")])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="one cell per annotator"):
        Tally.from_matrix([["x", "y"], ["x"]])
    with pytest.raises(InvalidInputError, match="min_shared must be at least 1"):
        pairwise_kappa(Tally.from_matrix([["x", "y"]]), min_shared=0)


def test_an_empty_tally_measures_nothing():
    tally = Tally.from_votes([])
    assert tally.codes.shape == (0, 0) and (tally.codes == MISSING).all()
    report = agreement(tally)
    assert report.pairs == [] and report.per_label == [] and report.per_annotator == []
    assert report.overall.alpha is None


def test_a_tally_gives_back_its_votes(tally: Tally):
    assert sorted(tally.votes()) == sorted(VOTES)
    assert Tally.from_votes(tally.votes()).codes.tolist() == tally.codes.tolist()
