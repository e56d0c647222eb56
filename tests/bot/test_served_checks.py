"""Whose a refresh's check is goes by identity, not by time: the champion it was refreshed
from, the run that made that champion, and whether the refresh was dropped because the champion
changed while it fitted (an outside review: after `/hitl rollback 1` during a refresh of v2,
`hitl accuracy` showed the dropped refresh's "still changing 14%" and "learning curve of
r1150" as v1's; a clock 30 minutes fast brought v2's refresh back after a rollback, or hid v1's
own refresh as "another model"). And a forecast refused (a step, a range of zero width) is "no
forecast" for its model, not an older check's forecast, nor one stored before the refusal that
is of the refused kind ("+0.0 points (range +0.0 to +0.0)")."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from bot.learning import retrain
from bot.learning import stopping as learning_stopping
from bot.learning.jobs import Trainer, run_retrain, run_rollback
from bot.learning.rollback import begin_rollback
from bot.learning.stopping import read_stop_plan, stop_status
from bot.sandbox import FakeSlack
from bot.store import Store
from model.stopping import Extrapolation
from tests.bot.harness import Bot, Item, seed
from tests.bot.test_refresh import answer_next, started
from tests.bot.test_rollback_stopping import FORECAST, model, promote, roll_back


class Clock:
    """A clock one second on at each reading, ``offset`` seconds wrong (NTP was off)."""

    def __init__(self) -> None:
        self.seconds = 0
        self.offset = 0

    def __call__(self) -> str:
        self.seconds += 1
        n = self.seconds + self.offset
        return f"2026-12-05T10:{n // 60:02d}:{n % 60:02d}.000+00:00"


def refreshed(
    store: Store, n_train: int, changed: float, gain: float | None, *, base: int | None,
    dropped: bool = False, curve: bool = True,
) -> None:  # fmt: skip
    """A refresh's check as ``jobs.refresh`` records it: refreshed from the champion ``base``,
    ``dropped`` when the champion changed while it fitted."""
    found = None
    if gain is not None:
        found = FORECAST | {"n_labels": n_train, "gain": gain, "high": gain + 0.02}
    store.record_stop_check(kind="refresh", model_version=-n_train, n_train=n_train, draw=1,
                            predictions=["a"] * 10, changed=changed, span=500,
                            extrapolation=found, keep_since=n_train - 100,
                            accuracy={"estimate": 0.7, "low": 0.6, "high": 0.8, "n_pool": 10,
                                      "n_asked": 40},
                            curve=curve, base_version=base, dropped=dropped)  # fmt: skip


def items(tmp_path: Path) -> Path:
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"text {n}") for n in range(10)])
    return tmp_path / "hitl.db"


def test_a_refresh_of_v2_dropped_by_the_rollback_to_v1_is_not_v1s(tmp_path: Path):
    with Store.open(items(tmp_path), Clock()) as store:
        promote(store, 1, 600)
        promote(store, 2, 1100)
        roll_back(store, 1, was=2)  # while a refresh of v2 fits
        refreshed(store, 1150, 0.14, 0.03, base=2, dropped=True)  # recorded after it
        status = stop_status(store)
        text = "\n".join(status.lines())
        assert (status.model, status.accuracy_model, status.served) == ("v1", "v1", ""), text
        assert "r1150" not in text and "14.0%" not in text
        assert [c["model_version"] for c in store.stop_checks(served=True)] == [1]


def test_a_refresh_recorded_by_a_clock_that_ran_ahead_is_not_the_rolled_back_to_models(
    tmp_path: Path,
):
    clock = Clock()
    with Store.open(items(tmp_path), clock) as store:
        promote(store, 1, 600)
        promote(store, 2, 1100)
        clock.offset = 1800  # 30 minutes fast while v2 is refreshed
        refreshed(store, 1150, 0.14, 0.03, base=2)
        clock.offset = 0  # set right
        roll_back(store, 1, was=2)
        status = stop_status(store)
        assert (status.model, status.accuracy_model) == ("v1", "v1"), status.lines()
        assert "r1150" not in "\n".join(status.lines())


def test_the_rolled_back_to_models_refresh_counts_though_the_rollback_was_stamped_ahead(
    tmp_path: Path,
):
    clock = Clock()
    with Store.open(items(tmp_path), clock) as store:
        promote(store, 1, 600, own_check=False)  # trained before checks were kept
        promote(store, 2, 1100)
        clock.offset = 1800
        roll_back(store, 1, was=2)  # stamped 30 minutes fast
        clock.offset = 0
        refreshed(store, 1175, 0.03, 0.02, base=1)  # refreshed from v1, after the rollback
        status = stop_status(store)
        assert status.served == "", status.lines()[0]  # no "Checks of another model"
        assert (status.model, status.accuracy_model) == ("r1175", "r1175")


def test_a_refresh_of_the_champion_before_its_promotion_and_rollback_is_not_its_now(
    tmp_path: Path,
):
    """v1 refreshed, v2 promoted, rolled back to v1: v1 is served again from its file, not the
    working model refreshed from it before; nor does a refresh of v1 that a promotion dropped."""
    with Store.open(items(tmp_path), Clock()) as store:
        promote(store, 1, 600)
        refreshed(store, 650, 0.05, 0.04, base=1)
        assert stop_status(store).accuracy_model == "r650"
        promote(store, 2, 1100)
        refreshed(store, 700, 0.05, 0.04, base=1, dropped=True)  # v2 came while it fitted
        assert stop_status(store).accuracy_model == "v2"
        roll_back(store, 1, was=2)
        status = stop_status(store)
        assert (status.model, status.accuracy_model) == ("v1", "v1"), status.lines()


def test_a_forecast_refused_now_is_no_forecast_not_an_older_one(tmp_path: Path):
    with Store.open(items(tmp_path), Clock()) as store:
        promote(store, 1, 600)  # v1's forecast: +1.0 points
        refreshed(store, 700, 0.01, None, base=1)  # measured, refused (a step): stored None
        status = stop_status(store)
        assert status.extrapolation is None and status.model == "r700"
        assert status.lines()[1].startswith("*Next 500 labels:* no forecast yet"), status.lines()
        # a refresh that did not measure the curve leaves the newest measured one standing
        refreshed(store, 710, 0.01, None, base=1, curve=False)
        assert stop_status(store).extrapolation is None
        # and the curve counts as measured at 700 labels: not again at every refresh
        assert not read_stop_plan(store, refresh_labels=800).curve
        assert read_stop_plan(store, refresh_labels=875).curve


# a step forecast as stored before forecasts were refused: "+0.0 points (range +0.0 to +0.0)"
STEP = {"n_labels": 600, "next_labels": 500, "a": 0.62, "b": 4.5e22, "c": 10.2, "at_n": 0.62,
        "gain": 0.0, "low": 0.0, "high": 0.0, "n_points": 10, "n_test": 60}  # fmt: skip


@pytest.mark.parametrize("n_test", [60, None])
def test_a_stored_step_forecast_is_not_shown_nor_advises_stopping(tmp_path: Path, n_test):
    with Store.open(items(tmp_path), Clock()) as store:
        run = store.start_run("retrain", "cli")
        model(store, 1, "champion", 600)
        store.finish_run(run, "promoted", {})
        step = STEP | {"n_test": n_test}
        store.record_stop_check(kind="retrain", model_version=1, n_train=600, draw=1,
                                predictions=["a"] * 10, changed=None, span=None,
                                extrapolation=step, keep_since=500)  # fmt: skip
        for n in (700, 800):  # refreshes from before m036: a NULL forecast, nothing recorded
            store.record_stop_check(kind="refresh", model_version=-n, n_train=n, draw=1,
                                    predictions=["a"] * 10, changed=0.01, span=100,
                                    extrapolation=None, keep_since=n - 100)  # fmt: skip
        status = stop_status(store)
        text = "\n".join(status.lines())
        assert status.extrapolation is None, text
        assert "+0.0 to +0.0" not in text and "no forecast yet" in text


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    async for running in await started(fake_slack, tmp_path, refresh_every=3):
        yield running


async def test_a_rollback_while_a_refresh_of_v2_fits_leaves_v1s_lines(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
):
    """The order of events of ``jobs.refresh``: a rollback (which does not wait for the fit
    lock) while a refresh of v2 fits; the refresh's check is recorded after the rollback ran,
    and the refresh is dropped. `hitl accuracy` goes by v1's checks."""
    await run_retrain(bot.rt, "cli")
    assert (await run_retrain(bot.rt, "cli", force=True)).promoted
    assert bot.rt.champion.version == 2
    fitting, go = threading.Event(), threading.Event()
    compute = retrain.compute_refresh

    def held(plan, model):  # noqa: ANN001, ANN202
        fitting.set()
        assert go.wait(120)
        return compute(plan, model)

    monkeypatch.setattr(retrain, "compute_refresh", held)
    trainer = Trainer.of(bot.rt)
    try:
        for _ in range(3):
            await answer_next(bot)
        assert await asyncio.to_thread(fitting.wait, 120)  # the refresh of v2 fits
        registry = retrain.registry_for(bot.rt.settings)
        plan = begin_rollback(bot.store, registry, 1, triggered_by="<@U0ADMIN>")
        await run_rollback(bot.rt, plan)
        assert bot.rt.champion.version == 1
    finally:
        go.set()
    await trainer.settled()
    assert trainer.refreshes == 1 and bot.rt.working is None  # dropped
    newest = bot.store.stop_checks(limit=1)[-1]
    assert newest["kind"] == "refresh"  # it counts for when to stop: recorded ...
    status = stop_status(bot.store)
    assert status.accuracy_model == "v1", status.lines()  # ... but not as v1's
    assert all(c["kind"] == "retrain" for c in bot.store.stop_checks(served=True))


async def test_a_refresh_whose_forecast_is_refused_shows_none_not_the_retrains(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
):
    """The retrain's curve gave a forecast; the refresh's, measured on more labels, is
    refused (``extrapolate`` returns None: a step). "Next 500 labels" says there is none, not
    the retrain's forecast."""
    forecast = Extrapolation(12, 500, 0.9, 1.0, 0.5, 0.6, 0.05, 0.01, 0.09, 10, 30)
    monkeypatch.setattr(learning_stopping, "_curve", lambda *_, **__: forecast)
    await run_retrain(bot.rt, "cli")
    shown = stop_status(bot.store).extrapolation  # capped at the room v1's accuracy leaves
    assert shown is not None and shown.with_accuracy(None) == forecast
    monkeypatch.setattr(learning_stopping, "_curve", lambda *_, **__: None)  # refused
    trainer = Trainer.of(bot.rt)
    for _ in range(3):
        await answer_next(bot)
    await trainer.settled()
    assert trainer.refreshes == 1
    status = stop_status(bot.store)
    lines = status.lines()
    assert status.accuracy_model == "r15" and status.model == "r15", lines
    assert status.extrapolation is None
    assert lines[1].startswith("*Next 500 labels:* no forecast yet"), lines
