"""The nightly scheduler looks at the wall clock again on its own: a run time the clock jumps
past (an NTP step forward, a machine suspended overnight) runs within SCHEDULER_WAKE_SECONDS of
the jump. APScheduler's AsyncIOScheduler waits with ``loop.call_later``, on the monotonic clock,
which a wall clock step does not move (nor a suspend): nothing woke it, and the retrain ran
late by the whole jump (from an outside test under libfaketime: a 1 h step, the run 1 h late)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED
from apscheduler.schedulers import base as scheduler_base

from bot.learning import jobs
from bot.learning.jobs import Trainer, start_scheduler, stop_scheduler
from tests.bot.harness import Bot
from tests.bot.test_demo_first2 import bot  # noqa: F401 - the fixture (labels billing, bug)

WAKE = 0.05  # seconds: the wake period, made small
BOUND = 30  # seconds: a wake comes within WAKE; without it, never (the timer waits hours)


def jumped_clock(offset: timedelta) -> type[datetime]:
    """``datetime`` whose ``now`` is the wall clock ``offset`` ahead: the scheduler's clock
    stepped forward, while the loop's monotonic clock (its timer) did not move."""

    class Jumped(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206 - datetime's signature
            return datetime.now(tz) + offset

    return Jumped


async def test_a_run_time_the_wall_clock_jumps_past_runs_without_a_manual_wakeup(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(jobs, "SCHEDULER_WAKE_SECONDS", WAKE, raising=False)
    hour = (datetime.now(UTC).hour + 12) % 24  # the nightly time: 11 to 12 hours away
    bot.rt.settings = bot.rt.settings.with_changes(retrain_cron=f"0 {hour} * * *", timezone="UTC")
    scheduler = start_scheduler(bot.rt)
    try:
        loop = asyncio.get_running_loop()
        submitted: asyncio.Future[None] = loop.create_future()
        finished: asyncio.Future[int] = loop.create_future()

        def heard(event) -> None:  # noqa: ANN001 - APScheduler's event
            if event.code == EVENT_JOB_SUBMITTED and not submitted.done():
                submitted.set_result(None)
            elif event.code != EVENT_JOB_SUBMITTED and not finished.done():
                finished.set_result(event.code)

        scheduler.add_listener(heard, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        await asyncio.sleep(0)  # one turn of the loop: the scheduler's start sets its timer
        timer = scheduler._timeout  # noqa: SLF001 - the timer APScheduler waits on
        assert timer.when() - loop.time() > 3600  # for the nightly run, hours away
        due = scheduler.get_job("retrain").next_run_time
        # the wall clock steps a second past it; nobody calls wakeup() (modify_job would)
        jump = due - datetime.now(due.tzinfo) + timedelta(seconds=1)
        monkeypatch.setattr(scheduler_base, "datetime", jumped_clock(jump))
        try:
            await asyncio.wait_for(asyncio.shield(submitted), timeout=BOUND)
        except TimeoutError:
            pytest.fail(f"the run the clock jumped past did not start within {BOUND} s")
        assert await asyncio.wait_for(finished, timeout=120) == EVENT_JOB_EXECUTED
        assert scheduler.get_job("retrain").next_run_time > due  # next: the night after
    finally:
        stop_scheduler(bot.rt, scheduler)
    [run] = bot.store.runs("retrain")  # once
    assert (run["triggered_by"], run["status"]) == ("schedule", "promoted")
    assert Trainer.of(bot.rt).waker is None  # the wake stops with the scheduler
