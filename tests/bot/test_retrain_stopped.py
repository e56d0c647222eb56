"""A retrain the server's stop ends leaves the database and the models folder agreeing, says so
in one line (no traceback), and posts its "retrain stopped" report.

From an outside test (SIGTERM to `hitl serve` during the nightly retrain, under libfaketime):
the run was recorded "failed: stopped", the database named no champion, yet the fit went on in
its child process and wrote v1 as champion into the models folder (`hitl models`: promoted);
APScheduler logged the job's CancelledError as an ERROR with its traceback; and the report was
lost ("no answer from Slack (ServerDisconnectedError)"): the server closed Slack's session
without waiting for the nightly job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.triggers.date import DateTrigger

from bot.learning import jobs, retrain
from bot.learning.jobs import STOPPED_REPORT, Trainer, run_retrain
from bot.sandbox import FakeSlack
from bot.store import Store
from model import ModelRegistry
from tests.bot.harness import Bot, make_settings, seed, start_bot
from tests.bot.test_learning import UNLABELED, bot, labeled_items  # noqa: F401 - bot: fixture
from tests.fake_slack import CHANNEL
from tests.processes import exits_within

BOUND = 120  # seconds: each wait ends in well under one; only a failing test waits this long


def registry_of(db: Path) -> ModelRegistry:
    return ModelRegistry(Path(f"{db}.models"))


@contextlib.asynccontextmanager
async def held(pid: int) -> AsyncIterator[None]:
    """The fit's child ``pid`` stopped (SIGSTOP) while the block runs (the server's stop in
    it), continued after (if the stop has not ended it), and then gone within ``BOUND``."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):  # ended by the stop
            os.kill(pid, signal.SIGCONT)
    assert await asyncio.to_thread(exits_within, pid, BOUND), "the fit's child outlived it"


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ERROR lines and the lines with a traceback."""
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info
    ]


async def test_a_stop_during_the_nightly_retrain_is_clean_and_promotes_nothing(
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """The nightly job (APScheduler) fits in its child process, held there (SIGSTOP) while
    the server stops, as `hitl serve` stops on SIGTERM."""
    db = tmp_path / "hitl.db"
    seed(db, labeled_items() + UNLABELED)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), refresh_every=0)
    # the nightly time is now (the scheduler runs it as soon as it starts)
    monkeypatch.setattr(jobs, "make_trigger", lambda _settings: DateTrigger(datetime.now(UTC)))
    served = start_bot(fake_slack, settings, background=True)  # as `hitl serve`
    with caplog.at_level(logging.INFO):
        running = await anext(served)
        trainer = Trainer.of(running.rt)
        assert trainer.worker is not None
        await trainer.worker.wait_handed(1)  # the nightly fit is in its child
        [pid] = trainer.worker.child_pids()
        async with held(pid):  # held mid-fit
            await served.aclose()  # the server stops

    assert problems(caplog) == []
    [run] = _runs(db)
    assert (run["triggered_by"], run["status"]) == ("schedule", "failed")
    assert run["detail"]["reason"].startswith("stopped: the server was shutting down")
    assert registry_of(db).versions() == []  # the folder names no model, as the database
    assert _champion(db) is None
    assert [m["text"] for m in fake_slack.messages(CHANNEL)][-1] == STOPPED_REPORT
    said = [r.getMessage() for r in caplog.records if "stopped: the server" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("retrain failed: stopped: the server")


async def test_a_fit_forked_as_the_retrain_is_stopped_writes_no_model(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """The stop comes while the fit's child is being forked (a round trip to the fork
    server): the child, started after the retrain was recorded as stopped, fitted and wrote
    v1 as champion. It is now given up before it starts: it writes nothing."""
    forking, release, forked = threading.Event(), threading.Event(), threading.Event()
    pids: list[int] = []

    class HeldPool(ProcessPoolExecutor):
        """The fit's pool, its child forked only once the test lets it."""

        def _adjust_process_count(self) -> None:  # in ``submit``: forks the child
            forking.set()
            release.wait(BOUND)
            try:
                super()._adjust_process_count()
                pids.extend(p.pid for p in self._processes.values())
            finally:
                forked.set()

    monkeypatch.setattr(retrain, "ProcessPoolExecutor", HeldPool)
    trainer = Trainer.of(bot.rt)
    trainer.worker = retrain.FitWorker()
    try:
        nightly = asyncio.create_task(run_retrain(bot.rt, "schedule"))
        assert await asyncio.to_thread(forking.wait, BOUND)  # its child is being forked
        nightly.cancel()  # what the scheduler's stop does to the job
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await nightly
        [run] = _runs(bot.rt.settings.db)
        assert run["status"] == "failed"  # recorded at once
        assert await asyncio.to_thread(forked.wait, BOUND)
        [pid] = pids
        assert await asyncio.to_thread(exits_within, pid, BOUND), "its child fits on"
    finally:
        trainer.worker.close()
    assert registry_of(bot.rt.settings.db).versions() == []  # nothing written after the stop
    assert bot.store.champion_version() is None


async def test_a_retrain_waiting_behind_a_refresh_when_the_server_stops_is_recorded_stopped(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """An admin's `/hitl retrain` whose run is recorded and whose task waits for the fit lock
    (a refresh of the working model fits, held here by SIGSTOP, as the server's first refresh
    held the soak's retrain) when the server stops. Its run stayed "running" and the retrain
    lock held after a clean exit (benchmarks/soak.py --quick: "runs by status {'running': 1}"),
    though the "Retrain stopped" report was posted."""
    db = tmp_path / "hitl.db"
    seed(db, labeled_items() + UNLABELED)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), refresh_every=3)
    served = start_bot(fake_slack, settings, background=True)  # as `hitl serve`
    with caplog.at_level(logging.INFO):
        running = await anext(served)
        trainer = Trainer.of(running.rt)
        assert trainer.worker is not None
        await trainer.worker.wait_handed(1)  # the start's refresh (labels, no model) fits
        assert trainer.refresh_task is not None and not trainer.refresh_task.done()
        [pid] = trainer.worker.child_pids()
        async with held(pid):  # held mid-fit, the fit lock with it
            assert (await running.command("retrain", "U0ADMIN")).status == 200
            await running.rt.background.drain(BOUND)  # begun: its run recorded, its task made
            assert trainer.task is not None and not trainer.task.done()
            assert [r["status"] for r in _runs(db)] == ["running"]
            await served.aclose()  # the server stops

    assert problems(caplog) == []
    [run] = _runs(db)
    assert (run["triggered_by"], run["status"]) == ("<@U0ADMIN>", "failed")
    assert run["detail"]["reason"].startswith("stopped: the server was shutting down")
    with Store.open(db) as store:
        assert store.db["locks"].count == 0  # the next retrain is not refused
    assert [m["text"] for m in fake_slack.messages(CHANNEL)][-1] == STOPPED_REPORT


async def test_a_retrain_whose_task_the_stop_cancels_before_it_ran_is_recorded_stopped(
    bot: Bot,  # noqa: F811
):
    """`/hitl retrain` began (run recorded, lock taken) and made its task; the stop's cancel
    came before the task ran a line: nothing in it could record the end. The server's stop
    ends it once its tasks are done (``stop_begun``), as it ends one that ran."""
    trainer = Trainer.of(bot.rt)
    assert await jobs.start_retrain(bot.rt, "<@U0ADMIN>") is None  # begun, its task made
    trainer.closing = True  # what the server's stop does: no new work, the fit worker closed
    trainer.worker = retrain.FitWorker()
    trainer.worker.close()
    trainer.task.cancel()  # in the same turn of the loop: the task never ran
    with pytest.raises(asyncio.CancelledError):
        await trainer.task
    assert [r["status"] for r in bot.store.runs("retrain")] == ["running"]

    await jobs.stop_begun(bot.rt)

    [run] = bot.store.runs("retrain")
    assert run["status"] == "failed"
    assert run["detail"]["reason"] == "stopped: the server was shutting down (CancelledError)"
    assert bot.store.db["locks"].count == 0
    assert [m["text"] for m in bot.fake.messages(CHANNEL)][-1] == STOPPED_REPORT


def _runs(db: Path) -> list[dict]:
    with Store.open(db) as store:
        return store.runs("retrain")


def _champion(db: Path) -> int | None:
    with Store.open(db) as store:
        return store.champion_version()
