"""Measuring a classifier: cross-validation, metrics, intervals and annotator agreement.

Metrics come from :mod:`sklearn.metrics`. Fleiss' kappa (scikit-learn has none) is a
short numpy implementation of Fleiss (1971), tested against a hand-computed case. The
Wilson interval's z is the standard library's (``statistics.NormalDist``).

scikit-learn is imported in the functions that use it, not at the top: the server's process
imports this module (for the intervals) and with no model yet need not pay ~2 s of imports
before it listens, nor do the commands that only read (``hitl models``, ``hitl accuracy``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from model.errors import InsufficientDataError, InvalidInputError

MAX_FOLDS = 5
# A label with fewer examples than the folds cannot be held out in each of them: it only trains.
# Such labels may hold up to this share of the examples before the folds are made fewer (so
# that they are held out too): two examples of a new label do not turn 5-fold CV into 2-fold,
# and a model measured on half its labels instead of four fifths does not read 7 points lower.
MAX_UNEVALUATED = 0.05
Fold = tuple[np.ndarray, np.ndarray]


FOLDS = "by_text"
"""How the folds are made, in the metrics a model is saved with: a text and its near-duplicates
held out together. A model saved without it was scored with folds that split them, which read
higher on data with repeated texts; reports mark such a model's figures."""


@dataclass(frozen=True)
class ClassReport:
    """Precision, recall and F1 of one label, and how many true examples it had."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ConfusionPair:
    """``count`` examples of ``true`` were predicted as ``predicted``."""

    true: str
    predicted: str
    count: int


@dataclass(frozen=True)
class Evaluation:
    """Metrics of predictions against true labels (out-of-fold in cross-validation)."""

    n_samples: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassReport]
    confusions: list[ConfusionPair]
    n_splits: int = 0
    fold_macro_f1: list[float] = field(default_factory=list)
    # labels never held out (too few examples for the folds): label → its number of examples
    not_evaluated: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (what the registry stores as ``metrics``)."""
        return {
            "n_samples": self.n_samples,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "n_splits": self.n_splits,
            "folds": FOLDS,
            "fold_macro_f1": list(self.fold_macro_f1),
            "not_evaluated": dict(self.not_evaluated),
            "per_class": {
                label: {
                    "precision": r.precision,
                    "recall": r.recall,
                    "f1": r.f1,
                    "support": r.support,
                }
                for label, r in self.per_class.items()
            },
            "confusions": [[c.true, c.predicted, c.count] for c in self.confusions],
        }


def evaluate_predictions(
    y_true: Sequence[str], y_pred: Sequence[str], *, max_confusions: int = 20
) -> Evaluation:
    """Accuracy, macro-F1, per-class report and the most frequent confusions.

    Macro-F1 and the per-class report are over the classes present in ``y_true``: a class
    with no true example here has no recall to measure, and counting it as F1 = 0 would
    punish a model for knowing a class that this sample does not hold (one label of a new
    class is never held out, see :func:`make_folds`). A prediction of such a class is still
    an error: it lowers the true class's recall, the accuracy, and is listed in
    ``confusions``. Undefined precision (a class never predicted) counts as 0.
    """
    if len(y_true) != len(y_pred):
        raise InvalidInputError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise InsufficientDataError("cannot evaluate zero predictions")
    from sklearn.metrics import (  # here: see the module docstring
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    t = [str(v) for v in y_true]
    p = [str(v) for v in y_pred]
    true_classes = sorted(set(t))
    classes = sorted(set(t) | set(p))  # the confusions include predictions of absent classes
    prec, rec, f1, support = precision_recall_fscore_support(
        t, p, labels=true_classes, zero_division=0
    )
    per_class = {
        c: ClassReport(float(prec[i]), float(rec[i]), float(f1[i]), int(support[i]))
        for i, c in enumerate(true_classes)
    }
    cm = confusion_matrix(t, p, labels=classes)
    np.fill_diagonal(cm, 0)
    rows, cols = np.nonzero(cm)
    pairs = [
        ConfusionPair(classes[i], classes[j], int(cm[i, j]))
        for i, j in zip(rows, cols, strict=True)
    ]
    pairs.sort(key=lambda c: (-c.count, c.true, c.predicted))
    return Evaluation(
        n_samples=len(t),
        accuracy=float(accuracy_score(t, p)),
        macro_f1=float(f1_score(t, p, labels=true_classes, average="macro", zero_division=0)),
        per_class=per_class,
        confusions=pairs[:max_confusions],
    )


def n_splits_for(labels: Sequence[str], groups: Sequence[Hashable] | None = None) -> int:
    """Folds for ``labels``: the most (at most 5) for which the examples of the labels too
    small to be held out in every fold (fewer examples than folds, at least 2) are at most
    ``MAX_UNEVALUATED`` of all; at least 2 classes must have that many examples. A label much
    rarer than the others therefore does not set the folds of all: it only trains
    (:func:`make_folds`). With ``groups`` (one per label, e.g. the normalised text), the
    examples of a label are its groups: near-duplicates count once, as they are held out
    together.

    Raises :class:`InsufficientDataError` unless at least 2 classes have ≥ 2 examples.
    """
    sizes = class_sizes(labels, groups)
    return _choose_k(sizes, merged=sum(sizes.values()) < len(labels))


def class_sizes(labels: Sequence[str], groups: Sequence[Hashable] | None = None) -> Counter[str]:
    """Examples per label as the folds count them: its groups (each group under its most
    common label), or its labels without ``groups``."""
    return Counter(_groups_of(labels, groups)[1])


def _choose_k(counts: Counter[str], *, merged: bool = False) -> int:
    usable = [n for n in counts.values() if n >= 2]
    if len(usable) < 2:
        once = " (a text and its near-duplicates count once)" if merged else ""
        raise InsufficientDataError(
            f"cross-validation needs at least 2 classes with at least 2 examples each; "
            f"got {_describe_counts(counts)}{once}"
        )
    total = sum(counts.values())
    for k in range(MAX_FOLDS, 2, -1):
        if sum(1 for n in usable if n >= k) < 2:
            continue
        if sum(n for n in usable if n < k) <= MAX_UNEVALUATED * total:
            return k
    return 2


def _groups_of(
    labels: Sequence[str], groups: Sequence[Hashable] | None
) -> tuple[np.ndarray, list[str]]:
    """Each label's group (numbered in order of first appearance) and each group's label: the
    most common among its rows (a tie: the first in sorted order). Without ``groups`` each row
    is its own group. One pass with a dict over the keys: linear in the labels."""
    ys = [str(v) for v in labels]
    if groups is None:
        return np.arange(len(ys), dtype=np.intp), ys
    if len(groups) != len(ys):
        raise InvalidInputError(f"{len(groups)} groups for {len(ys)} labels")
    number: dict[Hashable, int] = {}
    index = np.fromiter(
        (number.setdefault(g, len(number)) for g in groups), dtype=np.intp, count=len(ys)
    )
    group_label: list[str | None] = [None] * len(number)
    mixed: dict[int, Counter[str]] = {}
    for g, y in zip(index.tolist(), ys, strict=True):
        if group_label[g] is None:
            group_label[g] = y
        elif g in mixed or y != group_label[g]:
            mixed.setdefault(g, Counter()).update([y])
    sizes = np.bincount(index, minlength=len(number)) if mixed else None
    for g, others in mixed.items():  # a text labelled differently: its most common label
        first = group_label[g]
        assert first is not None and sizes is not None
        others[first] += int(sizes[g]) - sum(others.values())
        top = max(others.values())
        group_label[g] = min(label for label, n in others.items() if n == top)
    return index, [str(label) for label in group_label]


def _describe_counts(counts: Counter[str]) -> str:
    if not counts:
        return "no labels"
    shown = ", ".join(f"{label}: {n}" for label, n in counts.most_common(5))
    more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
    return f"{len(counts)} class(es) ({shown}{more})"


def make_folds(
    labels: Sequence[str],
    *,
    n_splits: int | None = None,
    random_state: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> list[Fold]:
    """Stratified folds as ``(train_idx, test_idx)`` pairs of positions in ``labels``.

    ``groups`` (one per label; training passes ``model.selection.text_key`` of each text)
    keeps the labels of a group in one fold: a text and its case, spacing or punctuation
    variants are never on both sides of a fold, where the model would be scored on a text it
    was trained on. The groups are stratified by their label (the most common of their rows)
    with scikit-learn's ``StratifiedKFold`` over the groups: without repeated texts these are
    exactly the row-level folds of before. (``StratifiedGroupKFold`` balances each fold's rows
    instead, but walks the groups in Python, ~20 s at 50,000 labels against 0.06 s here.)

    ``n_splits`` defaults to :func:`n_splits_for`. Groups of labels with fewer groups than
    ``n_splits`` cannot be stratified; they are never held out and sit in every training fold
    (so scikit-learn never warns about a too-small class); :func:`cross_validate` names them.
    """
    y = np.asarray([str(v) for v in labels], dtype=object)
    index, group_label = _groups_of(y, groups)
    counts = Counter(group_label)
    merged = len(group_label) < len(y)
    k = _choose_k(counts, merged=merged) if n_splits is None else n_splits
    if k < 2:
        raise InvalidInputError(f"n_splits must be at least 2, got {k}")
    gy = np.asarray(group_label, dtype=object)
    common = np.flatnonzero(np.fromiter((counts[v] >= k for v in group_label), bool, len(gy)))
    if len(set(gy[common].tolist())) < 2:
        raise InsufficientDataError(
            f"{k}-fold cross-validation needs at least 2 classes with at least {k} examples; "
            f"got {_describe_counts(counts)}"
        )
    from sklearn.model_selection import StratifiedKFold

    fold_of = np.full(len(gy), -1, dtype=np.intp)  # a group's fold; -1: never held out
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
    for f, (_, test) in enumerate(skf.split(np.zeros(len(common)), gy[common])):
        fold_of[common[test]] = f
    row_fold = fold_of[index]
    return [(np.flatnonzero(row_fold != f), np.flatnonzero(row_fold == f)) for f in range(k)]


def cross_validate(
    fit_predict: Callable[[list[int], list[int]], list[str]],
    labels: Sequence[str],
    folds: Sequence[Fold],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Evaluate out-of-fold predictions.

    ``fit_predict(train_idx, test_idx)`` fits on the training positions and returns
    predictions for the test positions. The returned :class:`Evaluation` pools every
    held-out prediction and also lists each fold's macro-F1 (each over the classes held out
    in that fold, as :func:`evaluate_predictions`) and the labels no fold held out, with
    their numbers of examples (``not_evaluated``: too few to hold out, see
    :func:`make_folds`).
    """
    from sklearn.metrics import f1_score

    y = [str(v) for v in labels]
    y_true: list[str] = []
    y_pred: list[str] = []
    fold_f1: list[float] = []
    for n_done, (train, test) in enumerate(folds, start=1):
        pred = fit_predict([int(i) for i in train], [int(i) for i in test])
        truth = [y[i] for i in test]
        fold_f1.append(
            float(
                f1_score(truth, pred, labels=sorted(set(truth)), average="macro", zero_division=0)
            )
        )
        y_true += truth
        y_pred += list(pred)
        if progress is not None:
            progress(n_done, len(folds))
    ev = evaluate_predictions(y_true, y_pred)
    held = set(y_true)
    never = Counter(v for v in y if v not in held)
    return Evaluation(
        n_samples=ev.n_samples,
        accuracy=ev.accuracy,
        macro_f1=ev.macro_f1,
        per_class=ev.per_class,
        confusions=ev.confusions,
        n_splits=len(folds),
        fold_macro_f1=fold_f1,
        not_evaluated={label: never[label] for label in sorted(never)},
    )


def wilson_interval(n_correct: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion of ``n_correct`` out of ``n``.

    ``n == 0`` gives ``(0.0, 1.0)``: nothing is known yet.
    """
    if n < 0 or not 0 <= n_correct <= max(n, 0):
        raise InvalidInputError(f"need 0 ≤ n_correct ≤ n, got {n_correct} of {n}")
    if not 0 < confidence < 1:
        raise InvalidInputError(f"confidence must be between 0 and 1, got {confidence}")
    if n == 0:
        return 0.0, 1.0
    if n_correct == n:  # closed forms avoid rounding just below 1 / above 0
        return _wilson(n_correct, n, confidence)[0], 1.0
    if n_correct == 0:
        return 0.0, _wilson(n_correct, n, confidence)[1]
    return _wilson(n_correct, n, confidence)


def _wilson(n_correct: int, n: int, confidence: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    phat = n_correct / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cohens_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two annotators who labeled the same items (scikit-learn).

    When chance agreement is total (both gave one and the same label throughout) kappa
    is undefined; we return 1.0 if they agree everywhere.
    """
    if len(a) != len(b):
        raise InvalidInputError(f"annotator lists differ in length: {len(a)} and {len(b)}")
    if len(a) == 0:
        raise InsufficientDataError("cannot compute agreement on zero items")
    x = [str(v) for v in a]
    y = [str(v) for v in b]
    labels = sorted(set(x) | set(y))
    if len(labels) == 1:
        return 1.0  # both always gave the same single label
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(x, y, labels=labels, replace_undefined_by=1.0))


def fleiss_kappa(ratings: Sequence[Sequence[str]]) -> float:
    """Fleiss' kappa for items each labeled by the same number (≥ 2) of annotators.

    ``ratings[i]`` is the list of labels item ``i`` received. When every rating is the
    same label, expected agreement is 1 and kappa is undefined; we return 1.0.
    """
    if len(ratings) == 0:
        raise InsufficientDataError("cannot compute agreement on zero items")
    n_raters = {len(r) for r in ratings}
    if len(n_raters) != 1:
        raise InvalidInputError(
            f"every item needs the same number of ratings, got {sorted(n_raters)}"
        )
    m = n_raters.pop()
    if m < 2:
        raise InsufficientDataError(f"need at least 2 ratings per item, got {m}")
    categories = sorted({str(v) for r in ratings for v in r})
    col = {c: j for j, c in enumerate(categories)}
    table = np.zeros((len(ratings), len(categories)), dtype=np.float64)
    for i, r in enumerate(ratings):
        for v in r:
            table[i, col[str(v)]] += 1
    return fleiss_kappa_from_table(table)


def fleiss_kappa_from_table(table: np.ndarray) -> float:
    """Fleiss' kappa from an ``(items, categories)`` table of rating counts."""
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] == 0:
        raise InvalidInputError(f"need a non-empty 2-D count table, got shape {t.shape}")
    m = t.sum(axis=1)
    if not np.all(m == m[0]) or m[0] < 2:
        raise InvalidInputError("every item needs the same number (≥ 2) of ratings")
    n_items, n_raters = t.shape[0], m[0]
    p_j = t.sum(axis=0) / (n_items * n_raters)
    p_i = ((t * t).sum(axis=1) - n_raters) / (n_raters * (n_raters - 1))
    p_bar = p_i.mean()
    p_e = float((p_j * p_j).sum())
    if math.isclose(p_e, 1.0):
        return 1.0
    return float((p_bar - p_e) / (1 - p_e))
