"""After a rollback, "When to stop", "Next 500 labels" and "Accuracy now" are of the model
served (an outside test: after `hitl rollback 1`, `hitl accuracy` said "Model v1" and then
v2's "still changing: the last 500 labels changed 15.5%" and "learning curve of v2 on its
1,100 labels"). With no check of the model served stored, the lines say whose they are."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from bot.learning.stopping import StopStatus, read_stop_plan, stop_status
from bot.store import Store
from tests.bot.harness import Item, seed

FORECAST = {"next_labels": 500, "a": 0.9, "b": 1.0, "c": 0.5, "at_n": 0.6, "low": 0.01,
            "n_points": 10, "n_test": 30}  # fmt: skip


def ticking() -> Callable[[], str]:
    """A clock one second on at each reading (runs and checks are ordered by it)."""
    seconds = itertools.count()

    def now() -> str:
        n = next(seconds)
        return f"2026-12-05T10:{n // 60:02d}:{n % 60:02d}.000+00:00"

    return now


def model(store: Store, version: int, status: str, n_train: int) -> None:
    store.record_model({"version": version, "status": status, "created_at": "",
                        "n_train": n_train, "label_set": [], "metrics": {}, "model_file": "",
                        "sha256": ""})  # fmt: skip


def check(store: Store, kind: str, version: int, n_train: int, changed, gain: float | None):
    found = None
    if gain is not None:
        found = FORECAST | {"n_labels": n_train, "gain": gain, "high": gain + 0.02}
    store.record_stop_check(kind=kind, model_version=version, n_train=n_train, draw=1,
                            predictions=["a"] * 10, changed=changed,
                            span=None if changed is None else 500, extrapolation=found,
                            keep_since=n_train - 100,
                            accuracy={"estimate": 0.7, "low": 0.6, "high": 0.8,
                                      "n_pool": 10, "n_asked": 40})  # fmt: skip


def promote(store: Store, version: int, n_train: int, *, own_check: bool = True) -> None:
    run = store.start_run("retrain", "cli")
    if version > 1:
        model(store, version - 1, "retired", 0)
    model(store, version, "champion", n_train)
    store.finish_run(run, "promoted", {})
    if own_check:
        check(store, "retrain", version, n_train, None if version == 1 else 0.155, version / 100)


def roll_back(store: Store, to: int, was: int) -> None:
    run = store.start_run("rollback", "cli")
    model(store, was, "retired", 0)
    model(store, to, "champion", 0)
    store.finish_run(run, "ok", {"version": to, "previous": was})


def test_after_a_rollback_the_stopping_lines_are_the_served_models(tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text {n}") for n in range(10)])
    with Store.open(tmp_path / "hitl.db", ticking()) as store:
        promote(store, 1, 600)
        check(store, "refresh", -650, 650, None, 0.05)  # refreshed from v1
        promote(store, 2, 1100)
        check(store, "refresh", -1150, 1150, 0.14, 0.03)  # refreshed from v2
        assert stop_status(store).model == "r1150"
        roll_back(store, 1, was=2)
        status = stop_status(store)
        assert (status.model, status.n_train, status.accuracy_model) == ("v1", 600, "v1")
        assert status.signal.changed is None  # v1's: no model 100 labels older
        assert status.extrapolation.gain == 0.01
        text = "\n".join(status.lines())
        assert "learning curve of v1 on its 600 labels" in text, text
        assert "v2" not in text and "r1150" not in text and "r650" not in text
        assert "15.5%" not in text
        # and as the retrain report stores it
        assert StopStatus.from_dict(status.as_dict()).lines() == status.lines()
        # the served model's curve is older than the labels: the next refresh measures one
        assert read_stop_plan(store, refresh_labels=1175).curve
        check(store, "refresh", -1175, 1175, 0.03, None)  # refreshed from v1, after it
        status = stop_status(store)
        assert (status.accuracy_model, status.signal.changed) == ("r1175", 0.03)
        assert status.model == "v1"  # the newest curve of the model served


def test_with_no_check_of_the_model_served_the_lines_say_whose_they_are(tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text {n}") for n in range(10)])
    with Store.open(tmp_path / "hitl.db", ticking()) as store:
        promote(store, 1, 600, own_check=False)  # trained before checks were kept
        promote(store, 2, 1100)
        roll_back(store, 1, was=2)
        status = stop_status(store)
        lines = status.lines()
        assert lines[0].startswith("*Checks of another model:* the lines below are of v2,")
        assert "not of v1, the model served now" in lines[0]
        assert status.served == "v1"
        assert "learning curve of v2 on its 1,100 labels" in lines[2]
        assert StopStatus.from_dict(status.as_dict()).lines() == lines
