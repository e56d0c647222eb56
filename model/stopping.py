"""When to stop labeling: stabilizing predictions and a learning-curve extrapolation.

*Stabilizing predictions* (Bloodgood & Vijay-Shanker 2009), measured over a span of labels:
every model update predicts a fixed *stop set* of items (a deterministic sample, up to
``STOP_SET_SIZE``), and the newest update is compared with the newest one at least
``SETTLE_SPAN`` labels older: the share of the stop set it predicts otherwise bounds how much
its accuracy on such items moved over those labels. The signal fires once that share is at most
``SETTLE_CHANGE``: on a learning curve that flattens, the next labels move it less still.
Comparing models a span of labels apart, instead of successive updates (their kappa ≥ 0.99
over 3 updates), makes the signal mean the same whether updates come 25 labels apart (refreshes)
or 200 (nightly retrains), and two updates on the same labels do not count as settling. Settled
predictions advise stopping unless the newest learning-curve forecast (below) is sure of a
point more (``StopSignal.advises_stop``): a slow climb changes fewer predictions than the
threshold resolves.

*Accuracy now* (``accuracy_now``): the model's confidence on the items still without a label,
mapped to accuracy by pairs of (confidence, right or wrong): in the product, the labels the
retrain's cross-validation held out (each one's confidence from the fold's model, fitted on the
other labels with the same configuration, and whether its guess was the label; ``HELD_OUT``).
The questions people answered, each with the confidence of the model that asked it, were the
pairs before: they were asked by older models, often much weaker, whose confidence meant less
(``HELD_OUT``). An isotonic fit of right-or-wrong on the confidence (scikit-learn's
``IsotonicRegression``) is the calibration map, and the mean of the map over the unlabeled
items' confidences is the estimate. Its range comes from bootstrap refits of the map. A
learning curve tested on held-out labels reads accuracy 10–20 points low under active learning
(the held-out items left holes the later picks were chosen around; ``benchmarks/stopping.py``),
so the curve gives only the gain; the map is of right *given* the confidence, which the held-out
labels being the harder items (lower confidences) does not bend as much.

*Learning-curve extrapolation*: accuracy against the number of labels, measured on subsets of
the labels (scikit-learn's ``learning_curve``) or taken from a history of evaluations, is fitted
with an inverse power law ``acc(n) = a − b·n^(−c)`` (``scipy.optimize.curve_fit``); the gain
from ``n`` to ``n + 500`` labels is read off the fit, and its range from bootstrap refits (the
points resampled, and each one's score drawn again from its binomial test noise when the labels
it was tested on are known; the fit's covariance understates how loose a saturating curve is).
A fit that rises only between the two smallest sizes (a *step*: ``c`` in the tens, flat over
every other point) is no forecast, nor is a range of zero width: both said "+0.0 points (range
+0.0 to +0.0)" where the next 500 labels brought +16.

Pure: numbers in, dataclasses out; the randomness is a ``random_state``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from model.errors import InsufficientDataError, InvalidInputError
from model.selection import text_key

STOP_SET_SIZE = 2_000
SETTLE_SPAN = 100  # labels between the two models compared
SETTLE_CHANGE = 0.02  # settled: at most this share of the stop set predicted otherwise
NEXT_LABELS = 500
CURVE_SIZES = (0.2, 0.4, 0.6, 0.8, 1.0)  # of the training part of each split
CURVE_SPLITS = 2
CURVE_TEST_SIZE = 0.2
CURVE_MAX_LABELS = 2_000  # the learning curve subsamples above this (bounded cost)
MIN_CURVE_LABELS = 30  # fewer labels: no learning curve
MIN_UNIFORM = 10  # a curve tested on the uniformly drawn labels tests on at least this many
INTERVAL = (5.0, 95.0)  # percentiles of the gain's range (a 90 % range)
MIN_ASKED = 30  # answered questions before accuracy now is estimated
MIN_EACH = 5  # ... of them at least this many right and this many wrong (else no map to fit)
# ... and at least this share of the unlabeled items' confidences within the answered ones'
# range: outside it the map is a guess (an isotonic fit holds its end value)
MIN_COVERED = 0.9
# A tenth of confidence (0.5–0.6, ...) with fewer than this many answered questions is *thin*:
# questions chosen for the model's doubt leave the confident tenths a handful of answers, mostly
# right, and the map says 94–100 % there (an outside audit's trec run: 18 answers above 0.5, 2 of
# them at 0.5–0.6, all right, where the newest model was right on 76–94 % of 1,100 pool items;
# shown "about 82% (range 70–91%)" for a measured 68 %). For the unlabeled items in thin tenths
# the range reaches the bounds their answers allow: each tenth's Wilson interval
# (THIN_CONFIDENCE; none: 0–100 %), accuracy taken to rise with confidence (a tenth is at least
# as accurate as the tenths below, at most as those above).
MIN_PER_BIN = 5
N_BINS = 10
THIN_CONFIDENCE = 0.8
THIN_SAID = 0.1  # the text says so when at least this share of the items sits in thin tenths
# ... and no estimate while that makes the range wider than this: it would say nothing. On
# benchmarks/stopping.py's trec rounds from 100 to 525 labels (seeds 0–2) the thin tenths'
# bounds held the measured accuracy in 45 of 45 rounds (the range before: 41), but 15 of those
# ranges were 50–74 points wide
MAX_THIN_WIDTH = 0.5
ASKED_MAX = 5_000  # the most (confidence, right) pairs the calibration map is fitted on
# What accuracy now is calibrated on (``accuracy_now``'s ``source``): the questions people
# answered, each with the confidence of the model that asked it (the rule before, kept for the
# benchmarks), or the labels a cross-validation of the model's own configuration held out (the
# product's). The questions were asked by older models, often much weaker: on 150 labels of 8
# examples each, models right on 0–22 % of their questions at confidence 0.03–0.09 mapped a
# champion right on 89 % of the pool at the same confidences to "about 40% (range 8–57%)".
# benchmarks/RESULTS.md "Accuracy now: calibrated on the held-out labels"
ASKED = "asked"
HELD_OUT = "held_out"
# Accuracy now's range: the bootstrap's 90 % range widened by this much on each side. The
# bootstrap resamples the questions, not the change from the models that asked them to the
# newest one; alone it held the measured accuracy in 62 % of the benchmark's rounds
# (benchmarks/stopping.py). 6 points: the least whole point holding 90 % of the four tuned
# data sets' rounds, seeds 0-2; RESULTS "Accuracy now" shows it on seeds and data held out.
# Kept for the held-out labels (the change there: from the folds' models, on four fifths of the
# labels, to the model on all of them, or to a refresh on more): RESULTS "Accuracy now:
# calibrated on the held-out labels".
ALLOWANCE = 0.06
# A fit rising less than this over every size but the smallest, and more to it, is a step
# (``_is_step``) when the labels each point was tested on are not known (known: half a label)
STEP_RISE = 0.005
# ... and only when at the second-smallest size it is already this close to its asymptote, as
# a share of its distance at the smallest, ``(x₁/x₀)^(−c)``: with the sizes doubling
# (CURVE_SIZES) an exponent of 4.3 or more, a step. Half a label alone is 2.5–5 points on a
# curve tested on 10–20 labels (20–40 drawn uniformly), and smooth trec curves with c = 1.2–1.4
# were refused as steps (their distance at x₁: 40 % of that at x₀). Of the fits half a label
# called steps in benchmarks/results/stopping_{forecast,advice}.jsonl.gz, the steps left at
# most 4 % (c 4.7–22), the smooth curves 15 % or more (c 1.7–2.7).
STEP_GAP = 0.05
# a forecast's range narrower than this (shown "+0.0 to +0.0") is no forecast when the points
# were each tested on a known number of labels: a curve of ten points each read on a few dozen
# labels is never that sure (exact points, a test-accuracy history, can be)
MIN_WIDTH = 0.001
# settled predictions do not advise stopping while the forecast expects this much more
STILL_GAINING = 0.01


def stop_sample(n_items: int, size: int = STOP_SET_SIZE, random_state: int = 0) -> list[int]:
    """Positions of the stop set among ``n_items`` items: ``size`` of them drawn without
    replacement (all of them when fewer), sorted; the same for the same arguments."""
    if n_items <= size:
        return list(range(n_items))
    rng = np.random.default_rng(random_state)
    return sorted(int(i) for i in rng.choice(n_items, size, replace=False))


def changed_share(before: Sequence[str], now: Sequence[str]) -> float:
    """The share of the stop set that two models predict differently (0–1). The accuracy of
    the two on those items differs by at most this much."""
    if len(before) != len(now):
        raise InvalidInputError(
            f"the stop set changed between the models ({len(before)} vs {len(now)} items)"
        )
    if not now:
        raise InvalidInputError("an empty stop set has no agreement")
    return sum(a != b for a, b in zip(before, now, strict=True)) / len(now)


def baseline(label_counts: Sequence[int], n_labels: int, span: int = SETTLE_SPAN) -> int | None:
    """Among earlier updates' label counts (oldest first), the index of the newest one at
    least ``span`` labels below ``n_labels``: the model to compare with (None: none yet)."""
    found = None
    for i, n in enumerate(label_counts):
        if n <= n_labels - span:
            found = i
    return found


def redraw_sample(
    n_items: int,
    kept: Sequence[int],
    n_arrived: int,
    size: int = STOP_SET_SIZE,
    random_state: int = 0,
) -> list[int]:
    """Positions of a stop set drawn again among ``n_items`` items (oldest first, the last
    ``n_arrived`` of them arrived after the draw before), keeping the positions ``kept`` (the
    draw before's items still without a label) so that the models that predicted them can be
    compared with the next ones on them (``common_comparison``). The sample still follows the
    items: the ones from before the draw and the arrivals are each sampled at the rate
    ``size / n_items``; the kept items stand for those from before (a sample of them), topped
    up with others of them when too few, dropped at random when too many, and the arrivals
    sampled at that rate. Sorted; the same for the same arguments."""
    if n_items <= size:
        return list(range(n_items))
    rng = np.random.default_rng(random_state)
    n_arrived = min(max(n_arrived, 0), n_items)
    n_before = n_items - n_arrived
    keep = sorted({int(k) for k in kept if 0 <= k < n_before})
    want = min(round(size * n_before / n_items), n_before)
    if len(keep) >= want:
        before = [keep[i] for i in rng.choice(len(keep), want, replace=False)]
    else:
        held = set(keep)
        others = [i for i in range(n_before) if i not in held]
        before = keep + [
            others[i] for i in rng.choice(len(others), want - len(keep), replace=False)
        ]
    after = min(size - want, n_arrived)
    arrivals = [n_before + int(i) for i in rng.choice(n_arrived, after, replace=False)]
    return sorted(before + arrivals)


MIN_COMMON = 200  # items both models predicted that a comparison across draws needs at least


def common_comparison(
    earlier: Sequence[tuple[int, Sequence[str | None]]],
    now: Sequence[str],
    still: Sequence[bool],
    n_labels: int,
    span: int = SETTLE_SPAN,
    min_common: int = MIN_COMMON,
) -> tuple[int, float, int] | None:
    """Compare the newest model (``now``: its predictions on the stop set, on ``n_labels``
    labels) with the newest earlier one (``earlier``: label counts and predictions on the same
    items, None where it did not predict the item: a draw before this one) ``span`` or more
    labels older that predicted enough of the items still without a label (``still``): at
    least ``min_common`` of them, or with fewer in the sample, half of them (all of them when
    it is of the same draw). Returns its index, the share of those items predicted otherwise
    and how many they were; None when no such model."""
    n_still = sum(bool(u) for u in still)
    needed = max(1, min(min_common, math.ceil(n_still / 2)))
    for i in range(len(earlier) - 1, -1, -1):
        n_before, before = earlier[i]
        if n_before > n_labels - span or len(before) != len(now):
            continue
        pairs = [(b, p) for b, p, u in zip(before, now, still, strict=True) if u and b is not None]
        if len(pairs) >= needed:
            return i, changed_share([b for b, _ in pairs], [p for _, p in pairs]), len(pairs)
    return None


@dataclass(frozen=True)
class StopSignal:
    """Whether predictions have settled: the share of the stop set ``changed`` between the
    newest model and the newest one ``span`` or more labels older (None: no such model yet),
    and whether that is at most ``threshold``."""

    changed: float | None
    span: int | None
    threshold: float = SETTLE_CHANGE
    min_span: int = SETTLE_SPAN
    # why there is no comparison though older models exist (a sentence; "": there is none
    # ``min_span`` labels older yet)
    why: str = ""

    @property
    def fired(self) -> bool:
        return self.changed is not None and self.changed <= self.threshold

    def advises_stop(self, forecast: Extrapolation | None = None) -> bool:
        """Whether to tell people more labels are unlikely to help much: predictions have
        settled and the newest ``forecast`` (if any) does not expect a gain of STILL_GAINING or
        more. A curve that still climbs slowly (0.4 points every 100 labels) changes fewer
        predictions than the threshold resolves; its learning curve can still see the climb."""
        return self.fired and not still_gaining(forecast)

    def sentence(self, forecast: Extrapolation | None = None) -> str:
        """A plain sentence for people; with the newest ``forecast``, one that does not
        advise stopping while the forecast is sure more labels help (``advises_stop``)."""
        if self.changed is None or self.span is None:
            if self.why:
                return f"no comparison: {self.why}"
            return f"no model {self.min_span} labels older than the newest to compare with yet"
        what = (
            f"the last {self.span:,} labels changed {self.changed:.1%} of the model's answers on"
            " a fixed sample of unlabelled items"
        )
        if self.fired and forecast is not None and still_gaining(forecast):
            return (
                f"predictions have settled: {what} (settled at {self.threshold:.0%} or less),"
                f" but the learning curve still expects {forecast.expected * 100:+.1f} points from"
                f" the next {forecast.next_labels:,} labels, so more labels should still help"
            )
        if self.fired:
            return (
                f"predictions have settled: {what} (settled at {self.threshold:.0%} or less),"
                " so more labels are unlikely to help much"
            )
        return f"still changing: {what} (settled at {self.threshold:.0%} or less)"


def still_gaining(forecast: Extrapolation | None, at_least: float = STILL_GAINING) -> bool:
    """Whether ``forecast`` expects a gain of ``at_least`` (accuracy, 0–1): its estimate is at
    or above it (a forecast with no range is sure of nothing). The estimate, not the low end of
    the range: since the range carries each curve point's test noise it is honest and wide
    (its low end near 0 on trec at 1,200 labels with 3.8 points still to come), so "the whole
    range gains a point" no longer held back advice to stop. The estimate capped at the room
    the model's accuracy leaves (``Extrapolation.expected``): a model at 99.9 % cannot gain a
    point, whatever its curve reads."""
    return forecast is not None and forecast.low is not None and forecast.expected >= at_least


def first_firing(
    label_counts: Sequence[int],
    changed: Sequence[float | None],
    threshold: float = SETTLE_CHANGE,
) -> int | None:
    """The label count of the first update whose ``changed`` share (against the model
    ``SETTLE_SPAN`` labels older) is at most ``threshold``, or None."""
    for n, share in zip(label_counts, changed, strict=True):
        if share is not None and share <= threshold:
            return n
    return None


def inverse_power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """``a − b·n^(−c)``: accuracy rising to ``a`` as labels ``n`` grow."""
    return a - b * np.power(n, -c)


@dataclass(frozen=True)
class Extrapolation:
    """The fitted curve and what it says of the next ``next_labels`` labels after ``n_labels``:
    ``gain`` (accuracy, 0–1) with its range ``low``–``high`` (None when the fit's covariance
    gives none), ``at_n`` the curve's accuracy at ``n_labels``, and ``n_test`` how many labels
    each point of the curve was tested on (None: not known)."""

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
    n_test: int | None = None
    # the model's own accuracy (cross-validated, as shown beside the forecast), when known: no
    # gain exceeds the room it leaves under 100 % (``room``). None: not known, nothing capped
    accuracy: float | None = None

    @property
    def room(self) -> float | None:
        """How much accuracy the model has left to gain (0–1): 1 − ``accuracy``; None when
        its accuracy is not known. The curve is measured training on at most half of the
        labels and read past its largest size, so it can promise more than that (+4.0 points
        to a model at 99.9 %)."""
        return None if self.accuracy is None else min(max(1.0 - self.accuracy, 0.0), 1.0)

    def _capped(self, value: float) -> float:
        room = self.room
        return value if room is None else min(value, room)

    @property
    def expected(self) -> float:
        """The gain to expect: the curve's ``gain``, at most the ``room`` left."""
        return self._capped(self.gain)

    def with_accuracy(self, accuracy: float | None) -> Extrapolation:
        """This forecast, its gain and range capped at the room ``accuracy`` leaves."""
        return replace(self, accuracy=accuracy)

    def gain_text(self) -> str:
        """``about +3.6 points (range +3.3 to +4.3)``: the gain of the next ``next_labels``
        labels (the line it goes on names them), with its range. Capped at the ``room`` the
        model's accuracy leaves, saying so: ``at most +0.1 points: the model is at 99.9%
        (cross-validated), 0.1 points below 100%; the learning curve read +4.0 (range +3.6 to
        +4.3), more than that room``."""
        room, accuracy = self.room, self.accuracy

        def past_room(value: float) -> bool:  # capped, and shown so (a tenth of a point)
            return room is not None and round(value * 100, 1) > round(room * 100, 1)

        points = f"about {self.expected * 100:+.1f} points"
        if accuracy is not None and room is not None and past_room(self.gain):
            curve = f"{self.gain * 100:+.1f}"
            if self.low is not None and self.high is not None:
                curve += f" (range {self.low * 100:+.1f} to {self.high * 100:+.1f})"
            left = (
                f"{room * 100:.1f} points below 100%"
                if round(room * 100, 1) > 0
                else "no room left to gain"
            )
            return (
                f"at most {self.expected * 100:+.1f} points: the model is at"
                f" {accuracy * 100:.1f}% (cross-validated), {left};"
                f" the learning curve read {curve}, more than that room"
            )
        if self.low is None or self.high is None:
            return points + " (range unknown: the curve's fit is too loose)"
        low, high = self._capped(self.low), self._capped(self.high)
        capped = (
            f": the model is at {accuracy * 100:.1f}% (cross-validated), so no more than"
            f" {room * 100:+.1f}"
            if accuracy is not None and room is not None and past_room(self.high)
            else ""
        )
        return f"{points} (range {low * 100:+.1f} to {high * 100:+.1f}{capped})"

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
            "n_test": self.n_test,
            "accuracy": self.accuracy,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Extrapolation:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def refused(self) -> bool:
        """Whether ``extrapolate`` would refuse this forecast of a curve the product measures
        (``curve_points``), judged by its stored parameters: one stored before it refused
        them said "+0.0 points (range +0.0 to +0.0)" where the next 500 labels brought +16.
        Its range is narrower than ``MIN_WIDTH`` (every such curve is tested on a few held-out
        labels: never that sure, ``n_test`` recorded or not), a parameter is not finite, or
        its curve is a step (``_is_step``) over the sizes such a curve measures
        (``CURVE_SIZES`` of the labels not held out, at most ``CURVE_MAX_LABELS``)."""
        if self.low is not None and self.high is not None and self.high - self.low < MIN_WIDTH:
            return True
        params = np.array([self.a, self.b, self.c], dtype=float)
        if not np.all(np.isfinite(params)):
            return True
        n = min(self.n_labels, CURVE_MAX_LABELS)
        train = n - (self.n_test or round(CURVE_TEST_SIZE * n))
        if train <= 0:
            return False
        return _is_step(params, np.array([f * train for f in CURVE_SIZES]), self.n_test)


def _log_law(n: np.ndarray, log_gap: float, log_b: float, log_c: float) -> np.ndarray:
    """``a − b·n^(−c)`` with ``a = 1 − e^log_gap`` (below 1), ``b = e^log_b``, ``c = e^log_c``."""
    return inverse_power_law(n, 1.0 - np.exp(log_gap), np.exp(log_b), np.exp(log_c))


def _fit_curve(
    x: np.ndarray, y: np.ndarray, start: Sequence[float] | None = None
) -> np.ndarray | None:
    """``(a, b, c)`` fitted by Levenberg-Marquardt on ``(log(1 − a), log b, log c)``, so that
    ``a < 1`` and ``b, c > 0`` without bounds (20× faster than a bounded trust region, which
    is the fallback when that fit fails). From ``start``, or else from each of ``_STARTS``,
    keeping the closest fit: from one start the fit can settle on a step (``c`` in the
    hundreds, flat over the points) far from points that still climb."""
    if start is not None:
        return _fit_from(x, y, start)
    best, best_sse = None, math.inf
    top = float(y.max())
    for above, c0 in _STARTS:
        params = _fit_from(x, y, (min(0.99, top + above), 1.0, c0))
        if params is not None:
            with np.errstate(all="ignore"):
                sse = float(np.sum((inverse_power_law(x, *params) - y) ** 2))
            if sse < best_sse:
                best, best_sse = params, sse
    return best


# where the fit starts: the asymptote this far above the best score, and the exponent c
_STARTS = ((0.05, 0.1), (0.05, 0.3), (0.05, 1.0), (0.2, 0.1), (0.2, 0.3), (0.2, 1.0))


def _fit_from(x: np.ndarray, y: np.ndarray, start: Sequence[float]) -> np.ndarray | None:
    """The fit ``scipy.optimize.curve_fit`` makes (unbounded: MINPACK's Levenberg-Marquardt,
    ``leastsq``; bounded: ``least_squares``' trust region), the same calls with the same
    parameters, minus its covariance: nothing here uses it, and its ``OptimizeWarning`` ("could
    not be estimated", on as many points as parameters) needed hiding, which a
    ``warnings.catch_warnings`` in another thread undid (``model.quiet``). This warns about
    nothing; numpy's floating-point errors are per thread (``np.errstate``)."""
    # here, not at the top: a server with no model yet need not import them
    from scipy.optimize import least_squares, leastsq

    a0, b0, c0 = start
    guess = (math.log(max(1.0 - a0, 1e-9)), math.log(max(b0, 1e-9)), math.log(max(c0, 1e-9)))
    with np.errstate(all="ignore"):
        try:
            x = np.asarray_chkfinite(x, float)  # as curve_fit takes them
            y = np.asarray_chkfinite(y, float)
            # full_output: a fit that stops short reports it in `status` (curve_fit's
            # RuntimeError) instead of a RuntimeWarning
            found, _, _, _, status = leastsq(
                lambda p: _log_law(x, *p) - y, np.atleast_1d(guess), full_output=True, maxfev=2_000
            )
            if status in (1, 2, 3, 4):  # MINPACK's converged
                log_gap, log_b, log_c = found
                params = np.array([1.0 - math.exp(log_gap), math.exp(log_b), math.exp(log_c)])
                if np.all(np.isfinite(params)):
                    return params
        except (ValueError, OverflowError):
            pass
        try:
            first = np.clip((a0, b0, c0), _BOUNDS[0], _BOUNDS[1])
            fit = least_squares(
                lambda p: inverse_power_law(x, *p) - y,
                np.atleast_1d(first),
                jac="2-point",
                bounds=_BOUNDS,
                method="trf",
                max_nfev=10_000,
            )
        except ValueError:
            return None
        return fit.x if fit.success else None


_BOUNDS = ([0.0, 0.0, 0.01], [1.0, 100.0, 3.0])  # a ≤ 1 (accuracy), b ≥ 0 (rising), c > 0


def extrapolate(
    sizes: Sequence[float],
    scores: Sequence[float],
    n_labels: int,
    next_labels: int = NEXT_LABELS,
    *,
    n_test: int | None = None,
    n_boot: int = 200,
    random_state: int = 0,
) -> Extrapolation | None:
    """Fit ``a − b·n^(−c)`` to accuracy ``scores`` at label counts ``sizes`` and read the gain
    from ``n_labels`` to ``n_labels + next_labels``. Its range is the ``INTERVAL`` percentiles
    of the gain over ``n_boot`` bootstrap refits (the points resampled with replacement);
    None when fewer than half of them fit. Returns None when the points are too few (under
    4, or under 3 distinct sizes), the fit fails, the fit is a step (``_is_step``), the curve
    has no finite value at ``n_labels`` (0 labels) or, with ``n_test``, its range is narrower
    than ``MIN_WIDTH``: no forecast rather than a sure "+0.0" (points without ``n_test`` may be
    exact: a history of evaluations on the same test set). ``n_test``
    (how many labels each score was measured on, ``CurvePoints.n_test``) carries each score's
    binomial test noise into the bootstrap (``_bootstrap``) and is kept with the result for
    the people reading it."""
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
    if _is_step(params, x, n_test):
        return None  # the points climb, the fit jumps once and stays flat: no forecast
    a, b, c = (float(p) for p in params)
    start, end = float(n_labels), float(n_labels + next_labels)
    rng = np.random.default_rng(random_state)
    with np.errstate(all="ignore"):  # a steep curve's huge b·n^(−c): its gain is just 0
        at_n = float(inverse_power_law(np.array(start), a, b, c))
        gain = float(inverse_power_law(np.array(end), a, b, c)) - at_n
        gains = _bootstrap(x, y, params, start, end, n_boot, rng, n_test)
    if not (math.isfinite(at_n) and math.isfinite(gain)):
        return None  # read where the law has no value (n_labels 0: b·0^(−c)): no forecast
    low = high = None
    if len(gains) >= n_boot / 2:
        low, high = (float(v) for v in np.percentile(gains, INTERVAL))
        low, high = min(low, gain), max(high, gain)  # the range holds the estimate it is of
        if n_test and high - low < MIN_WIDTH:
            return None  # sure to a tenth of a point from points each read on a few labels
    return Extrapolation(
        n_labels, next_labels, a, b, c, at_n, gain, low, high, len(pairs), n_test or None
    )


def _is_step(params: np.ndarray, x: np.ndarray, n_test: int | None) -> bool:
    """Whether the fitted curve is a *step*: it rises by more than half a test label (of
    ``n_test``; unknown: ``STEP_RISE``) from the smallest measured size to the next, by
    less than that over all the larger sizes, and is at the next size already within
    ``STEP_GAP`` of its distance to the asymptote at the smallest (flat over every size but
    the smallest). A power law does that only with an exponent in the tens (``b`` up to
    1e34): it fits the smallest size's points alone and the mean of the rest, and reads a
    gain of zero off a curve whose points may still climb. A smooth curve tested on a few
    labels (half a label: 5 points) that rises less than that beyond the smallest size is
    no step: its exponent is near 1."""
    sizes = np.unique(x)
    if len(sizes) < 3:
        return False
    with np.errstate(all="ignore"):
        at = inverse_power_law(sizes[[0, 1, -1]], *params)
    if not np.all(np.isfinite(at)):
        return True
    half = 0.5 / n_test if n_test else STEP_RISE
    rises = at[1] - at[0] > half and at[2] - at[1] < half
    with np.errstate(all="ignore"):
        left = float(np.power(sizes[1] / sizes[0], -float(params[2])))  # of the distance at x₀
    return bool(rises and left <= STEP_GAP)


def _bootstrap(
    x, y, params, start: float, end: float, n_boot: int, rng, n_test: int | None = None
) -> list[float]:
    """The gain from ``start`` to ``end`` labels of ``n_boot`` refits on resampled points.
    With ``n_test`` (the labels each score was measured on), each resampled score is drawn
    again from its binomial test noise: ``k`` right of ``n_test`` gives Binomial(``n_test``,
    (k + ½)/(n_test + 1))/``n_test`` (the + ½ keeps a score of 0 or 1 from being sure), so a
    curve tested on 30 labels, where one label moves a point by 3 points, gets a range that
    wide. A refit that is a step (``_is_step``) counts as one that failed."""
    gains: list[float] = []
    start_at = params
    if n_test:  # from a curve that still rises by half a label at the smallest size: from a
        # flat fit (b near 0) the refits cannot leave it, whatever the noise drew
        a, b, c = params
        start_at = np.array([a, max(b, 0.5 / n_test * float(x.min()) ** c), c])
    for _ in range(n_boot):
        pick = rng.integers(0, len(x), len(x))
        if len(set(x[pick])) < 3:
            continue
        scores = y[pick]
        if n_test:
            right = np.clip(np.round(scores * n_test), 0, n_test)
            scores = rng.binomial(n_test, (right + 0.5) / (n_test + 1)) / n_test
        refit = _fit_curve(x[pick], scores, start_at)
        if refit is not None and not _is_step(refit, x[pick], n_test):
            gain = float(np.diff(inverse_power_law(np.array([start, end]), *refit))[0])
            if math.isfinite(gain):
                gains.append(gain)
    return gains


class CurvePoints(NamedTuple):
    """A learning curve: accuracy ``scores`` at training ``sizes`` (one per split and size),
    each measured on ``n_test`` labels (0: no curve)."""

    sizes: list[int]
    scores: list[float]
    n_test: int = 0


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
    uniform: Sequence[bool] | None = None,
) -> CurvePoints:
    """Accuracy against training size on the labels themselves: scikit-learn's
    ``learning_curve`` over ``n_splits`` shuffled splits (``test_size`` held out), at
    ``sizes`` of each training part, on at most ``max_labels`` labels (a sample). Returns the
    sizes (label counts) and scores, one per split and size (a fit that fails is left out),
    and how many labels each split tests on. Empty under ``MIN_CURVE_LABELS`` labels, with
    one distinct text or with blank texts only. Texts with no word (emoji, single characters,
    digits) are learnt from their character n-grams, as a fit learns them
    (``model.classifier``); :class:`InvalidInputError` when the lengths differ.

    ``uniform`` marks the labels of items drawn uniformly from the pool (cold start, audits):
    given, each split tests on half of those (at least ``MIN_UNIFORM`` of them, else no
    curve) and trains on the rest, so the scores estimate accuracy on items like the pool's
    rather than on the uncertain ones the bot chose.

    A text and its repeats (``model.selection.text_key``, the key the cross-validation folds
    group by) are on one side of a split: scored on texts its training part holds, the curve
    climbed with memory alone (to 100 % on labels unrelated to the texts, each given four
    times) and the forecast promised gains no new text sees. Without repeats the splits are
    those of before (``ShuffleSplit``; grouped: ``GroupShuffleSplit``, ``test_size`` of the
    texts), and ``n_test`` is the fewest labels a split tests on."""
    from sklearn.exceptions import FitFailedWarning
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, learning_curve
    from sklearn.pipeline import Pipeline

    from model.classifier import (
        FIT_WARNINGS,
        _fit_words_only_if_any,
        fit_threads,
        prepare_texts,
        skip_checks,
    )
    from model.quiet import quiet

    if len(texts) != len(labels) or (uniform is not None and len(uniform) != len(labels)):
        marks = "" if uniform is None else f" and {len(uniform)} uniform marks"
        raise InvalidInputError(f"{len(texts)} texts for {len(labels)} labels{marks}")
    if len(labels) < MIN_CURVE_LABELS or len(set(labels)) < 2:
        return CurvePoints([], [])
    rng = np.random.default_rng(random_state)
    keep = np.arange(len(labels))
    if len(keep) > max_labels:
        keep = np.sort(rng.choice(len(keep), max_labels, replace=False))
    x = np.array(prepare_texts([texts[i] for i in keep]), dtype=object)  # cut as a fit cuts them
    y = np.array([labels[i] for i in keep], dtype=object)
    _, group = np.unique([text_key(texts[i]) for i in keep], return_inverse=True)
    n_texts = len(set(group.tolist()))
    if n_texts < 2:
        return CurvePoints([], [])  # one text (and its repeats) only: nothing to split
    repeats = n_texts < len(keep)
    splits: list[tuple[np.ndarray, np.ndarray]]
    if uniform is not None:
        drawn = np.flatnonzero(np.asarray(uniform, dtype=bool)[keep])
        if len(drawn) < 2 * MIN_UNIFORM:
            return CurvePoints([], [])
        splits = [_half_of(drawn, group, rng) for _ in range(n_splits)]
    elif repeats:
        grouped = GroupShuffleSplit(
            n_splits=n_splits, test_size=test_size, random_state=random_state
        )
        splits = list(grouped.split(x, y, groups=group))
    else:
        plain = ShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=random_state)
        splits = list(plain.split(x, y))
    if any(len(train) == 0 or len(test) == 0 for train, test in splits):
        return CurvePoints([], [])  # one text (and its repeats) only: nothing to split
    n_test = min(len(test) for _, test in splits)
    estimator = make_estimator()
    if isinstance(estimator, Pipeline):  # as a fit does: no word in any text, the char n-grams
        try:
            _fit_words_only_if_any(estimator, list(x))
        except InsufficientDataError:
            return CurvePoints([], [])  # every text blank: nothing to learn from
    # its fits run with the fits' BLAS threads, as the product's own fits do (fit_pipeline)
    # a subset with one class fails (error_score=nan: FitFailedWarning); its fits' solvers'
    # warnings are not shown, as fit_pipeline's are not (model.quiet: not catch_warnings)
    with quiet((FitFailedWarning, ""), *FIT_WARNINGS), fit_threads(), skip_checks():
        try:
            counts, _, test_scores = learning_curve(
                estimator,
                x,
                y,
                train_sizes=list(sizes),
                cv=splits,
                scoring="accuracy",
                error_score=np.nan,
                shuffle=True,
                random_state=random_state,
            )
        except ValueError as exc:  # scikit-learn raises when every fit failed, else nan
            if "fits failed" not in str(exc):
                raise
            return CurvePoints([], [])  # e.g. every training part of one class: no curve
    out_sizes: list[int] = []
    out_scores: list[float] = []
    for count, row in zip(counts, test_scores, strict=True):
        for score in row:
            if math.isfinite(score):
                out_sizes.append(int(count))
                out_scores.append(float(score))
    return CurvePoints(out_sizes, out_scores, n_test)


def _half_of(
    drawn: np.ndarray, group: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A split testing on about half of ``drawn`` (positions of uniformly drawn labels): their
    texts (``group``) in a random order, taken until half of the drawn labels are in, with
    every repeat of a taken text out of the training part. Without repeats, the split of
    before (the same draw of ``rng``: the first half of a permutation of ``drawn``)."""
    first: dict[int, int] = {}  # a text's first drawn position stands for the text
    for position in drawn.tolist():
        first.setdefault(int(group[position]), position)
    order = rng.permutation(np.fromiter(first.values(), dtype=np.intp, count=len(first)))
    per_text = np.bincount(group[drawn], minlength=int(group.max()) + 1)
    reached = np.cumsum(per_text[group[order]])  # drawn labels in the first texts of ``order``
    chosen = group[order[: int(np.searchsorted(reached, len(drawn) // 2)) + 1]]
    out = np.isin(group, chosen)
    return np.flatnonzero(~out), np.intersect1d(drawn, np.flatnonzero(out))


@dataclass(frozen=True)
class AccuracyNow:
    """The estimated accuracy (0–1) on the items without a label, with its ``low``–``high``
    range (``INTERVAL`` of bootstrap refits, widened by ``ALLOWANCE``), from ``n_pool``
    unlabeled items' confidences and ``n_asked`` answered questions."""

    estimate: float
    low: float
    high: float
    n_pool: int
    n_asked: int
    thin: float = 0.0  # the share of those items whose tenth of confidence has few answers
    # what calibrated it: ASKED, the questions people answered (``n_asked`` of them), or
    # HELD_OUT, the labels a cross-validation held out (``n_asked`` of them)
    source: str = "asked"

    def text(self) -> str:
        """``about 74% (range 70–78%)``; with many items where few questions were answered,
        ``about 82% (range 45–96%; wide: 69% of the items have a confidence where few questions
        were answered yet)`` (calibrated on held-out labels: ``where few labels were held
        out``)."""
        few = (
            f"; wide: {self.thin:.0%} of the items have a confidence where "
            + (
                "few labels were held out"
                if self.source == HELD_OUT
                else "few questions were answered yet"
            )
            if self.thin >= THIN_SAID
            else ""
        )
        return (
            f"about {self.estimate * 100:.0f}% "
            f"(range {self.low * 100:.0f}–{self.high * 100:.0f}%{few})"
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "n_pool": self.n_pool,
            "n_asked": self.n_asked,
            "thin": self.thin,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict) -> AccuracyNow:
        fields = cls.__dataclass_fields__
        return cls(**{k: data[k] for k in fields if k in data or k not in ("thin", "source")})


@dataclass(frozen=True)
class NoAccuracyNow:
    """Why accuracy now is not estimated (a sentence for people). Too few answered questions:
    how many there were (``n_asked``; None for another reason), how many it needs and how
    many were answered before the first model (``unasked``), so the count can be said again
    as it is later (``counted_now``): the reason is written at a model's fit, and read until
    the next one while people answer."""

    reason: str
    # (not compared: two with the same reason are the same answer)
    n_asked: int | None = field(default=None, compare=False)
    min_asked: int = field(default=MIN_ASKED, compare=False)
    unasked: int = field(default=0, compare=False)

    @classmethod
    def too_few(cls, n_asked: int, min_asked: int = MIN_ASKED, unasked: int = 0) -> NoAccuracyNow:
        """``it needs 30 questions a model asked answered, has 12 so far``."""
        before = (
            f" (the {unasked:,} answered before the first model cannot calibrate it)"
            if unasked
            else ""
        )
        return cls(
            f"it needs {min_asked} question{'s' if min_asked != 1 else ''} a model asked"
            f" answered, has {n_asked:,} so far{before}",
            n_asked,
            min_asked,
            unasked,
        )

    def counted_now(self, n_asked: int | None, model: str = "the model") -> NoAccuracyNow:
        """The reason with ``n_asked``, the questions a model asked answered now (None: not
        counted, this one; a count may stop at ``min_asked``). With too few still, the same
        sentence with today's count; with enough now, that the fit of ``model`` had too few
        and the next model update can estimate it. Another reason stays as it is."""
        if self.n_asked is None or n_asked is None or n_asked == self.n_asked:
            return self
        if n_asked < self.min_asked:
            return NoAccuracyNow.too_few(n_asked, self.min_asked, self.unasked)
        return replace(
            self,
            reason=(
                f"it needs {self.min_asked} questions a model asked answered: {model} was"
                f" fitted when {self.n_asked:,} were, and at least {n_asked:,} are now, so"
                " the next model update can estimate it"
            ),
        )

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason}

    def counts(self) -> dict[str, int]:
        """The counts behind a reason of too few answered questions, to keep with
        ``as_dict`` for ``from_dict`` (empty for another reason)."""
        if self.n_asked is None:
            return {}
        return {"n_asked": self.n_asked, "min_asked": self.min_asked, "unasked": self.unasked}

    @classmethod
    def from_dict(cls, data: dict) -> NoAccuracyNow:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def accuracy_now(
    pool_confidence: Sequence[float],
    asked_confidence: Sequence[float],
    asked_right: Sequence[bool],
    *,
    min_asked: int = MIN_ASKED,
    min_each: int = MIN_EACH,
    min_covered: float = MIN_COVERED,
    min_per_bin: int = MIN_PER_BIN,
    max_thin_width: float = MAX_THIN_WIDTH,
    n_boot: int = 200,
    random_state: int = 0,
    allowance: float = ALLOWANCE,
    unasked: int = 0,
    source: str = ASKED,
) -> AccuracyNow | NoAccuracyNow:
    """Accuracy on the unlabeled items: the mean, over their ``pool_confidence`` (the model's
    top probability for each), of the calibration map fitted on the answered questions (the
    asking model's ``asked_confidence`` and whether its guess was right, ``asked_right``). The
    questions a bot chose for uncertainty are as good for the map as the audits: the choice
    depended on the confidence only, and the map is of right-or-wrong *given* the confidence.

    ``NoAccuracyNow``, saying why, with no unlabeled item, fewer than ``min_asked`` answered
    questions or fewer than ``min_each`` right or wrong ones (a map that has seen only one
    outcome says 100 % or 0 %, sure of it), or when fewer than ``min_covered`` of the
    unlabeled items have a confidence within the answered questions' range (a model surer of
    most items than of any question asked: questions chosen for the model's doubt, few audits;
    or a model whose confidences run on another scale than the askers'). ``unasked``: the
    questions answered before the first model (no confidence: they cannot calibrate), which
    the reason for too few names.

    ``source=HELD_OUT``: the pairs are a cross-validation's held-out labels instead (each
    one's confidence of the fold's model, fitted on the other labels, and whether its guess was
    right), and the reasons say so: a model of nearly the same labels as the one estimated,
    where the questions may have been asked by much weaker ones (see ``HELD_OUT``).

    The range is the ``INTERVAL`` percentiles of ``n_boot`` refits on resampled questions,
    widened by ``allowance`` on each side (within 0–1): see ``ALLOWANCE``. Where an unlabeled
    item's tenth of confidence holds fewer than ``min_per_bin`` answered questions (*thin*: see
    ``MIN_PER_BIN``), the range reaches instead the bounds its answers allow there
    (``_thin_bounds``), and ``AccuracyNow.thin`` says for how many items; ``NoAccuracyNow``
    when that makes a range wider than ``max_thin_width`` for a tenth or more of the items."""
    pool = np.asarray(pool_confidence, dtype=float)
    conf = np.asarray(asked_confidence, dtype=float)
    right = np.asarray(asked_right, dtype=float)
    if len(conf) != len(right):
        raise InvalidInputError(f"{len(conf)} confidences for {len(right)} answers")
    keep = np.isfinite(conf)
    conf, right = conf[keep], right[keep]
    pool = pool[np.isfinite(pool)]
    if len(pool) == 0:
        return NoAccuracyNow("every item of the fixed sample has a label")
    held = source == HELD_OUT
    pairs = "labels held out in cross-validation" if held else "answered questions"
    fill = "more labels fill it in" if held else "audit answers, asked at random, fill it in"
    if len(conf) < min_asked:
        if held:
            return NoAccuracyNow(
                f"it needs {min_asked} labels held out in cross-validation, has {len(conf):,}"
            )
        return NoAccuracyNow.too_few(len(conf), min_asked, unasked)
    n_right = int(right.sum())
    if min(n_right, len(right) - n_right) < min_each:
        return NoAccuracyNow(
            f"the model's guess was right on {n_right} of {len(right)} {pairs}; it"
            f" needs {min_each} right and {min_each} wrong to calibrate"
        )
    covered = float(np.mean((pool >= conf.min()) & (pool <= conf.max())))
    if covered < min_covered:
        return NoAccuracyNow(
            f"the model's confidence on {1 - covered:.0%} of the unlabeled items is outside"
            f" that of every {'label held out' if held else 'answered question'}"
            f" ({conf.min():.0%}–{conf.max():.0%}); {fill}"
        )

    def mapped(c: np.ndarray, r: np.ndarray) -> float:
        return float(np.mean(_calibrated(c, r, pool)))

    on_pool = _calibrated(conf, right, pool)
    estimate = float(np.mean(on_pool))
    rng = np.random.default_rng(random_state)
    boots = [mapped(conf[pick], right[pick]) for pick in _resamples(len(conf), n_boot, rng)]
    low, high = (float(v) for v in np.percentile(boots, INTERVAL))
    thin, down, up, span = _thin_bounds(pool, on_pool, conf, right, min_per_bin)
    kept = allowance * (1 - thin)  # the thin tenths' bounds stand in for the allowance there
    low, high = (
        max(min(low, estimate) - kept - down, 0.0),
        min(max(high, estimate) + kept + up, 1.0),
    )
    if thin >= THIN_SAID and high - low > max_thin_width:
        return NoAccuracyNow(
            f"not enough {'labels' if held else 'answers'} yet at the model's confidence on"
            f" {thin:.0%} of the unlabeled items ({span[0]:.0%}–{span[1]:.0%}: fewer than"
            f" {min_per_bin} {pairs} in each tenth there), so its range would be"
            f" {low:.0%}–{high:.0%}; {fill}"
        )
    return AccuracyNow(estimate, low, high, len(pool), len(conf), thin, source)


def _calibrated(conf: np.ndarray, right: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """``pool``'s confidences mapped to right-or-wrong by the isotonic fit of ``right`` (0/1)
    on ``conf``, within 0–1, clipped at the fitted range's ends: what scikit-learn's
    ``IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(conf, right).predict(pool)``
    gives (the same numbers: tests/model/test_stopping.py), in its steps without the
    estimator's checks, which were two thirds of a fit's time here: the answers at each
    confidence averaged (weighted by their number), scikit-learn's ``isotonic_regression`` over
    them, and a straight line between the fitted points. ``accuracy_now`` fits the map 201
    times a retrain or refresh (its bootstrap): 0.13 s, 0.05 s so."""
    from sklearn.isotonic import isotonic_regression

    xs, where = np.unique(conf, return_inverse=True)
    weight = np.bincount(where).astype(float)
    fitted = isotonic_regression(
        np.bincount(where, weights=right) / weight, sample_weight=weight, y_min=0.0, y_max=1.0
    )
    return np.interp(np.clip(pool, xs[0], xs[-1]), xs, fitted)


def _thin_bounds(
    pool: np.ndarray,
    on_pool: np.ndarray,
    conf: np.ndarray,
    right: np.ndarray,
    min_per_bin: int,
    n_bins: int = N_BINS,
) -> tuple[float, float, float, tuple[float, float]]:
    """For the unlabeled items (``pool``, the map's value on each ``on_pool``) whose bin of
    confidence holds fewer than ``min_per_bin`` answered questions: their share, how far below
    and above the map's mean their bounds reach (each a share of the whole pool), and the span
    of confidence of those bins (the lowest's low edge, the highest's high edge). A bin's
    bounds are its answers' Wilson interval (``THIN_CONFIDENCE``; no answer: 0–1), raised to
    the highest lower bound of the bins below it and lowered to the lowest upper bound above it
    (accuracy rising with confidence)."""
    from model.evaluation import wilson_interval

    asked, pool_bins = _bins(conf, n_bins), _bins(pool, n_bins)
    n = np.bincount(asked, minlength=n_bins)
    n_right = np.bincount(asked, weights=right, minlength=n_bins)
    bounds = np.array(
        [
            wilson_interval(int(round(n_right[b])), int(n[b]), confidence=THIN_CONFIDENCE)
            for b in range(n_bins)
        ]
    )
    lower = np.maximum.accumulate(bounds[:, 0])
    upper = np.maximum(np.minimum.accumulate(bounds[::-1, 1])[::-1], lower)
    thin = n[pool_bins] < min_per_bin
    if not thin.any():
        return 0.0, 0.0, 0.0, (0.0, 0.0)
    down = np.maximum(on_pool - lower[pool_bins], 0.0)[thin].sum() / len(pool)
    up = np.maximum(upper[pool_bins] - on_pool, 0.0)[thin].sum() / len(pool)
    span = (pool_bins[thin].min() / n_bins, (pool_bins[thin].max() + 1) / n_bins)
    return float(thin.mean()), float(down), float(up), (float(span[0]), float(span[1]))


def _bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Each value's bin of ``n_bins`` equal ones over 0–1 (1.0 in the last)."""
    return np.clip(np.floor(values * n_bins).astype(int), 0, n_bins - 1)


def _resamples(n: int, n_boot: int, rng: np.random.Generator):
    for _ in range(n_boot):
        yield rng.integers(0, n, n)
