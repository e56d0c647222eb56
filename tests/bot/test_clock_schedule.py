"""The nightly retrain against the wall clock: a run time that passed unseen (the machine
suspended over it, the clock set forward) runs once, late; a time the clocks skip as they spring
forward at midnight runs right after the jump, as cron runs it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED

from bot.config import Settings
from bot.learning.jobs import is_missed, make_trigger, start_scheduler, stop_scheduler
from tests.bot.harness import Bot
from tests.bot.test_demo_first2 import bot  # noqa: F401 - the fixture (labels billing, bug)


async def test_a_nightly_run_the_clock_jumped_over_runs_once_late(bot: Bot):  # noqa: F811
    """Resumed from a suspend of two days (or a wall clock set forward): the run times passed
    while nothing ran. APScheduler dropped them ("was missed by 1:58:04"), so the night had no
    retrain until a restart's catch_up; now the missed nights are one run, late."""
    scheduler = start_scheduler(bot.rt)
    try:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()

        def heard(event) -> None:  # noqa: ANN001 - APScheduler's JobExecutionEvent
            if not done.done():
                loop.call_soon_threadsafe(done.set_result, event.code)

        scheduler.add_listener(heard, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        job = scheduler.get_job("retrain")
        # what the scheduler holds when the machine resumes: a run time two to three days back
        # (the timer set for it fires only now); three nightly times have passed since
        scheduler.modify_job("retrain", next_run_time=job.next_run_time - timedelta(days=3))
        scheduler.wakeup()
        code = await asyncio.wait_for(done, timeout=120)
        assert code == EVENT_JOB_EXECUTED, "the missed run was dropped, not run late"
        assert scheduler.get_job("retrain").next_run_time > datetime.now(UTC)  # next: tonight
    finally:
        stop_scheduler(bot.rt, scheduler)
    [run] = bot.store.runs("retrain")  # three nights passed: one run, not three
    assert (run["triggered_by"], run["status"]) == ("schedule", "promoted")


@pytest.mark.parametrize(
    ("zone", "cron", "day_before", "jump"),
    [
        # the clocks go from 00:00 to 01:00 (Beirut: at 00:00, so 00:15 never shows)
        ("America/Santiago", "0 0 * * *", (2026, 9, 5), "2026-09-06 01:00 -03"),
        ("America/Havana", "0 0 * * *", (2027, 3, 13), "2027-03-14 01:00 CDT"),
        ("Asia/Beirut", "15 0 * * *", (2027, 3, 27), "2027-03-28 01:00 EEST"),
        ("Africa/Cairo", "30 0 * * *", (2027, 4, 29), "2027-04-30 01:00 EEST"),
        # within the night (02:00 -> 03:00): at the jump too, not at 02:30 in winter's offset
        ("Europe/Berlin", "30 2 * * *", (2027, 3, 27), "2027-03-28 03:00 CEST"),
    ],
)
def test_a_time_the_clocks_skip_runs_right_after_the_jump_once(zone, cron, day_before, jump):
    trigger = make_trigger(Settings(retrain_cron=cron, timezone=zone))
    noon = datetime(*day_before, 12, 0, tzinfo=ZoneInfo(zone))
    fires, previous, now = [], None, noon
    for _ in range(3):
        previous = now = trigger.get_next_fire_time(previous, now)
        fires.append(now)
    assert fires[0].strftime("%Y-%m-%d %H:%M %Z") == jump  # APScheduler: the day after
    hour, minute = int(cron.split()[1]), int(cron.split()[0])
    assert [(f.date() - noon.date()).days for f in fires] == [1, 2, 3]  # once a night
    assert [(f.hour, f.minute) for f in fires[1:]] == [(hour, minute)] * 2
    # a server started after the jump's run has missed nothing; one started the night after has
    started = fires[0].astimezone(UTC) + timedelta(seconds=3)
    assert not is_missed(trigger, started, fires[1].astimezone(UTC) - timedelta(minutes=1))
    assert is_missed(trigger, started, fires[1].astimezone(UTC) + timedelta(minutes=1))
