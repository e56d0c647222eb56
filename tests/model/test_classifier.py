import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from threadpoolctl import threadpool_info, threadpool_limits

from model import classifier
from model.classifier import (
    AUTO_LR_MAX_SAMPLES,
    CHAR_MIN_DF_FROM,
    LEAN_FROM_CLASSES,
    MAX_CHARS,
    PIPELINES,
    TextClassifier,
    build_pipeline,
    round_coefficients,
)
from model.errors import InsufficientDataError, InvalidInputError, NotFittedError
from model.stopping import curve_points
from tests.model.conftest import make_texts

MANY = [f"c{i}" for i in range(LEAN_FROM_CLASSES)]


@pytest.fixture
def many_classes():
    """LEAN_FROM_CLASSES classes: enough for the lean fit (Newton-CG, pruning, float16)."""
    return make_texts(np.random.default_rng(1), MANY, 6)


def test_fit_predicts_the_class_of_its_own_vocabulary(toy):
    texts, labels = toy
    clf = TextClassifier().fit(texts, labels)
    assert clf.classes == ["ant", "bee", "cat"]
    assert clf.predict(["antw1 antw2 the", "catw3 catw0 of"]) == ["ant", "cat"]


def test_probabilities_sum_to_one_and_follow_the_label_set(toy):
    texts, labels = toy
    clf = TextClassifier().fit(texts, labels)
    proba = clf.predict_proba(texts[:5])
    assert proba.shape == (5, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_unseen_label_gets_probability_zero_and_model_still_predicts(toy):
    texts, labels = toy
    clf = TextClassifier().fit(texts, labels, label_set=["ant", "bee", "cat", "dog"])
    assert clf.classes == ["ant", "bee", "cat", "dog"]
    assert clf.trained_classes == ["ant", "bee", "cat"]
    proba = clf.predict_proba(["dog dog dog", "beew1 beew2"])
    np.testing.assert_array_equal(proba[:, 3], [0.0, 0.0])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert clf.predict(["beew1 beew2"]) == ["bee"]


def test_one_class_is_refused_with_a_clear_error():
    with pytest.raises(InsufficientDataError, match="at least 2 distinct labels"):
        TextClassifier().fit(["a", "b", "c"], ["x", "x", "x"])


def test_empty_training_data_is_refused():
    with pytest.raises(InsufficientDataError, match="got 0"):
        TextClassifier().fit([], [])


def test_lengths_must_match():
    with pytest.raises(InvalidInputError, match="2 texts but 1 labels"):
        TextClassifier().fit(["a", "b"], ["x"])


def test_unknown_pipeline_name_lists_the_known_ones():
    with pytest.raises(InvalidInputError, match="unknown pipeline 'nope'; choose one of: "):
        build_pipeline("nope")


def test_unfitted_classifier_says_to_fit_first():
    with pytest.raises(NotFittedError, match="call fit"):
        TextClassifier().predict(["x"])


def test_two_labels_with_one_example_each_is_enough_to_fit():
    clf = TextClassifier().fit(["good", "bad"], ["pos", "neg"])
    assert clf.predict(["good"]) == ["pos"]


def test_150_classes_fit_and_predict():
    rng = np.random.default_rng(1)
    classes = [f"c{i:03d}" for i in range(150)]
    texts, labels = make_texts(rng, classes, 2, n_words=4)
    clf = TextClassifier().fit(texts, labels)
    assert len(clf.classes) == 150
    pred = clf.predict(texts)
    assert np.mean(np.array(pred) == np.array(labels)) > 0.9


def test_unicode_and_very_long_texts_are_scored(toy):
    texts, labels = toy
    odd = ["Ünïcödé façade naïve", "日本語のテキスト", "🙂🚀🔥", "", "  \n\t ", "x" * 50_000]
    clf = TextClassifier().fit(texts + odd[:3], labels + ["ant", "bee", "cat"])
    scores = clf.score(odd + ["antw1 " * 10_000])
    assert len(scores) == 7
    assert np.all((scores.confidence > 0) & (scores.confidence <= 1))
    assert scores.labels[1] == "bee"
    assert scores.labels[-1] == "ant"


def test_long_texts_are_cut_before_featurisation(toy):
    texts, labels = toy
    clf = TextClassifier().fit(texts, labels)
    head = "catw1 catw2 " * (MAX_CHARS // 12 + 1)
    np.testing.assert_allclose(
        clf.predict_proba([head + "antw1 " * 5_000]), clf.predict_proba([head])
    )


def test_empty_list_scores_to_empty_arrays(toy):
    texts, labels = toy
    clf = TextClassifier().fit(texts, labels)
    assert clf.predict_proba([]).shape == (0, 3)
    scores = clf.score([])
    assert len(scores) == 0
    assert scores.top_indices.shape == (0, 3)
    assert scores.confidence.shape == (0,)


def test_score_matches_predict_proba_and_ranks_best_first(toy):
    texts, labels = toy
    clf = TextClassifier().fit(texts, labels, label_set=["ant", "bee", "cat", "dog"])
    proba = clf.predict_proba(texts)
    scores = clf.score(texts, top_k=2)
    np.testing.assert_allclose(scores.confidence, proba.max(axis=1))
    assert scores.labels == clf.predict(texts)
    assert scores.top_proba.shape == (len(texts), 2)
    assert np.all(scores.top_proba[:, 0] >= scores.top_proba[:, 1])
    label, p = scores.ranked(0)[1]
    assert p == pytest.approx(proba[0, clf.classes.index(label)])


def test_top_k_larger_than_the_label_set_is_capped(toy):
    texts, labels = toy
    scores = TextClassifier().fit(texts, labels).score(texts[:2], top_k=10)
    assert scores.top_indices.shape == (2, 3)
    assert [sorted(r) for r in scores.top_indices.tolist()] == [[0, 1, 2], [0, 1, 2]]


def test_score_reports_progress_per_chunk(toy, monkeypatch: pytest.MonkeyPatch):
    """Chunks of 10,000 texts; the chunking itself is checked with chunks of 10 (the same
    code path, without scoring 24,000 texts: 1 CPU-s)."""
    assert classifier._SCORE_CHUNK == 10_000
    monkeypatch.setattr(classifier, "_SCORE_CHUNK", 10)
    texts, labels = toy
    calls = []
    clf = TextClassifier().fit(texts, labels)
    scores = clf.score(texts, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(10, 24), (20, 24), (24, 24)]
    assert scores.labels == list(clf.predict(texts))  # every chunk lands in its own rows


def test_auto_pipeline_switches_to_sgd_for_large_training_sets():
    small = build_pipeline("word_char_auto", n_samples=AUTO_LR_MAX_SAMPLES)
    large = build_pipeline("word_char_auto", n_samples=AUTO_LR_MAX_SAMPLES + 1)
    assert isinstance(small.named_steps["clf"], LogisticRegression)
    assert small.named_steps["clf"].class_weight == "balanced"
    assert isinstance(large.named_steps["clf"], SGDClassifier)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_named_pipeline_fits_and_gives_probabilities(name, toy):
    texts, labels = toy
    proba = TextClassifier(name).fit(texts, labels).predict_proba(texts)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_fitted_coefficients_are_laid_out_so_one_text_is_scored_without_copying_them(name, toy):
    """``X @ coef_.T`` with a sparse ``X`` copies a C-ordered ``coef_`` whole on every call
    (84 ms a text for an 89-class SGD model); Fortran-ordered, ``coef_.T`` is used as it is."""
    texts, labels = toy
    clf = TextClassifier(name).fit(texts, labels)
    final = clf.pipeline_[-1]
    weights = final.coef_ if hasattr(final, "coef_") else final.feature_log_prob_
    assert weights.flags.f_contiguous and weights.T.flags.c_contiguous
    reference = build_pipeline(name, n_classes=3).fit(texts, labels)  # scikit-learn's layout
    round_coefficients(reference)
    np.testing.assert_array_equal(clf.predict_proba(texts), reference.predict_proba(texts))


@pytest.mark.parametrize("name", ["word_char_lr_balanced", "word_char_lr"])
def test_logistic_regression_fits_the_model_lbfgs_would_fit_with_less_memory(name, many_classes):
    """Newton-CG minimises the same objective as scikit-learn's default L-BFGS, which keeps 25
    copies of the coefficients (1.4 GB for 1,000 labels × 89 classes); run to a tight tolerance,
    both land on the same model."""
    texts, labels = many_classes
    clf = TextClassifier(name).fit(texts, labels)
    assert clf.pipeline_[-1].solver == "newton-cg"
    reference = build_pipeline(name)
    reference.set_params(clf__solver="lbfgs", clf__tol=1e-10)
    reference.fit(texts, labels)
    np.testing.assert_allclose(clf.predict_proba(texts), reference.predict_proba(texts), atol=1e-3)


def char_vocabulary(clf: TextClassifier) -> dict[str, int]:
    return dict(clf.pipeline_.named_steps["features"].transformer_list)["char"].vocabulary_


@pytest.mark.parametrize("name", ["word_char_auto", "word_char_lr", "word_char_sgd"])
def test_a_character_ngram_of_one_text_is_no_feature_from_100_texts_on(name):
    """An n-gram seen in one training text is a third of the features at 1,000 labels and
    nearly all noise; with fewer texts than ``CHAR_MIN_DF_FROM`` every n-gram stays."""
    texts, labels = make_texts(np.random.default_rng(3), MANY, CHAR_MIN_DF_FROM // len(MANY))
    assert len(texts) == CHAR_MIN_DF_FROM
    texts[0] += " qzxjv"  # in this text only
    texts[1] += " wkyp"
    texts[2] += " wkyp"  # in two texts
    many = char_vocabulary(TextClassifier(name).fit(texts, labels))
    assert "qzx" not in many and "wky" in many
    few = char_vocabulary(TextClassifier(name).fit(texts[:99], labels[:99]))
    assert "qzx" in few and "wky" in few


@pytest.mark.parametrize("name", ["word_char_auto", "word_char_lr", "word_lr"])
def test_logistic_regression_coefficients_are_kept_at_float16_precision(name, many_classes):
    """So the model file holds them in 2 bytes each and loads exactly the model that was
    fitted and used (``model/modelfile.py``)."""
    texts, labels = many_classes
    coef = TextClassifier(name).fit(texts, labels).pipeline_[-1].coef_
    assert coef.dtype in (np.float32, np.float64)
    np.testing.assert_array_equal(coef.astype(np.float16).astype(coef.dtype), coef)
    unrounded = build_pipeline(name).fit(texts, labels)[-1].coef_
    assert not np.array_equal(unrounded, coef)
    np.testing.assert_allclose(coef, unrounded, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("name", ["word_char_auto", "word_char_lr", "word_char_lr_balanced"])
def test_with_few_classes_the_fit_is_scikit_learns_own_with_every_ngram_and_exact_coefficients(
    name,
):
    """Below LEAN_FROM_CLASSES the fit is small as it is, and the lean choices cost accuracy
    (about a point of label-efficiency AUC on 4-class ag_news): L-BFGS, every character n-gram,
    coefficients as fitted, the same model the pipeline fits unmodified."""
    few = MANY[: LEAN_FROM_CLASSES - 1]
    texts, labels = make_texts(np.random.default_rng(3), few, CHAR_MIN_DF_FROM // len(few) + 1)
    texts[0] += " qzxjv"  # in one text only
    clf = TextClassifier(name).fit(texts, labels)
    final = clf.pipeline_[-1]
    assert final.solver == "lbfgs"
    assert "qzx" in char_vocabulary(clf)
    plain = build_pipeline(name)  # unknown class count: lean, as before this gate
    plain.set_params(clf__solver="lbfgs", features__char__min_df=1)
    plain.fit(texts, labels)
    assert not np.array_equal(final.coef_.astype(np.float16).astype(final.coef_.dtype), final.coef_)
    np.testing.assert_array_equal(final.coef_, plain[-1].coef_)
    np.testing.assert_array_equal(clf.predict_proba(texts), plain.predict_proba(texts))


def test_from_lean_from_classes_on_the_fit_is_lean(many_classes):
    texts, labels = many_classes
    final = TextClassifier("word_char_lr").fit(texts, labels).pipeline_[-1]
    assert final.solver == "newton-cg"
    fewer = [t for t, y in zip(texts, labels, strict=True) if y != MANY[-1]]
    final = TextClassifier("word_char_lr").fit(fewer, [y for y in labels if y != MANY[-1]])
    assert final.pipeline_[-1].solver == "lbfgs"


def word_vocabulary(clf: TextClassifier) -> dict[str, int]:
    features = clf.pipeline_.named_steps["features"]
    return dict(getattr(features, "transformer_list", [("word", features)]))["word"].vocabulary_


@pytest.mark.parametrize("name", ["word_char_auto", "word_char_sgd", "word_lr"])
def test_a_vocabulary_stops_growing_at_the_cap_when_each_text_brings_a_new_token(name, monkeypatch):
    """Ticket numbers: each label adds a word and two bigrams; the cap keeps the most frequent."""
    monkeypatch.setattr(classifier, "MAX_FEATURES", 300)
    texts, labels = make_texts(np.random.default_rng(5), MANY[:4], 100)
    texts = [f"{text} ticket #{48_000 + i}" for i, text in enumerate(texts)]
    clf = TextClassifier(name).fit(texts, labels)
    words = word_vocabulary(clf)
    assert len(words) == 300
    assert "ticket" in words and "48007" not in words
    if name != "word_lr":
        assert len(char_vocabulary(clf)) == 300
    assert np.mean(np.array(clf.predict(texts)) == np.array(labels)) > 0.9  # it still learns


@pytest.mark.parametrize("name", ["word_char_auto", "word_char_lr", "word_lr"])
def test_below_the_cap_the_model_is_the_uncapped_one(name, toy):
    texts, labels = toy
    clf = TextClassifier(name).fit(texts, labels)
    plain = build_pipeline(name, n_samples=len(texts), n_classes=len(set(labels)))
    caps = [key for key in plain.get_params() if key.endswith("max_features")]
    assert caps
    plain.set_params(**dict.fromkeys(caps, None)).fit(texts, labels)
    np.testing.assert_array_equal(clf.pipeline_[-1].coef_, plain[-1].coef_)
    np.testing.assert_array_equal(clf.predict_proba(texts), plain.predict_proba(texts))


def test_sgd_coefficients_are_kept_as_fitted(toy):
    texts, labels = toy
    coef = TextClassifier("word_char_sgd").fit(texts, labels).pipeline_[-1].coef_
    unrounded = build_pipeline("word_char_sgd").fit(texts, labels)[-1].coef_
    np.testing.assert_array_equal(coef, unrounded)


def _blas_threads() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_a_fit_uses_one_blas_thread_whatever_the_process_allows(toy, monkeypatch):
    """OpenBLAS's spare threads spin through a fit's small vector operations and take a core
    from the server's event loop and its other children (model.classifier.FIT_BLAS_THREADS)."""
    seen = []
    fit = LogisticRegression.fit

    def watched_fit(self, *args, **kwargs):  # scikit-learn's own fit, its thread count noted
        seen.append(_blas_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", watched_fit)
    with threadpool_limits(2, user_api="blas"):
        assert _blas_threads() == {2}
        TextClassifier().fit(*toy)
        assert _blas_threads() == {2}  # the process's own setting is back after the fit
    assert seen == [{1}]


def test_a_fit_does_not_show_the_solvers_warnings(monkeypatch: pytest.MonkeyPatch):
    """A hard fit makes scikit-learn's solvers warn (seen in `hitl retrain` on texts of random
    letters: "LineSearchWarning: The line search algorithm did not converge", then "Line
    Search failed"), which Python prints on stderr with the library's file paths. Here the
    logistic regression warns as those solvers do, before it fits; a warning of any other
    kind still shows."""
    import warnings

    from scipy.optimize._linesearch import LineSearchWarning  # what Newton-CG warns with
    from sklearn.exceptions import ConvergenceWarning

    fit = LogisticRegression.fit

    def warning_fit(self, X, y, sample_weight=None):  # noqa: N803 (scikit-learn's names)
        warnings.warn("The line search algorithm did not converge", LineSearchWarning, stacklevel=2)
        warnings.warn("Line Search failed", UserWarning, stacklevel=2)
        warnings.warn(
            "lbfgs failed to converge after 100 iteration(s)", ConvergenceWarning, stacklevel=2
        )
        warnings.warn("something else", UserWarning, stacklevel=2)
        return fit(self, X, y, sample_weight)

    monkeypatch.setattr(LogisticRegression, "fit", warning_fit)
    texts = ["refund my invoice", "charged twice", "app crashes", "blank screen"] * 3
    labels = ["billing", "billing", "bug", "bug"] * 3
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        TextClassifier().fit(texts, labels)
    assert [str(w.message) for w in shown] == ["something else"]


def test_scoring_skips_scikit_learns_argument_and_finiteness_checks_in_the_calling_thread(
    toy, monkeypatch: pytest.MonkeyPatch
):
    """Scoring one text spent a seventh of its CPU in scikit-learn's checks of ``normalize``'s
    arguments and of every step's input for NaN (model.classifier.skip_checks). Its
    configuration is per thread, so the scoring thread itself (here a worker thread, as the
    server's) must enter it; the caller's configuration is left as it was."""
    import threading

    import sklearn
    from sklearn.preprocessing import normalize
    from sklearn.utils import _param_validation

    clf = TextClassifier().fit(*toy)
    checked, seen = [], []
    check = _param_validation.validate_parameter_constraints
    scores = LogisticRegression.predict_proba

    def counted_check(*args, **kwargs):  # scikit-learn's own argument check, each call noted
        checked.append(kwargs.get("caller_name"))
        return check(*args, **kwargs)

    def watched_scores(self, X):  # noqa: N803 (scikit-learn's names)
        config = sklearn.get_config()
        seen.append((config["skip_parameter_validation"], config["assume_finite"]))
        return scores(self, X)

    monkeypatch.setattr(_param_validation, "validate_parameter_constraints", counted_check)
    monkeypatch.setattr(LogisticRegression, "predict_proba", watched_scores)
    before = sklearn.get_config()
    worker = threading.Thread(target=clf.predict_proba, args=(["a text to score"],))
    worker.start()
    worker.join()
    assert seen == [(True, True)]
    assert checked == []
    assert sklearn.get_config() == before
    normalize([[1.0, 2.0]])  # outside scoring the check runs, and is seen here
    assert checked == ["normalize"]

    # a fit, and the learning curve's fits (scikit-learn's own loop), check nothing either
    checked.clear()
    fitting = threading.Thread(target=TextClassifier().fit, args=toy)
    fitting.start()
    fitting.join()
    texts, labels = toy
    curve = curve_points(list(texts) * 8, list(labels) * 8, lambda: build_pipeline())
    assert curve.scores and checked == []
