"""A step is a fit flat over every size but the smallest (``c`` in the tens), not a smooth
curve tested on a few labels: an outside review's trec curves (200 labels, 20 or 40 of them
drawn uniformly, so each point is tested on 10 or 20: half a label is 5 or 2.5 points) fitted
c = 1.22 and 1.35 and were refused as steps ("no forecast yet" at 200 labels). And a forecast
read back from before steps were refused is judged again by its parameters."""

from __future__ import annotations

import numpy as np
import pytest

from model.stopping import Extrapolation, _fit_curve, _is_step, extrapolate

# trec seed 0, 200 labels, tested on 10 (20 uniform) and 20 (40 uniform) labels a point
HEALTHY = [
    ([38, 38, 76, 76, 114, 114, 152, 152, 190, 190],
     [0.2, 0.4, 0.4, 0.3, 0.3, 0.5, 0.2, 0.5, 0.4, 0.4], 10),
    ([36, 36, 72, 72, 108, 108, 144, 144, 180, 180],
     [0.45, 0.4, 0.4, 0.5, 0.5, 0.5, 0.4, 0.55, 0.45, 0.5], 20),
]  # fmt: skip
# steps from the same review: c = 20.1 and 10.5, flat after the smallest size
STEPS = [
    ([76, 76, 152, 152, 228, 228, 304, 304, 380, 380],
     [0.55, 0.55, 0.75, 0.65, 0.75, 0.65, 0.7, 0.65, 0.7, 0.65], 20),
    ([78, 78, 156, 156, 234, 234, 312, 312, 390, 390],
     [0.5, 0.6, 0.7, 0.6, 0.6, 0.7, 0.6, 0.7, 0.6, 0.7], 10),
]  # fmt: skip


@pytest.mark.parametrize(("sizes", "scores", "n_test"), HEALTHY)
def test_a_smooth_curve_tested_on_few_labels_keeps_its_forecast(sizes, scores, n_test):
    x = np.array(sizes, dtype=float)
    params = _fit_curve(x, np.array(scores))
    assert params is not None and 1.0 < params[2] < 2.0  # a moderate exponent: no step
    assert not _is_step(params, x, n_test)
    found = extrapolate(sizes, scores, 200, n_test=n_test)
    assert found is not None
    assert found.low is not None and found.low <= found.gain <= found.high
    assert found.high - found.low > 0.01
    assert not found.refused()  # read back, it is shown


@pytest.mark.parametrize(("sizes", "scores", "n_test"), STEPS)
def test_a_step_is_still_no_forecast(sizes, scores, n_test):
    x = np.array(sizes, dtype=float)
    params = _fit_curve(x, np.array(scores))
    assert params[2] > 10 and _is_step(params, x, n_test)
    assert extrapolate(sizes, scores, 400, n_test=n_test) is None


def stored(**changes) -> Extrapolation:
    data = {"n_labels": 1000, "next_labels": 500, "a": 0.6, "b": 4.5e22, "c": 10.22,
            "at_n": 0.6, "gain": 0.0, "low": 0.0, "high": 0.0, "n_points": 10,
            "n_test": 10}  # fmt: skip
    return Extrapolation.from_dict(data | changes)


def test_a_stored_forecast_of_a_step_or_a_sure_zero_is_refused_when_read():
    assert stored().refused()  # "+0.0 points (range +0.0 to +0.0)" of a step
    assert stored(n_test=None).refused()  # stored before n_test was
    assert stored(low=0.0, high=0.04).refused()  # a step, though its range is not zero
    assert stored(b=float("inf")).refused()
    assert not stored(b=8.5, c=1.22, gain=0.011, high=0.15).refused()  # a smooth curve's


@pytest.mark.parametrize(
    ("n_labels", "sizes", "scores", "n_test"),
    [  # benchmarks/results/stopping_advice.jsonl.gz: sms_spam seed 2, banking77 seed 1
        (475, [86, 86, 172, 172, 258, 258, 344, 344, 431, 431], [1.0] * 10, 44),
        (150, [26, 26, 53, 53, 80, 80, 107, 107, 134, 134],
         [0.125, 0.125, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.125], 16),
    ],
)  # fmt: skip
def test_the_benchmark_guesses_a_rows_test_labels_from_its_sizes(n_labels, sizes, scores, n_test):
    """Rows stored without ``n_test``: the smallest count every score is a whole number of
    was 2 for scores all 1.0 (a range +0.0 to +5.1 where 44 labels give +0.0 to +0.3), and 8
    for 0.125 and 0.25; the labels less the largest training size are what was tested on."""
    from tests.benchmarks.runner import benchmark_module

    guess = benchmark_module("stopping.py")["_n_test"]
    row = {"method": "uniform", "n_labels": n_labels, "curve": [sizes, scores], "predicted": None}
    assert guess(row) == n_test
