"""An outside tester's seam: model/'s API on data as degenerate as a real team's can be.

Texts empty after normalisation, only emoji, punctuation, digits or URLs, all identical or
repeated under different labels; one class, one example of a class, 999:1, hundreds of
classes with one or two examples; labels that are numbers as strings or differ by Unicode
form or a space; votes with ties and skips only, one annotator, annotators who never agree,
gold on every item or none; folds with fewer examples than folds; a pool smaller than the
batch, every probability equal; learning curves flat, noisy or falling.

The contracts checked are the ones the docstrings and README promise: no exception but
``model.errors``' (each with a message), probabilities finite and summing to 1, picks unique,
from the pool and no more than asked, aggregated labels among the votes' or the gold, rates in
[0, 1] or ``None``, Wilson bounds ordered within [0, 1], the gate's decision the same for the
same inputs, a saved model predicting as it did. Every property is derandomized and small
(the whole file: a few seconds of CPU).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from model import modelfile
from model.aggregation import dawid_skene, majority
from model.agreement import Tally, agreement, gold_accuracy
from model.classifier import PIPELINES, TextClassifier, build_pipeline
from model.errors import InsufficientDataError, InvalidInputError, ModelError
from model.evaluation import make_folds, wilson_interval
from model.selection import is_near_duplicate, priority, select, text_key
from model.stopping import (
    AccuracyNow,
    NoAccuracyNow,
    accuracy_now,
    changed_share,
    curve_points,
    extrapolate,
)
from model.training import decide, train_candidate

CHEAP = settings(
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FITS = settings(CHEAP, max_examples=15)  # each example fits a model (~10-100 ms)

DEGENERATE = [
    "",
    " ",
    "\t\n",
    "\u200b",  # zero-width space: blank to a person, not to str.strip
    "👍",
    "👎🏽",
    "🎉🎉🎉",
    "?!",
    "...",
    "—",
    "1",
    "42",
    "2024-01-01",
    "http://x.io/a?b=1",
    "https://example.com/",
    "é",
    "e\u0301",
    "ﬁ",
    "好",
    "a",
    "ok",
    "OK!",
    "same text",
    "Same  text.",
]
LABELS = ["1", "01", "1.0", " 1", "1 ", "x", "X", "é", "e\u0301", "\u00a0x", "spam", "ham"]
LONG = "word " * 20_000  # 100,000 characters

texts_st = st.one_of(
    st.sampled_from(DEGENERATE),
    st.text(alphabet="👍👎?!. 0123456789", max_size=6),
    st.text(max_size=12),
)
labels_st = st.sampled_from(LABELS)


@st.composite
def labelled_rows(draw, max_size: int = 14, min_labels: int = 1):
    """Rows over a few labels (so that most of them train): texts degenerate, repeated, and
    the same text under different labels."""
    names = draw(st.lists(labels_st, min_size=min_labels, max_size=3, unique=True))
    text = st.one_of(st.sampled_from(DEGENERATE), texts_st)
    return draw(st.lists(st.tuples(text, st.sampled_from(names)), min_size=4, max_size=max_size))


def _ok_error(exc: ModelError) -> None:
    """A refusal the project documents: one of model/'s errors, with words."""
    assert isinstance(exc, ModelError)
    assert str(exc).strip(), f"{type(exc).__name__} without a message"


def _check_proba(clf: TextClassifier, queries: list[str]) -> None:
    proba = clf.predict_proba(queries)
    assert proba.shape == (len(queries), len(clf.classes))
    assert np.isfinite(proba).all()
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert set(clf.predict(queries)) <= set(clf.classes)
    scores = clf.score(queries, top_k=3)
    assert len(scores) == len(queries)
    assert np.isfinite(scores.confidence).all()
    np.testing.assert_allclose(scores.confidence, proba.max(axis=1))
    for i in range(len(queries)):
        ranked = scores.ranked(i)
        assert all(label in clf.classes for label, _ in ranked)
        assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)


# --- the classifier ------------------------------------------------------------------------


@FITS
@given(
    rows=st.one_of(labelled_rows(10), st.lists(st.tuples(texts_st, labels_st), max_size=10)),
    pipeline=st.sampled_from(sorted(PIPELINES)),
)
def test_a_fit_on_degenerate_texts_scores_well_formed_rows_or_refuses(rows, pipeline):
    texts = [t for t, _ in rows]
    labels = [y for _, y in rows]
    try:
        clf = TextClassifier(pipeline).fit(texts, labels, label_set=["unseen"])
    except ModelError as exc:
        event("refused")
        _ok_error(exc)
        return
    event("fitted")
    # labels are kept as given: no stripping, case-folding or Unicode normalisation
    assert clf.classes == sorted(set(labels) | {"unseen"})
    assert set(clf.trained_classes) == set(labels)
    _check_proba(clf, [*texts, "", "👍", "never seen", LONG])
    assert clf.predict_proba(["unseen words"])[0, clf.classes.index("unseen")] == 0.0


@FITS
@given(
    rows=labelled_rows(8),
    pipeline=st.sampled_from(sorted(PIPELINES)),
)
def test_a_saved_model_predicts_as_the_fitted_one(rows, pipeline):
    texts = [t for t, _ in rows]
    labels = [y for _, y in rows]
    try:
        clf = TextClassifier(pipeline).fit(texts, labels)
    except ModelError as exc:
        _ok_error(exc)
        return
    again = TextClassifier.from_pipeline(
        modelfile.loads(modelfile.dumps(clf.pipeline_)), clf.classes, pipeline
    )
    queries = [*texts, "", "👍", "something else", LONG]
    np.testing.assert_array_equal(again.predict_proba(queries), clf.predict_proba(queries))


def test_the_registry_round_trips_a_model_fitted_on_emoji_only(registry):
    """No word in any text: the word part of the union is dropped for the fit."""
    clf = TextClassifier().fit(["👍", "👎", "👍👍", "👎👎"], ["yes", "no", "yes", "no"])
    meta = registry.save(clf, n_train=4)
    loaded = registry.load(meta.version)
    queries = ["👍", "👎", "", "words now", LONG]
    np.testing.assert_array_equal(loaded.predict_proba(queries), clf.predict_proba(queries))
    assert loaded.classes == clf.classes


def test_a_model_fitted_on_a_text_with_a_lone_surrogate_saves_and_loads(registry):
    """``json.loads('"\\ud83d"')`` is a str Python holds but UTF-8 cannot encode: the model's
    vocabulary is written as UTF-8 (modelfile), and the save raised UnicodeEncodeError."""
    texts = ["broken emoji \ud83d here", "fine text", "more \udc00 broken", "fine again"]
    clf = TextClassifier().fit(texts, ["bad", "good", "bad", "good"])
    loaded = registry.load(registry.save(clf, n_train=4).version)
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))


def test_a_text_of_100k_characters_trains_and_scores():
    texts = [LONG + str(i) for i in range(4)] + ["short one", "short two"]
    labels = ["long", "long", "long", "long", "short", "short"]
    clf = TextClassifier().fit(texts, labels)
    _check_proba(clf, [LONG * 2, ""])


# --- training and the promotion gate --------------------------------------------------------

CHAMPION = TextClassifier().fit(["yes please", "no thanks", "yes", "no"], ["1", "01", "1", "01"])


@settings(FITS, max_examples=12)
@given(rows=labelled_rows(min_labels=2), mask_bits=st.integers(min_value=0, max_value=2**14 - 1))
def test_training_never_raises_on_degenerate_data_and_the_gate_decides_the_same_twice(
    rows, mask_bits
):
    texts = [t for t, _ in rows]
    labels = [y for _, y in rows]
    cand = train_candidate(texts, labels)
    event("trained" if cand.is_trained else "refused")
    if not cand.is_trained:
        assert cand.reason.startswith("not trained: ") and len(cand.reason) > 14
        assert not decide(cand, CHAMPION).promote
        return
    ev = cand.evaluation
    assert ev is not None and 0.0 <= ev.macro_f1 <= 1.0 and 0.0 <= ev.accuracy <= 1.0
    assert all(0.0 <= v <= 1.0 for v in ev.fold_macro_f1)
    assert all(0.0 <= c <= 1.0 for c in cand.oof_confidence)
    assert len(cand.oof_confidence) == len(cand.oof_right) == ev.n_samples
    mask = [bool(mask_bits >> i & 1) for i in range(len(labels))]
    first = decide(cand, CHAMPION, champion_mask=mask)
    assert first == decide(cand, CHAMPION, champion_mask=mask)
    for d in (first, decide(cand, None)):
        for f1 in (d.candidate_macro_f1, d.champion_macro_f1):
            assert f1 is None or (math.isfinite(f1) and 0.0 <= f1 <= 1.0)
        assert d.reason.startswith("promoted" if d.promote else "rejected")


def test_one_example_of_a_class_among_999_is_refused_with_the_counts():
    cand = train_candidate([f"ticket {i}" for i in range(1000)], ["ok"] * 999 + ["fraud"])
    assert not cand.is_trained
    assert "ok: 999, fraud: 1" in cand.reason


def test_two_hundred_classes_of_one_or_two_examples_train_and_score():
    texts = [f"order {i} about thing{i % 200}" for i in range(300)]
    labels = [f"L{i % 200}" for i in range(300)]
    cand = train_candidate(texts, labels)
    assert cand.is_trained, cand.reason
    assert 0.0 <= cand.evaluation.macro_f1 <= 1.0
    assert len(cand.classifier.classes) == 200
    _check_proba(cand.classifier, texts[:5] + [""])


# --- folds ----------------------------------------------------------------------------------


@CHEAP
@given(
    labels=st.one_of(
        st.lists(st.sampled_from(["a", " 1"]), min_size=4, max_size=30),
        st.lists(st.sampled_from(["a", "b", "c", "1", " 1"]), max_size=30),
    ),
    grouped=st.booleans(),
    n_groups=st.integers(min_value=1, max_value=30),
    n_splits=st.one_of(st.none(), st.integers(min_value=2, max_value=6), st.just(-1)),
)
def test_folds_partition_the_rows_and_never_split_a_group(labels, grouped, n_groups, n_splits):
    groups = [i % n_groups for i in range(len(labels))] if grouped else None
    try:
        folds = make_folds(labels, n_splits=n_splits, groups=groups, random_state=3)
    except ModelError as exc:
        event("refused")
        _ok_error(exc)
        return
    event("folds")
    n = len(labels)
    held = np.concatenate([test for _, test in folds])
    assert len(held) == len(set(held.tolist()))  # each row held out at most once
    for train, test in folds:
        assert len(test) > 0
        assert sorted([*train.tolist(), *test.tolist()]) == list(range(n))
        if groups is not None:
            assert not {groups[i] for i in train} & {groups[i] for i in test}
    again = make_folds(labels, n_splits=n_splits, groups=groups, random_state=3)
    assert [(a.tolist(), b.tolist()) for a, b in again] == [
        (a.tolist(), b.tolist()) for a, b in folds
    ]


def test_more_folds_than_examples_is_refused_with_the_counts():
    with pytest.raises(InsufficientDataError, match=r"5-fold .* \(a: 2, b: 2\)"):
        make_folds(["a", "b", "a", "b"], n_splits=5)


# --- Wilson intervals -----------------------------------------------------------------------


@settings(CHEAP, max_examples=200)
@given(
    n=st.one_of(st.integers(0, 50), st.integers(0, 10**12)),
    share=st.floats(0, 1),
    confidence=st.floats(1e-9, 1 - 1e-9),
)
def test_wilson_bounds_are_ordered_within_0_and_1_and_hold_the_share(n, share, confidence):
    k = min(n, int(share * n))
    low, high = wilson_interval(k, n, confidence=confidence)
    assert math.isfinite(low) and math.isfinite(high)
    assert 0.0 <= low <= high <= 1.0
    if n:
        assert low <= k / n + 1e-12 and k / n - 1e-12 <= high


# --- choosing questions ---------------------------------------------------------------------


def _proba_rows(draw, n: int, n_labels: int) -> np.ndarray:
    kind = draw(st.sampled_from(["equal", "one_hot", "random"]))
    if kind == "equal" or n_labels == 0:
        return np.full((n, n_labels), 1.0 / max(n_labels, 1))
    if kind == "one_hot":
        return np.eye(n_labels)[[i % n_labels for i in range(n)]]
    raw = np.array(
        draw(st.lists(st.floats(0.0, 1.0), min_size=n * n_labels, max_size=n * n_labels)),
        dtype=float,
    ).reshape(n, n_labels)
    raw[raw.sum(axis=1) == 0] = 1.0
    return raw / raw.sum(axis=1, keepdims=True)


@st.composite
def pools(draw):
    n = draw(st.integers(0, 8))
    n_labels = draw(st.integers(1, 4))
    proba = _proba_rows(draw, n, n_labels)
    texts = draw(st.one_of(st.none(), st.lists(texts_st, min_size=n, max_size=n)))
    return proba, texts


@CHEAP
@given(
    pool=pools(),
    batch_size=st.integers(0, 12),
    audit_rate=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    threshold=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 0.99, 1.0])),
    cold=st.booleans(),
    seed=st.integers(0, 3),
)
def test_picks_are_unique_from_the_pool_and_no_more_than_asked(
    pool, batch_size, audit_rate, threshold, cold, seed
):
    proba, texts = pool
    n = proba.shape[0]
    kwargs = dict(texts=texts, audit_rate=audit_rate, threshold=threshold, random_state=seed)
    if cold:
        picks = select(batch_size, None, n_items=n, **kwargs)
    else:
        picks = select(batch_size, proba, **kwargs)
    again = select(batch_size, None if cold else proba, n_items=n, **kwargs)
    assert picks == again  # the same seed, the same batch
    idx = [p.index for p in picks]
    assert len(idx) == len(set(idx)) and all(0 <= i < n for i in idx)
    assert len(picks) <= batch_size
    assert {p.reason for p in picks} <= ({"cold_start"} if cold else {"uncertain", "audit"})
    for p in picks:
        assert p.uncertainty is None or math.isfinite(p.uncertainty)
    if texts is None and (threshold is None or cold):
        assert len(picks) == min(batch_size, n)  # short only when the pool runs out
    if texts is not None:
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                assert not is_near_duplicate(texts[idx[a]], texts[idx[b]])
                assert text_key(texts[idx[a]]) != text_key(texts[idx[b]])


@CHEAP
@given(pool=pools(), strategy=st.sampled_from(["margin", "least_confidence", "entropy"]))
def test_priorities_are_finite_for_any_probability_rows(pool, strategy):
    proba, _ = pool
    scores = priority(proba, strategy)
    assert scores.shape == (proba.shape[0],) and np.isfinite(scores).all()


def test_priorities_that_are_not_finite_are_refused():
    with pytest.raises(InvalidInputError, match="finite"):
        select(2, None, priorities=np.array([np.nan, 1.0, 0.5]), random_state=0)


# --- aggregating votes ----------------------------------------------------------------------

ITEMS = ["i0", "i1", "i2", "i3"]
PEOPLE = ["ana", "raj", "kim"]


@st.composite
def tallies(draw):
    votes = draw(
        st.lists(
            st.tuples(
                st.sampled_from(ITEMS),
                st.sampled_from(PEOPLE),
                st.one_of(st.none(), st.sampled_from(["x", "y", "z", " x", "1"])),
            ),
            max_size=14,
        )
    )
    kind = draw(st.sampled_from(["votes", "one_annotator", "always_disagree", "all_skip"]))
    if kind == "one_annotator":
        votes = [(i, "ana", y) for i, _, y in votes]
    elif kind == "always_disagree":
        votes = [(i, a, a) for i, a, _ in votes]  # each person always gives their own label
    elif kind == "all_skip":
        votes = [(i, a, None) for i, a, _ in votes]
    extra = draw(st.lists(st.sampled_from(["x", "w"]), max_size=2))
    return Tally.from_votes(votes, labels=extra)


@st.composite
def golds(draw, tally):
    which = draw(st.sampled_from(["none", "every", "some"]))
    items = list(tally.items) + ["not voted on"]
    chosen = (
        []
        if which == "none"
        else items
        if which == "every"
        else draw(st.lists(st.sampled_from(items), unique=True))
    )
    return {i: draw(st.sampled_from(["x", "y", "new"])) for i in chosen}


def _check_aggregation(agg, tally, gold):
    n_items = len(tally.items)
    assert agg.posteriors.shape == (n_items, len(agg.labels))
    assert np.isfinite(agg.posteriors).all() and (agg.posteriors >= 0).all()
    counts = tally.counts()
    for i, r in enumerate(agg.resolved):
        assert r.item == tally.items[i]
        assert math.isfinite(r.posterior) and 0.0 <= r.posterior <= 1.0 + 1e-9
        if counts[i].sum():
            assert agg.posteriors[i].sum() == pytest.approx(1.0)
        if r.item in gold:
            assert r.label == gold[r.item]
        elif r.label is not None:  # a label someone voted for, or a gold label
            assert r.label in tally.labels or r.label in gold.values()
    assert set(agg.labels) <= set(tally.labels) | set(gold.values())
    for value in agg.accuracy.values():
        assert value is None or (math.isfinite(value) and 0.0 <= value <= 1.0 + 1e-9)


@CHEAP
@given(data=st.data())
def test_aggregation_resolves_to_a_voted_or_gold_label_with_finite_posteriors(data):
    tally = data.draw(tallies())
    gold = data.draw(golds(tally))
    maj = majority(tally)
    _check_aggregation(maj, tally, {})
    counts = tally.counts()
    for i, r in enumerate(maj.resolved):
        top = counts[i].max() if counts.shape[1] else 0
        winners = [tally.labels[j] for j in np.flatnonzero(counts[i] == top)] if top else []
        assert r.label == (winners[0] if len(winners) == 1 else None)  # a tie stays undecided
    for accelerate in (False, True):
        ds = dawid_skene(
            tally, gold=gold, accelerate=accelerate, gain_tol=0 if accelerate else 1e-6
        )
        _check_aggregation(ds, tally, {k: v for k, v in gold.items() if k in tally.items})
        again = dawid_skene(
            tally, gold=gold, accelerate=accelerate, gain_tol=0 if accelerate else 1e-6
        )
        assert again.label_of() == ds.label_of()
        np.testing.assert_array_equal(again.posteriors, ds.posteriors)
        for matrix in ds.confusion.values():
            assert np.isfinite(matrix).all()
            np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


@CHEAP
@given(data=st.data())
def test_agreement_figures_are_rates_in_0_1_or_none(data):
    tally = data.draw(tallies())
    gold = data.draw(golds(tally))
    report = agreement(tally, min_shared=1)

    def rate(v):
        return v is None or (math.isfinite(v) and -1e-12 <= v <= 1.0 + 1e-12)

    def coefficient(v):  # kappa, alpha: at most 1, below 0 when people disagree beyond chance
        return v is None or (math.isfinite(v) and v <= 1.0 + 1e-12)

    o = report.overall
    assert rate(o.observed) and coefficient(o.alpha) and coefficient(o.fleiss)
    for p in report.pairs:
        assert rate(p.observed) and coefficient(p.kappa)
        assert p.kappa is not None or p.reason
    for lab in report.per_label:
        assert rate(lab.specific) and coefficient(lab.alpha)
    for a in report.per_annotator:
        assert rate(a.rate) and coefficient(a.kappa)
        assert 0.0 <= a.interval[0] <= a.interval[1] <= 1.0
    for g in gold_accuracy(tally, gold):
        assert rate(g.accuracy) and 0.0 <= g.interval[0] <= g.interval[1] <= 1.0


# --- when to stop ---------------------------------------------------------------------------


@st.composite
def curves(draw):
    sizes = sorted(
        draw(st.lists(st.sampled_from([5, 10, 20, 40, 80, 160]), min_size=3, max_size=10))
    )
    shape = draw(st.sampled_from(["flat", "noisy", "falling", "rising", "zeros", "ones"]))
    n = len(sizes)
    if shape == "flat":
        scores = [0.7] * n
    elif shape == "falling":
        scores = [0.9 - 0.002 * s for s in sizes]
    elif shape == "rising":
        scores = [0.95 - 0.8 * s**-0.5 for s in sizes]
    elif shape in ("zeros", "ones"):
        scores = [float(shape == "ones")] * n
    else:
        scores = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    return sizes, scores


@settings(CHEAP, max_examples=30)
@given(
    curve=curves(),
    n_labels=st.sampled_from([0, 1, 30, 160, 10**6]),
    n_test=st.sampled_from([None, 8, 40]),
)
def test_a_forecast_is_finite_with_its_range_around_it_or_none(curve, n_labels, n_test):
    sizes, scores = curve
    found = extrapolate(sizes, scores, n_labels, n_test=n_test, n_boot=20)
    event("no forecast" if found is None else "forecast")
    if found is None:
        return
    for value in (found.a, found.b, found.c, found.at_n, found.gain):
        assert math.isfinite(value), found
    if found.low is not None:
        assert math.isfinite(found.low) and math.isfinite(found.high)
        assert found.low <= found.gain <= found.high
    text = found.gain_text()
    assert "nan" not in text and "inf" not in text


@CHEAP
@given(
    asked=st.lists(st.tuples(st.floats(0, 1), st.booleans()), max_size=60),
    pool_bits=st.lists(st.one_of(st.integers(0, 59), st.just(-1)), max_size=30),
    flat=st.booleans(),
)
def test_accuracy_now_is_a_range_within_0_1_or_a_reason(asked, pool_bits, flat):
    conf = [0.5 if flat else c for c, _ in asked]
    right = [r for _, r in asked]
    # the unlabeled items' confidences: mostly among the asked ones (-1: not a number)
    pool = [math.nan if b < 0 or not conf else conf[b % len(conf)] for b in pool_bits]
    found = accuracy_now(pool, conf, right, min_asked=4, min_each=1, min_per_bin=1, n_boot=20)
    event(type(found).__name__)
    if isinstance(found, NoAccuracyNow):
        assert found.reason
        return
    assert isinstance(found, AccuracyNow)
    assert 0.0 <= found.low <= found.estimate <= found.high <= 1.0


def test_a_forecast_read_at_zero_labels_is_none_not_infinite():
    """``a − b·0^(−c)`` is −∞: the forecast said gain=inf, at_n=-inf."""
    assert extrapolate([5, 5, 10, 20], [0.7, 0.7, 0.7, 0.7], 0) is None
    assert extrapolate([10, 20, 40, 80], [0.5, 0.6, 0.65, 0.68], 0, n_test=40) is None


def _curve_model():
    return build_pipeline(n_samples=40, n_classes=2)


@settings(FITS, max_examples=8)
@given(rows=labelled_rows(max_size=12, min_labels=2), uniform=st.booleans())
def test_a_learning_curve_on_degenerate_texts_is_finite_or_empty(rows, uniform):
    texts = [t for t, _ in rows] * 4  # 30+ labels: a curve is measured
    labels = [y for _, y in rows] * 4
    marks = [i % 2 == 0 for i in range(len(labels))] if uniform else None
    sizes, scores, n_test = curve_points(texts, labels, _curve_model, uniform=marks)
    event("curve" if scores else "no curve")
    assert len(sizes) == len(scores)
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in scores)
    assert all(n > 0 for n in sizes) and (n_test > 0 or not scores)


def test_a_learning_curve_on_texts_without_a_word_learns_from_their_characters():
    """Replies that are emoji only: a fit drops the word n-grams and trains (the model is
    promoted), but the learning curve's fits kept them and every one failed ("empty
    vocabulary"): scikit-learn's ValueError, logged as a traceback on every retrain, and
    never a forecast."""
    texts = ["👍" * (1 + i % 7) if i % 2 == 0 else "👎" * (1 + i % 7) for i in range(40)]
    sizes, scores, n_test = curve_points(texts, ["up", "down"] * 20, _curve_model)
    assert scores and n_test > 0
    assert all(0.0 <= v <= 1.0 for v in scores)


def test_a_learning_curve_on_one_repeated_text_is_no_curve():
    """One text (and its repeats) cannot be split: the splitter raised instead."""
    assert curve_points(["same"] * 40, ["a", "b"] * 20, _curve_model) == ([], [], 0)
    assert curve_points(["", " "] * 20, ["a", "b"] * 20, _curve_model) == ([], [], 0)


def test_a_learning_curve_whose_every_fit_fails_is_no_curve():
    """Two texts, one per label: every training part holds one label, every fit fails, and
    scikit-learn raises instead of scoring them nan."""
    found = curve_points(["yes please", "no thanks"] * 20, ["y", "n"] * 20, _curve_model)
    assert found == ([], [], 0)


def test_a_learning_curve_with_marks_for_other_labels_is_refused():
    with pytest.raises(InvalidInputError, match="40 texts for 40 labels and 3 uniform marks"):
        curve_points(["t"] * 40, ["a", "b"] * 20, _curve_model, uniform=[True] * 3)


def test_mismatched_stop_sets_and_answers_are_model_errors():
    with pytest.raises(InvalidInputError, match="empty stop set"):
        changed_share([], [])
    with pytest.raises(InvalidInputError, match="stop set changed"):
        changed_share(["a"], [])
    with pytest.raises(InvalidInputError, match="2 confidences for 1 answers"):
        accuracy_now([0.5], [0.5, 0.6], [True])
