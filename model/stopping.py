"""When to stop labeling: stabilizing predictions and a learning-curve extrapolation.

*Stabilizing predictions* (Bloodgood & Vijay-Shanker 2009): every model update predicts a fixed
*stop set* of items (a deterministic sample, up to ``STOP_SET_SIZE``); Cohen's kappa between
the predictions of successive models measures how much the model still changes. The signal
fires once the kappa has stayed at or above ``KAPPA_THRESHOLD`` (their 0.99) over the last
``WINDOW`` (3) updates: more labels are then unlikely to change the model much.

*Learning-curve extrapolation*: accuracy against the number of labels, measured on subsets of
the labels (scikit-learn's ``learning_curve``) or taken from a history of evaluations, is fitted
with an inverse power law ``acc(n) = a − b·n^(−c)`` (``scipy.optimize.curve_fit``); the gain
from ``n`` to ``n + 500`` labels is read off the fit, and its range from bootstrap refits (the
points resampled; the fit's covariance understates how loose a saturating curve is).

Pure: numbers in, dataclasses out; the randomness is a ``random_state``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit
from sklearn.metrics import cohen_kappa_score

STOP_SET_SIZE = 2_000
KAPPA_THRESHOLD = 0.99
WINDOW = 3
NEXT_LABELS = 500
CURVE_SIZES = (0.2, 0.4, 0.6, 0.8, 1.0)  # of the training part of each split
CURVE_SPLITS = 2
CURVE_TEST_SIZE = 0.2
CURVE_MAX_LABELS = 2_000  # the learning curve subsamples above this (bounded cost)
MIN_CURVE_LABELS = 30  # fewer labels: no learning curve
INTERVAL = (5.0, 95.0)  # percentiles of the gain's range (a 90 % range)


def stop_sample(n_items: int, size: int = STOP_SET_SIZE, random_state: int = 0) -> list[int]:
    """Positions of the stop set among ``n_items`` items: ``size`` of them drawn without
    replacement (all of them when fewer), sorted; the same for the same arguments."""
    if n_items <= size:
        return list(range(n_items))
    rng = np.random.default_rng(random_state)
    return sorted(int(i) for i in rng.choice(n_items, size, replace=False))


def agreement(previous: Sequence[str], current: Sequence[str]) -> float:
    """Cohen's kappa between two models' predictions on the same stop set. Identical
    predictions are 1.0 (kappa is 0/0 when both predict one label everywhere)."""
    if len(previous) != len(current):
        raise ValueError(
            f"the stop set changed between the models ({len(previous)} vs {len(current)} items)"
        )
    if not current:
        raise ValueError("an empty stop set has no agreement")
    if list(previous) == list(current):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        kappa = float(cohen_kappa_score(list(previous), list(current)))
    return 0.0 if math.isnan(kappa) else kappa


@dataclass(frozen=True)
class StopSignal:
    """Whether predictions have stabilized: the last ``window`` kappas (oldest first; fewer
    while there are fewer updates), the threshold, and whether the signal fires."""

    kappas: tuple[float, ...]
    threshold: float = KAPPA_THRESHOLD
    window: int = WINDOW

    @property
    def fired(self) -> bool:
        return len(self.kappas) >= self.window and min(self.kappas) >= self.threshold

    @property
    def lowest(self) -> float | None:
        return min(self.kappas) if self.kappas else None

    def sentence(self) -> str:
        """A plain sentence for people."""
        n = len(self.kappas)
        if self.fired:
            return (
                "predictions have stopped changing: more labels are unlikely to help much"
                f" (kappa ≥ {self.threshold:.2f} over the last {self.window} models)"
            )
        if n == 0:
            return "no two models to compare yet"
        if n < self.window:
            return (
                f"still changing: kappa {self.lowest:.2f} over the last {n} "
                f"model{'s' if n > 1 else ''} ({self.window} needed at ≥ {self.threshold:.2f})"
            )
        return (
            f"still changing: kappa {self.lowest:.2f} over the last {self.window} models"
            f" (stops at ≥ {self.threshold:.2f})"
        )


def stop_signal(
    kappas: Sequence[float | None], threshold: float = KAPPA_THRESHOLD, window: int = WINDOW
) -> StopSignal:
    """The signal from the kappas of successive updates, oldest first. A None (the stop set
    was drawn anew, so nothing to compare) cuts the run: only kappas after it count."""
    run: list[float] = []
    for kappa in kappas:
        run = [] if kappa is None else [*run, float(kappa)]
    return StopSignal(tuple(run[-window:]), threshold, window)


def first_firing(
    kappas: Sequence[float | None], threshold: float = KAPPA_THRESHOLD, window: int = WINDOW
) -> int | None:
    """The index of the first update at which the signal fires, or None."""
    for end in range(1, len(kappas) + 1):
        if stop_signal(kappas[:end], threshold, window).fired:
            return end - 1
    return None


def inverse_power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """``a − b·n^(−c)``: accuracy rising to ``a`` as labels ``n`` grow."""
    return a - b * np.power(n, -c)


@dataclass(frozen=True)
class Extrapolation:
    """The fitted curve and what it says of the next ``next_labels`` labels after ``n_labels``:
    ``gain`` (accuracy, 0–1) with its range ``low``–``high`` (None when the fit's covariance
    gives none), and ``at_n`` the curve's accuracy at ``n_labels``."""

    n_labels: int
    next_labels: int
    a: float
    b: float
    c: float
    at_n: float
    gain: float
    low: float | None
    high: float | None
    n_points: int

    def sentence(self) -> str:
        points = f"about {self.gain * 100:+.1f} points from the next {self.next_labels:,} labels"
        if self.low is None or self.high is None:
            return points + " (range unknown: the curve's fit is too loose)"
        return f"{points} (range {self.low * 100:+.1f} to {self.high * 100:+.1f})"

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "n_labels": self.n_labels,
            "next_labels": self.next_labels,
            "a": self.a,
            "b": self.b,
            "c": self.c,
            "at_n": self.at_n,
            "gain": self.gain,
            "low": self.low,
            "high": self.high,
            "n_points": self.n_points,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Extrapolation:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _log_law(n: np.ndarray, log_gap: float, log_b: float, log_c: float) -> np.ndarray:
    """``a − b·n^(−c)`` with ``a = 1 − e^log_gap`` (below 1), ``b = e^log_b``, ``c = e^log_c``."""
    return inverse_power_law(n, 1.0 - np.exp(log_gap), np.exp(log_b), np.exp(log_c))


def _fit_curve(
    x: np.ndarray, y: np.ndarray, start: Sequence[float] | None = None
) -> np.ndarray | None:
    """``(a, b, c)`` fitted by Levenberg-Marquardt on ``(log(1 − a), log b, log c)``, so that
    ``a < 1`` and ``b, c > 0`` without bounds (20× faster than a bounded trust region, which
    is the fallback when that fit fails)."""
    a0, b0, c0 = start if start is not None else (min(0.99, float(y.max()) + 0.05), 1.0, 0.5)
    guess = (math.log(max(1.0 - a0, 1e-9)), math.log(max(b0, 1e-9)), math.log(max(c0, 1e-9)))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # OptimizeWarning: no covariance (not used)
        try:
            log_gap, log_b, log_c = curve_fit(_log_law, x, y, p0=guess, maxfev=2_000)[0]
            params = np.array([1.0 - math.exp(log_gap), math.exp(log_b), math.exp(log_c)])
            if np.all(np.isfinite(params)):
                return params
        except (RuntimeError, ValueError, OverflowError):
            pass
        try:
            first = np.clip((a0, b0, c0), _BOUNDS[0], _BOUNDS[1])
            return curve_fit(inverse_power_law, x, y, p0=first, bounds=_BOUNDS, maxfev=10_000)[0]
        except (RuntimeError, ValueError):
            return None


_BOUNDS = ([0.0, 0.0, 0.01], [1.0, 100.0, 3.0])  # a ≤ 1 (accuracy), b ≥ 0 (rising), c > 0


def extrapolate(
    sizes: Sequence[float],
    scores: Sequence[float],
    n_labels: int,
    next_labels: int = NEXT_LABELS,
    *,
    n_boot: int = 200,
    random_state: int = 0,
) -> Extrapolation | None:
    """Fit ``a − b·n^(−c)`` to accuracy ``scores`` at label counts ``sizes`` and read the gain
    from ``n_labels`` to ``n_labels + next_labels``. Its range is the ``INTERVAL`` percentiles
    of the gain over ``n_boot`` bootstrap refits (the points resampled with replacement);
    None when fewer than half of them fit. Returns None when the points are too few (under
    4, or under 3 distinct sizes) or the fit fails."""
    pairs = [
        (float(n), float(s))
        for n, s in zip(sizes, scores, strict=True)
        if n > 0 and math.isfinite(s) and math.isfinite(n)
    ]
    if len(pairs) < 4 or len({n for n, _ in pairs}) < 3:
        return None
    x = np.array([n for n, _ in pairs])
    y = np.array([s for _, s in pairs])
    params = _fit_curve(x, y)
    if params is None:
        return None
    a, b, c = (float(p) for p in params)
    start, end = float(n_labels), float(n_labels + next_labels)
    rng = np.random.default_rng(random_state)
    with np.errstate(all="ignore"):  # a steep curve's huge b·n^(−c): its gain is just 0
        at_n = float(inverse_power_law(np.array(start), a, b, c))
        gain = float(inverse_power_law(np.array(end), a, b, c)) - at_n
        gains = _bootstrap(x, y, params, start, end, n_boot, rng)
    low = high = None
    if len(gains) >= n_boot / 2:
        low, high = (float(v) for v in np.percentile(gains, INTERVAL))
        low, high = min(low, gain), max(high, gain)  # the range holds the estimate it is of
    return Extrapolation(n_labels, next_labels, a, b, c, at_n, gain, low, high, len(pairs))


def _bootstrap(x, y, params, start: float, end: float, n_boot: int, rng) -> list[float]:
    """The gain from ``start`` to ``end`` labels of ``n_boot`` refits on resampled points."""
    gains: list[float] = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(x), len(x))
        if len(set(x[pick])) < 3:
            continue
        refit = _fit_curve(x[pick], y[pick], params)
        if refit is not None:
            gain = float(np.diff(inverse_power_law(np.array([start, end]), *refit))[0])
            if math.isfinite(gain):
                gains.append(gain)
    return gains


def curve_points(
    texts: Sequence[str],
    labels: Sequence[str],
    make_estimator: Callable[[], object],
    *,
    sizes: Sequence[float] = CURVE_SIZES,
    n_splits: int = CURVE_SPLITS,
    test_size: float = CURVE_TEST_SIZE,
    max_labels: int = CURVE_MAX_LABELS,
    random_state: int = 0,
) -> tuple[list[int], list[float]]:
    """Accuracy against training size on the labels themselves: scikit-learn's
    ``learning_curve`` over ``n_splits`` shuffled splits (``test_size`` held out), at
    ``sizes`` of each training part, on at most ``max_labels`` labels (a sample). Returns the
    sizes (label counts) and scores, one per split and size; a fit that fails is left out.
    Empty under ``MIN_CURVE_LABELS`` labels."""
    from sklearn.model_selection import ShuffleSplit, learning_curve

    if len(labels) < MIN_CURVE_LABELS or len(set(labels)) < 2:
        return [], []
    rng = np.random.default_rng(random_state)
    keep = np.arange(len(labels))
    if len(keep) > max_labels:
        keep = np.sort(rng.choice(len(keep), max_labels, replace=False))
    x = np.array([texts[i] for i in keep], dtype=object)
    y = np.array([labels[i] for i in keep], dtype=object)
    splits = ShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a subset with one class fails: error_score=nan
        counts, _, test_scores = learning_curve(
            make_estimator(),
            x,
            y,
            train_sizes=list(sizes),
            cv=splits,
            scoring="accuracy",
            error_score=np.nan,
            shuffle=True,
            random_state=random_state,
        )
    out_sizes: list[int] = []
    out_scores: list[float] = []
    for count, row in zip(counts, test_scores, strict=True):
        for score in row:
            if math.isfinite(score):
                out_sizes.append(int(count))
                out_scores.append(float(score))
    return out_sizes, out_scores
