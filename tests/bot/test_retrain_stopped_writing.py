"""A stop while the retrain's child writes its model files waits for them and records them.

From a review: the server's stop cancels the retrain's task as it awaits the child's call, and
a task cancels the future it awaits; so ``FitWorker._written``'s wait for the files ended at
once, the child was terminated mid-write and the run recorded "failed: stopped" (were it past
its promotion, the models folder named a champion the database did not). And the wait (30 s)
was longer than the server's own wait for its tasks (10 s).

The child is held as it begins writing (``HeldAbandon``: it may write, and waits for the test
before it does), which the server's stop finds; the test lets it go once the stop waits."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.date import DateTrigger

from bot.learning import jobs, retrain
from bot.learning.jobs import STOPPED_REPORT, Trainer
from bot.sandbox import FakeSlack
from tests.bot.harness import make_settings, seed, start_bot
from tests.bot.test_learning import UNLABELED, labeled_items
from tests.bot.test_retrain_stopped import (
    BOUND,
    _champion,
    _runs,
    exits_within,
    problems,
    registry_of,
)
from tests.fake_slack import CHANNEL

SERVER_TASK_WAIT = 10.0  # bot/server.py: the stop's asyncio.wait(tasks, timeout=10)


class HeldAbandon(retrain.ChildAbandon):
    """The fit's ``ChildAbandon``, whose child, once it may write its files (the server can
    no longer give it up), says so (``writing``) and waits for the test (``release``)."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        # semaphores, not events: an Event's set waits for its sleepers to wake, and one
        # terminated while it waits (the old code's stop) never does
        self.writing = context.Semaphore(0)
        self.release = context.Semaphore(0)

    def begin_writing(self) -> bool:  # in the child
        if not super().begin_writing():
            return False
        self.writing.release()
        self.release.acquire(timeout=BOUND)
        return True


async def _held_nightly(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, Trainer, HeldAbandon, Path]:
    """`hitl serve` whose nightly retrain runs now, its child held as it begins writing."""
    db = tmp_path / "hitl.db"
    seed(db, labeled_items() + UNLABELED)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), refresh_every=0)
    monkeypatch.setattr(jobs, "make_trigger", lambda _settings: DateTrigger(datetime.now(UTC)))
    monkeypatch.setattr(retrain, "ChildAbandon", HeldAbandon)
    served = start_bot(fake_slack, settings, background=True)
    running = await anext(served)
    trainer = Trainer.of(running.rt)
    await trainer.worker.wait_handed(1)
    abandon = trainer.worker._abandon  # noqa: SLF001
    assert isinstance(abandon, HeldAbandon)
    assert await asyncio.to_thread(abandon.writing.acquire, timeout=BOUND), (
        "the child never began writing"
    )
    return served, trainer, abandon, db


async def test_a_stop_while_the_child_writes_waits_for_its_files_and_records_them(
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    waiting = threading.Event()  # the stop waits for the child's files (``_written``)
    written = retrain.FitWorker._written  # noqa: SLF001

    async def waits(waiter: asyncio.Future, executor: Any) -> Any:
        waiting.set()
        return await written(waiter, executor)

    monkeypatch.setattr(retrain.FitWorker, "_written", staticmethod(waits))
    with caplog.at_level(logging.INFO):
        served, trainer, abandon, db = await _held_nightly(fake_slack, tmp_path, monkeypatch)
        [pid] = trainer.worker.child_pids()

        def let_go() -> None:  # the child writes once the stop waits for it
            waiting.wait(BOUND)
            abandon.release.release()

        releaser = threading.Thread(target=let_go, daemon=True)
        releaser.start()
        try:
            await served.aclose()  # the server stops (SIGTERM) while the child writes
        finally:
            waiting.set()  # the releaser ends, if the stop never waited
            releaser.join(BOUND)
        assert waiting.is_set()
        assert await asyncio.to_thread(exits_within, pid, BOUND), "the fit's child outlived it"

    [run] = _runs(db)
    assert (run["triggered_by"], run["status"]) == ("schedule", "promoted"), (
        f"the writing fit was killed, not waited for: {run['status']} {run['detail']}"
    )
    assert [(v.version, v.status) for v in registry_of(db).versions()] == [(1, "champion")]
    assert _champion(db) == 1  # the database and the models folder agree
    last = [m["text"] for m in fake_slack.messages(CHANNEL)][-1]
    assert last != STOPPED_REPORT and last.startswith("*Retrain v1: promoted"), last
    assert problems(caplog) == []


def test_the_wait_for_a_writing_child_fits_in_the_servers_wait_for_its_tasks():
    # the wait, the run's record and its report (jobs.STOPPED_REPORT_SECONDS) end before the
    # server's stop gives its tasks up and closes Slack's session and the database under them
    assert retrain.WRITE_WAIT_SECONDS + jobs.STOPPED_REPORT_SECONDS < SERVER_TASK_WAIT
