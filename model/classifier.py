"""The text classifier: pipeline construction, fit and vectorised scoring.

A :class:`TextClassifier` wraps a scikit-learn pipeline (TF-IDF features into a linear
model) and a *label set*. The label set may contain labels that have no training example
yet: they get probability 0 in every row, and the model still predicts among the labels
it has seen.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import mmap
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import FeatureUnion, Pipeline
from threadpoolctl import ThreadpoolController

from model.errors import InsufficientDataError, InvalidInputError, NotFittedError
from model.names import AUTO_LR_MAX_SAMPLES, DEFAULT_PIPELINE
from model.quiet import quiet

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called as long operations advance."""

LR_SOLVER = "newton-cg"
"""The word + char logistic regressions' solver (see ``_logistic``); ``model_footprint.py`` sets
scikit-learn's default, ``"lbfgs"``, to measure the models fitted before."""
CHAR_MIN_DF = 2
"""A character n-gram is a feature only if it occurs in this many training texts, once there are
:data:`CHAR_MIN_DF_FROM` of them (see ``_char_tfidf``); ``model_footprint.py`` sets 1 to measure
the models fitted before."""
CHAR_MIN_DF_FROM = 100
LEAN_FROM_CLASSES = 10
"""The three lean choices above (Newton-CG, pruned character n-grams, float16 coefficients) apply
from this many classes on. A logistic regression's fit memory and its model file grow with
classes × features: at 89 classes they are what made a 1,000-label fit 1.4 GB and 27 s. With
fewer classes the fit is small as it is (scikit-learn's L-BFGS, every n-gram, coefficients as
fitted), and there the lean choices cost accuracy: about 1 point of label-efficiency AUC on
ag_news (4 classes; ``benchmarks/RESULTS.md``, "Model footprint")."""
COEF_DTYPE: type[np.floating] | None = np.float16
"""Logistic regressions keep their coefficients at this precision (see ``round_coefficients``);
``None`` keeps them as fitted (``model_footprint.py``'s "before" side)."""
MAX_FEATURES = 300_000
"""Each vectorizer keeps at most this many n-grams, the most frequent (ties: scikit-learn's
order). Texts with a unique token each (ticket numbers, order ids) add a word and two word
bigrams per label, so without a cap a model's vocabulary, its file and every process holding it
grow with the labels for ever. Below the cap nothing changes: the same columns in the same
order."""
MAX_CHARS = 20_000
"""Texts are cut to this many characters before featurisation (keeps 50k-char texts cheap)."""

_SCORE_CHUNK = 10_000
_MANY_CLASSES = "The number of unique classes is greater than 50%"
SOLVER_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (ConvergenceWarning, ""),  # no convergence within max_iter
    (RuntimeWarning, "The line search algorithm did not converge"),  # scipy's LineSearchWarning
    (UserWarning, "Line Search failed"),  # Newton-CG's, after it
)
"""The solvers' warnings a fit does not show (see :func:`fit_pipeline`)."""
FIT_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (UserWarning, _MANY_CLASSES),  # many classes and few texts is normal here
    *SOLVER_WARNINGS,
)
"""Every warning a fit does not show: :func:`fit_pipeline`'s, and the learning curve's fits'
(``model.stopping.curve_points``), through :func:`model.quiet.quiet`."""


def _word_tfidf() -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer="word",
        ngram_range=(1, 2),
        sublinear_tf=True,
        max_features=MAX_FEATURES,
        dtype=np.float32,
    )


def lean(n_classes: int | None) -> bool:
    """Whether a fit over ``n_classes`` classes takes the lean choices (:data:`LEAN_FROM_CLASSES`);
    unknown counts as lean."""
    return n_classes is None or n_classes >= LEAN_FROM_CLASSES


def _char_tfidf(n_samples: int | None = None, n_classes: int | None = None) -> TfidfVectorizer:
    """char_wb 2-5-grams; with many classes (:func:`lean`), from :data:`CHAR_MIN_DF_FROM` texts
    on, only those in at least
    :data:`CHAR_MIN_DF` of them. An n-gram seen in one text is a third of the features at 1,000
    labels and nearly all noise: without them a 1,000-label, 89-class fit is 35 % smaller and
    faster with the same test accuracy (``benchmarks/RESULTS.md``, "Model footprint"). Below
    that many texts every n-gram stays, so a vocabulary is never pruned empty."""
    many = n_samples is not None and n_samples >= CHAR_MIN_DF_FROM and lean(n_classes)
    return TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        sublinear_tf=True,
        max_features=MAX_FEATURES,
        min_df=CHAR_MIN_DF if many else 1,
        dtype=np.float32,
    )


def _word_char(n_samples: int | None = None, n_classes: int | None = None) -> FeatureUnion:
    return FeatureUnion([("word", _word_tfidf()), ("char", _char_tfidf(n_samples, n_classes))])


def _logistic(
    C: float, random_state: int, class_weight: str | None = None, n_classes: int | None = None
) -> LogisticRegression:
    """Multinomial logistic regression over word + char n-grams, fitted by Newton-CG with many
    classes (:func:`lean`), by scikit-learn's default L-BFGS with few.

    Same objective as scikit-learn's default L-BFGS, so the same model up to the solvers'
    tolerance, but L-BFGS keeps 25 copies of the n_classes × n_features coefficients: 1.4 GB
    for 1,000 labels × 89 classes, against 0.4 GB with Newton-CG, and a quarter of the time
    (``benchmarks/model_footprint.py``). The word-only pipelines (``hitl demo``'s) have few
    features and keep L-BFGS."""
    return LogisticRegression(
        C=C,
        solver=LR_SOLVER if lean(n_classes) else "lbfgs",
        max_iter=2000,
        class_weight=class_weight,
        random_state=random_state,
    )


def _word_char_lr(
    random_state: int,
    n_samples: int | None = None,
    n_classes: int | None = None,
    class_weight: str | None = None,
) -> Pipeline:
    clf = _logistic(10.0, random_state, class_weight, n_classes)
    return Pipeline([("features", _word_char(n_samples, n_classes)), ("clf", clf)])


def _word_char_lr_balanced(
    random_state: int, n_samples: int | None = None, n_classes: int | None = None
) -> Pipeline:
    return _word_char_lr(random_state, n_samples, n_classes, class_weight="balanced")


def _word_lr(
    random_state: int, n_samples: int | None = None, n_classes: int | None = None
) -> Pipeline:
    return Pipeline(
        [
            ("features", _word_tfidf()),
            ("clf", LogisticRegression(C=1.0, max_iter=2000, random_state=random_state)),
        ]
    )


def _word_lr_c10(
    random_state: int, n_samples: int | None = None, n_classes: int | None = None
) -> Pipeline:
    return Pipeline(
        [
            ("features", _word_tfidf()),
            ("clf", LogisticRegression(C=10.0, max_iter=2000, random_state=random_state)),
        ]
    )


def _word_cnb(
    random_state: int, n_samples: int | None = None, n_classes: int | None = None
) -> Pipeline:
    del random_state, n_samples, n_classes  # ComplementNB is deterministic
    return Pipeline([("features", _word_tfidf()), ("clf", ComplementNB(alpha=0.3))])


def _word_char_sgd(
    random_state: int, n_samples: int | None = None, n_classes: int | None = None
) -> Pipeline:
    return Pipeline(
        [
            ("features", _word_char(n_samples, n_classes)),
            (
                "clf",
                SGDClassifier(
                    loss="modified_huber",
                    alpha=1e-4,
                    max_iter=20,
                    tol=None,
                    random_state=random_state,
                ),
            ),
        ]
    )


def _word_char_auto(
    random_state: int, n_samples: int | None = None, n_classes: int | None = None
) -> Pipeline:
    if n_samples is not None and n_samples > AUTO_LR_MAX_SAMPLES:
        return _word_char_sgd(random_state, n_samples, n_classes)
    return _word_char_lr_balanced(random_state, n_samples, n_classes)


PIPELINES: dict[str, Callable[..., Pipeline]] = {
    "word_char_auto": _word_char_auto,
    "word_char_lr": _word_char_lr,
    "word_char_lr_balanced": _word_char_lr_balanced,
    "word_lr": _word_lr,
    "word_lr_c10": _word_lr_c10,
    "word_cnb": _word_cnb,
    "word_char_sgd": _word_char_sgd,
}
"""Named pipeline configurations; ``benchmarks/model_comparison.py`` compares them."""


def build_pipeline(
    name: str = DEFAULT_PIPELINE,
    *,
    random_state: int = 0,
    n_samples: int | None = None,
    n_classes: int | None = None,
) -> Pipeline:
    """Return an unfitted pipeline for the configuration ``name`` (see :data:`PIPELINES`).

    ``n_samples`` (the training size) picks ``word_char_auto``'s model (the default):
    class-balanced logistic regression on word 1-2-grams + char_wb 2-5-grams was the most
    accurate at 50-1,000 labels in ``benchmarks/RESULTS.md`` but is slow past a few thousand
    labels, where SGD with a modified Huber loss is as accurate and several times faster. In
    every word + char pipeline it also decides whether rare character n-grams are dropped
    (``_char_tfidf``); without it they are kept. ``n_classes`` (the distinct training labels)
    decides whether the fit takes the lean choices (:func:`lean`); unknown, it does.
    """
    try:
        factory = PIPELINES[name]
    except KeyError:
        known = ", ".join(sorted(PIPELINES))
        raise InvalidInputError(f"unknown pipeline {name!r}; choose one of: {known}") from None
    return factory(random_state, n_samples, n_classes)


def prepare_texts(texts: Sequence[str]) -> list[str]:
    """Coerce to ``str`` and cut every text to :data:`MAX_CHARS` characters."""
    return [str(t)[:MAX_CHARS] for t in texts]


# BLAS threads a fit may use. The solvers' BLAS calls are small vector operations (L-BFGS's dot
# products and axpys over the coefficients), which a second OpenBLAS thread does not speed up:
# it spins waiting for work, burning a core that the server's event loop, its scoring child or
# another fit needs. On 2 cores, a 200-text trec fit: the same wall time alone but 1.9× the
# CPU with OpenBLAS's 2 threads; 8.9× the wall time with another such fit beside it
# (benchmarks/RESULTS.md, "Fit threads"; the same model either way).
FIT_BLAS_THREADS = 1


@functools.cache
def _blas() -> ThreadpoolController:
    """The process's thread pools, found once: finding them walks every loaded library
    (~3 ms, each fit). numpy, scipy and scikit-learn are imported by now, so are theirs."""
    return ThreadpoolController()


@contextlib.contextmanager
def fit_threads() -> Iterator[None]:
    """A context in which BLAS uses at most :data:`FIT_BLAS_THREADS` threads: every fit's
    (:func:`fit_pipeline`, and the learning curve's in :mod:`model.stopping`), with this
    thread's BLAS work buffer taken first (:func:`take_blas_buffer`)."""
    with _blas().limit(limits=FIT_BLAS_THREADS, user_api="blas"):
        take_blas_buffer()
        yield


def skip_checks() -> contextlib.AbstractContextManager[None]:
    """A context in which scikit-learn skips two checks it makes on every call, in this thread
    only (its configuration is per thread: enter it in the thread that calls scikit-learn).

    Every fit checks each estimator's parameters against their allowed types and ranges, and
    in a pipeline's ``predict_proba`` every TF-IDF step checks the arguments it passes to
    ``normalize``; every step checks its input for NaN or infinity. Our pipelines' parameters
    are ours and fixed (:data:`PIPELINES`), the arguments scikit-learn's own and TF-IDF
    features finite, so no check can fail here; the results are the same numbers, bit for
    bit. Scoring one text spends a seventh of its CPU in them (1.65 → 1.37 ms); a fit on a
    few dozen labels a tenth (69.6 → 63.4 ms), one on 150–1,000 labels 0.3–3 %, within the
    machine's noise. scikit-learn's ``Parallel`` (the learning curve's, a feature union's)
    carries the setting into its tasks."""
    return config_context(skip_parameter_validation=True, assume_finite=True)


BLAS_BUFFER_BYTES = 32 << 20
"""The work buffer each OpenBLAS (scipy's and numpy's: two libraries) maps for a thread at its
first call that needs one (BUFFER_SIZE, 32 MiB: strace shows ``mmap(NULL, 33554432, …)``).
A fit's thread takes both (L-BFGS-B calls LAPACK's ``dpotrf``, a dense matmul ``dsyrk``),
once, and keeps them."""
_BLAS_BUFFER = threading.local()  # ``taken``: this thread holds its buffer


def take_blas_buffer() -> None:
    """Make scipy's OpenBLAS map this thread's work buffer now, once, or raise MemoryError
    when there is no room for it under the address-space limit (``ulimit -v``).

    OpenBLAS maps it at the thread's first BLAS call that needs one, and when that mapping
    fails scipy's tries again for ever (``blas_memory_alloc``; numpy's gives up after 10 tries
    and ``exit(1)``s the process with a line of its own): under ``ulimit -v 400000`` a
    2,000-label fit that had used the room up by its L-BFGS-B spun a core on failing ``mmap``
    calls, holding the GIL, so nothing else in the process ran, not even a Ctrl-C's handler. Taken
    here, as the fit starts (before its features and matrices take the room), it is there
    for the whole fit; and a limit that leaves no room for it is a MemoryError (the fit's
    "ran out of memory"), found by mapping as much first, not a spin."""
    if getattr(_BLAS_BUFFER, "taken", False):
        return
    from scipy.linalg import lapack

    limited = _address_space_limited()
    # scipy's OpenBLAS (L-BFGS-B's dpotrf), then numpy's (a dense matmul's dsyrk): each maps
    # its buffer at its first LAPACK call in this thread
    for first_call in (lambda: lapack.dpotrf(np.eye(2)), lambda: np.linalg.cholesky(np.eye(2))):
        if limited and not _room_for_blas_buffer():
            raise MemoryError(f"no room for BLAS's {BLAS_BUFFER_BYTES >> 20} MB work buffer")
        first_call()
    _BLAS_BUFFER.taken = True


def _room_for_blas_buffer() -> bool:
    """Whether OpenBLAS could take its buffer here as it does: a mapping of its own, else
    ``malloc`` (which may find the room in this thread's heap, reserved before)."""
    try:
        mmap.mmap(-1, BLAS_BUFFER_BYTES).close()
        return True
    except OSError:
        pass
    try:
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = (ctypes.c_size_t,)
        libc.free.argtypes = (ctypes.c_void_p,)
    except (AttributeError, OSError):
        return False
    taken = libc.malloc(BLAS_BUFFER_BYTES + (8 << 10))  # OpenBLAS's size for malloc
    libc.free(taken)
    return bool(taken)


def _address_space_limited() -> bool:
    """Whether the process runs under an address-space limit (``ulimit -v``)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return False
    return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY


def fit_pipeline(pipeline: Pipeline, texts: Sequence[str], labels: Sequence[str]) -> Pipeline:
    """Fit ``pipeline`` in place on prepared ``texts`` and return it (compacted, below), with
    at most :data:`FIT_BLAS_THREADS` BLAS threads.

    The solvers' own warnings (a line search that failed, no convergence within ``max_iter``)
    are not shown: Python would print them on stderr with scikit-learn's file paths in the
    middle of `hitl retrain`'s output, with nothing there for a user to act on; the model's
    cross-validated score and the promotion gate judge what the fit gave."""
    texts = prepare_texts(texts)
    _fit_words_only_if_any(pipeline, texts)
    # model.quiet, not warnings.catch_warnings: that is process-wide, and a fit beside this one
    # (another thread's) leaving its block would put these warnings back in the middle of it
    with quiet(*FIT_WARNINGS), fit_threads(), skip_checks():
        pipeline.fit(texts, np.asarray([str(v) for v in labels], dtype=object))
    _compact_vocabularies(pipeline)
    round_coefficients(pipeline)
    fast_layout(pipeline)
    return pipeline


def _has_terms(vectorizer: TfidfVectorizer, texts: Sequence[str]) -> bool:
    """Whether ``vectorizer``'s analyzer finds a term in any of ``texts`` (stops at the first:
    for most data, the first text)."""
    analyze = vectorizer.build_analyzer()
    return any(analyze(t) for t in texts)


def _fit_words_only_if_any(pipeline: Pipeline, texts: Sequence[str]) -> None:
    """Leave the word n-grams out of this fit of ``pipeline`` when ``texts`` have no word.

    The word vectorizer's tokens are runs of 2+ letters or digits: replies such as "好", "👍",
    "1" or "?" have none, and an empty vocabulary raises, sinking the whole fit although the
    character n-grams have features. Then the word part of the feature union is set to
    ``"drop"`` (scikit-learn's way to switch a part off: no columns, nothing saved for it) and
    the model learns from the character n-grams alone; a later fit of the same pipeline (a
    clone of it) with words puts the word part back. Data with a word fit exactly as before.
    Data with no feature at all (blank texts; no word for a words-only pipeline) raise
    :class:`InsufficientDataError` saying so, not scikit-learn's "stop words" message."""
    for _, step in pipeline.steps:
        if not isinstance(step, FeatureUnion):
            continue
        parts = dict(step.transformer_list)
        if parts.get("word") == "drop" and "char" in parts:
            parts["word"] = _word_tfidf()  # dropped by an earlier fit, for its data
            step.set_params(word=parts["word"])
        word = parts.get("word")
        if isinstance(word, TfidfVectorizer) and "char" in parts and not _has_terms(word, texts):
            step.set_params(word="drop")
    found = list(vectorizers(pipeline))
    if found and not any(_has_terms(v, texts) for v in found):
        if all(v.analyzer == "word" for v in found):
            raise InsufficientDataError(
                "no training text has a word (2+ letters or digits) to learn from; "
                "a word + char pipeline learns from single characters and symbols too"
            )
        raise InsufficientDataError("every training text is blank: nothing to learn from")


def vectorizers(estimator: Any) -> Iterator[TfidfVectorizer]:
    """The TF-IDF vectorizers of a pipeline, in order (a union's parts that are ``"drop"``
    are not vectorizers, so they are skipped)."""
    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps:
            yield from vectorizers(step)
    elif isinstance(estimator, FeatureUnion):
        for _, part in estimator.transformer_list:
            yield from vectorizers(part)
    elif isinstance(estimator, TfidfVectorizer):
        yield estimator


def round_coefficients(pipeline: Pipeline) -> Pipeline:
    """Round a logistic regression's coefficients to :data:`COEF_DTYPE` (float16) values, kept
    in their fitted dtype; returns ``pipeline``.

    An L2-regularised logistic regression's coefficients are dense: 89 classes × 35,000
    features are 12 MB as float32, most of a model file. Rounded to float16 (3 significant
    digits), the file stores them in half the bytes and the model it loads is exactly the model
    that was fitted, evaluated and used; probabilities move by at most ~3e-4 from the unrounded
    ones. Coefficients beyond float16's range (±65,504) are left as they are."""
    clf = pipeline.steps[-1][1]
    coef = getattr(clf, "coef_", None)
    if COEF_DTYPE is None or not isinstance(clf, LogisticRegression):
        return pipeline
    if not lean(len(getattr(clf, "classes_", ()))):
        return pipeline  # few classes: a small file as fitted (LEAN_FROM_CLASSES)
    if isinstance(coef, np.ndarray) and np.all(np.abs(coef) <= np.finfo(COEF_DTYPE).max):
        clf.coef_ = coef.astype(COEF_DTYPE).astype(coef.dtype)
    return pipeline


def fast_layout(pipeline: Pipeline) -> Pipeline:
    """Give the final step's coefficients the layout that scores one text fast; returns it.

    Scoring computes ``X @ coef_.T``; scipy multiplies a sparse ``X`` by a C-ordered dense
    matrix only, so a C-ordered ``coef_`` (what scikit-learn fits) is copied whole on every
    call: 84 ms for one text with an 89-class SGD model over 100,000 features. Fortran-ordered,
    ``coef_.T`` is C-ordered and nothing is copied; the numbers are the same. A sparse
    ``coef_`` (how a model file stores SGD's) is made dense the same way."""
    clf = pipeline.steps[-1][1]
    for name in ("coef_", "feature_log_prob_"):
        value = getattr(clf, name, None)
        if sparse.issparse(value):
            value = value.toarray()
        if isinstance(value, np.ndarray) and value.ndim == 2 and not value.flags.f_contiguous:
            setattr(clf, name, np.asfortranarray(value))
    return pipeline


def _compact_vocabularies(estimator: Any) -> None:
    """Make every fitted vectorizer in ``estimator`` cheap to save, predictions unchanged.

    A vectorizer with ``max_features`` keeps its vocabulary as numpy integers, and skops
    writes each numpy scalar as a file of its own, checking the archive's whole name list
    before each one: saving a model with 77,000 character n-grams took 145 s (5.8 s with
    plain ints). ``stop_words_`` (the n-grams that ``max_features`` cut) is only there for
    introspection; scikit-learn's documentation says to drop it before saving."""
    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps:
            _compact_vocabularies(step)
    elif isinstance(estimator, FeatureUnion):
        for _, part in estimator.transformer_list:
            _compact_vocabularies(part)
    elif isinstance(estimator, TfidfVectorizer) and hasattr(estimator, "vocabulary_"):
        estimator.vocabulary_ = {term: int(j) for term, j in estimator.vocabulary_.items()}
        if hasattr(estimator, "stop_words_"):
            del estimator.stop_words_


@dataclass(frozen=True)
class Scores:
    """Scores for ``n`` texts, kept as arrays so 100,000 rows stay cheap.

    ``classes`` is the classifier's label set (column order). ``top_indices[i]`` holds
    the indices into ``classes`` of row ``i``'s best ``k`` labels, best first, and
    ``top_proba[i]`` their probabilities. ``labels[i]``/``confidence[i]`` are the first
    of those.
    """

    classes: list[str]
    labels: list[str]
    confidence: np.ndarray
    top_indices: np.ndarray
    top_proba: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def ranked(self, i: int) -> list[tuple[str, float]]:
        """Row ``i``'s top-k as ``[(label, probability), ...]``, best first."""
        return [
            (self.classes[j], float(p))
            for j, p in zip(self.top_indices[i], self.top_proba[i], strict=True)
        ]


@dataclass
class TextClassifier:
    """A text classifier over a fixed label set.

    Build with :meth:`fit`; ``pipeline_`` is the fitted scikit-learn pipeline and
    ``classes`` the full label set (sorted), a superset of the labels seen in training.
    """

    pipeline_name: str = DEFAULT_PIPELINE
    random_state: int = 0
    classes: list[str] = field(default_factory=list)
    pipeline_: Pipeline | None = None

    @classmethod
    def from_pipeline(
        cls,
        pipeline: Pipeline,
        classes: Sequence[str],
        pipeline_name: str = DEFAULT_PIPELINE,
        random_state: int = 0,
    ) -> TextClassifier:
        """Wrap an already fitted pipeline (used by the registry when loading)."""
        seen = {str(c) for c in pipeline.classes_}
        missing = seen - set(classes)
        if missing:
            raise InvalidInputError(
                f"label set lacks labels the pipeline was trained on: {sorted(missing)}"
            )
        return cls(pipeline_name, random_state, sorted(set(classes)), fast_layout(pipeline))

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        label_set: Sequence[str] | None = None,
        sized_for: int | None = None,
    ) -> TextClassifier:
        """Fit on ``texts``/``labels``; ``label_set`` may add labels with no example yet.

        The pipeline's configuration (``word_char_auto``'s logistic regression or SGD, the
        character n-grams' pruning) is the one for ``sized_for`` labels, by default these
        labels' count: cross-validation passes the whole training set's, so every fold fits
        the model that is then fitted on all of it.

        Raises :class:`InsufficientDataError` for fewer than 2 distinct labels and
        :class:`InvalidInputError` when the lengths differ.
        """
        if len(texts) != len(labels):
            raise InvalidInputError(f"{len(texts)} texts but {len(labels)} labels")
        y = [str(label) for label in labels]
        seen = sorted(set(y))
        if len(seen) < 2:
            raise InsufficientDataError(
                f"need at least 2 distinct labels to fit, got {len(seen)} ({len(y)} labeled texts)"
            )
        pipeline = build_pipeline(
            self.pipeline_name,
            random_state=self.random_state,
            n_samples=len(y) if sized_for is None else sized_for,
            n_classes=len(seen),
        )
        self.pipeline_ = fit_pipeline(pipeline, texts, y)
        self.classes = sorted(set(seen) | {str(x) for x in (label_set or ())})
        return self

    @property
    def is_fitted(self) -> bool:
        return self.pipeline_ is not None

    @property
    def trained_classes(self) -> list[str]:
        """The labels the pipeline has seen in training (a subset of ``classes``)."""
        return [str(c) for c in self._fitted().classes_]

    def _fitted(self) -> Pipeline:
        if self.pipeline_ is None:
            raise NotFittedError("this TextClassifier has not been fitted yet; call fit() first")
        return self.pipeline_

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape ``(len(texts), len(classes))``; unseen labels get 0."""
        pipeline = self._fitted()
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float64)
        if len(texts) == 0:
            return out
        column = {c: j for j, c in enumerate(self.classes)}
        cols = [column[str(c)] for c in pipeline.classes_]
        with skip_checks():
            out[:, cols] = pipeline.predict_proba(prepare_texts(texts))
        return out

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable label for each text."""
        proba = self.predict_proba(texts)
        return [self.classes[j] for j in proba.argmax(axis=1)]

    def score(
        self,
        texts: Sequence[str],
        *,
        top_k: int = 3,
        progress: Progress | None = None,
    ) -> Scores:
        """Label, confidence and top-``k`` labels for every text, in one call.

        Works through the texts in chunks of 10,000 to bound memory and calls
        ``progress(done, total)`` after each chunk.
        """
        if top_k < 1:
            raise InvalidInputError(f"top_k must be at least 1, got {top_k}")
        self._fitted()
        n = len(texts)
        k = min(top_k, len(self.classes))
        top_indices = np.empty((n, k), dtype=np.int32)
        top_proba = np.empty((n, k), dtype=np.float64)
        for start in range(0, n, _SCORE_CHUNK):
            stop = min(start + _SCORE_CHUNK, n)
            proba = self.predict_proba(texts[start:stop])
            idx = _top_k(proba, k)
            top_indices[start:stop] = idx
            top_proba[start:stop] = np.take_along_axis(proba, idx, axis=1)
            if progress is not None:
                progress(stop, n)
        labels = [self.classes[j] for j in top_indices[:, 0]] if n else []
        return Scores(
            classes=list(self.classes),
            labels=labels,
            confidence=top_proba[:, 0].copy() if n else np.empty(0),
            top_indices=top_indices,
            top_proba=top_proba,
        )


def _top_k(proba: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` largest values, largest first (ties: lower index)."""
    if k < proba.shape[1]:
        part = np.argpartition(-proba, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(proba.shape[1]), (proba.shape[0], 1))
    vals = np.take_along_axis(proba, part, axis=1)
    order = np.lexsort((part, -vals), axis=1) if part.size else part
    return np.take_along_axis(part, order, axis=1)
