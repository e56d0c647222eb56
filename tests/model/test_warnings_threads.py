"""Warnings the model hides stay hidden whatever other threads do with theirs.

``warnings.catch_warnings()`` is process-wide: a thread leaving it puts back the filter list it
found, dropping the "ignore" of a thread that entered after it and still fits (the first
week's defect 10: a stray "OptimizeWarning: Covariance …", a flaky test under
``filterwarnings = error``). The threads here are ordered with events, not timing: thread A
enters its quiet block and waits inside, thread B enters its own and waits inside, A leaves,
then B warns."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

from model import stopping
from model.classifier import fit_pipeline
from model.stopping import curve_points

WAIT = 30  # seconds an event may take at most: a hang fails the test instead of blocking it


class _Step:
    """Events that order two threads: ``inside`` once a thread is in, ``go`` to let it on."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.go = threading.Event()

    def pause(self) -> None:
        self.inside.set()
        assert self.go.wait(WAIT), "never let on"


class _PausesInFirstFit(DummyClassifier):
    """The learning curve's estimator: its first fit waits inside ``curve_points``' quiet
    block (thread A) until let on."""

    step: _Step | None = None

    def fit(self, X, y, sample_weight=None):
        step, type(self).step = type(self).step, None
        if step is not None:
            step.pause()
        return super().fit(X, y, sample_weight)


class _WarnsLikeASolver(DummyClassifier):
    """A pipeline's last step: waits inside ``fit_pipeline``'s quiet block (thread B), then
    warns as a solver that did not converge does."""

    step: _Step | None = None

    def fit(self, X, y, sample_weight=None):
        assert type(self).step is not None
        type(self).step.pause()
        warnings.warn(
            "lbfgs failed to converge after 100 iteration(s)", ConvergenceWarning, stacklevel=2
        )
        return super().fit(X, y, sample_weight)


def _in_thread(target, failures: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _a_learning_curve_paused_inside(step: _Step, failures: list[BaseException]):
    """Thread A: the product's learning curve, paused in its first fit (inside its block)."""
    _PausesInFirstFit.step = step
    texts = [f"t{n}" for n in range(40)]
    labels = ["u", "x"] * 20
    thread = _in_thread(
        lambda: curve_points(texts, labels, lambda: _PausesInFirstFit(strategy="most_frequent")),
        failures,
    )
    assert step.inside.wait(WAIT), "thread A never fitted"
    return thread


def test_a_fit_keeps_its_warnings_hidden_when_another_threads_block_ends_first():
    failures: list[BaseException] = []
    a, b = _Step(), _Step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that escapes is an exception in its thread
        thread_a = _a_learning_curve_paused_inside(a, failures)
        _WarnsLikeASolver.step = b
        pipeline = Pipeline([("clf", _WarnsLikeASolver(strategy="most_frequent"))])
        thread_b = _in_thread(lambda: fit_pipeline(pipeline, ["a", "b"], ["u", "x"]), failures)
        assert b.inside.wait(WAIT), "thread B never fitted"
        a.go.set()  # A's curve ends and leaves its block while B is inside fit_pipeline's
        thread_a.join(WAIT)
        with pytest.raises(ConvergenceWarning):  # a thread outside the block: shown, as ever
            warnings.warn("lbfgs failed to converge", ConvergenceWarning, stacklevel=1)
        b.go.set()  # then B warns
        thread_b.join(WAIT)
        assert not thread_a.is_alive() and not thread_b.is_alive()
        assert failures == []  # before: ConvergenceWarning raised in B, from its fit
        # and nothing hides the warnings of the thread that hid none (before: B, leaving last,
        # put back A's copy of the filters, its blanket "ignore" with it)
        with pytest.raises(UserWarning, match="still shown"):
            warnings.warn("still shown", UserWarning, stacklevel=2)
        with pytest.raises(ConvergenceWarning):
            warnings.warn("lbfgs failed to converge", ConvergenceWarning, stacklevel=2)


def test_the_forecasts_fit_warns_about_nothing_while_another_thread_leaves_its_block():
    # 3 points for 3 parameters: no covariance, which curve_fit warned about
    x = np.array([10.0, 20.0, 40.0])
    y = np.array([0.5, 0.6, 0.65])
    failures: list[BaseException] = []
    a, b = _Step(), _Step()
    fits = 0
    original = stopping._log_law

    def pausing_law(*args):
        nonlocal fits
        fits += 1
        if fits == 1:  # the fit's first step: thread B is inside _fit_from
            b.pause()
        return original(*args)

    found: list[np.ndarray | None] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        thread_a = _a_learning_curve_paused_inside(a, failures)
        stopping._log_law = pausing_law
        try:
            thread_b = _in_thread(
                lambda: found.append(stopping._fit_from(x, y, (0.7, 1.0, 0.3))), failures
            )
            assert b.inside.wait(WAIT), "thread B never fitted"
            a.go.set()  # A leaves its block while B fits
            thread_a.join(WAIT)
            b.go.set()
            thread_b.join(WAIT)
        finally:
            stopping._log_law = original
        assert not thread_a.is_alive() and not thread_b.is_alive()
    assert failures == []  # before: OptimizeWarning raised in B, from curve_fit
    assert len(found) == 1 and found[0] is not None and np.all(np.isfinite(found[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and alone, nothing to hide either
        params = stopping._fit_from(x, y, (0.7, 1.0, 0.3))
    np.testing.assert_allclose(
        stopping.inverse_power_law(x, *params), y, atol=1e-6
    )  # 3 points, 3 parameters: through all three
