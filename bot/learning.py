"""The learning loop inside `hitl serve`: the nightly schedule, admin retrains, reports, and
keeping the champion in memory in step with the database (the CLI may retrain or roll back
while the server runs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import loop, reports
from bot.config import Settings
from bot.loop import Outcome, Plan
from bot.runtime import Runtime

logger = logging.getLogger(__name__)


def make_trigger(settings: Settings) -> CronTrigger:
    """HITL_RETRAIN_CRON in HITL_TIMEZONE, parsed by APScheduler."""
    return CronTrigger.from_crontab(settings.retrain_cron, timezone=ZoneInfo(settings.timezone))


def is_missed(trigger: CronTrigger, last_started: datetime | None, now: datetime) -> bool:
    """True when a scheduled time passed since the last retrain started (the server was down)."""
    if last_started is None:
        return False
    due = trigger.get_next_fire_time(None, last_started)
    return due is not None and due <= now


async def sync_champion(rt: Runtime) -> None:
    """Reload the champion when the database names another one (a CLI retrain or rollback)."""
    version = rt.store.champion_version()
    current = rt.champion.version if rt.champion else None
    if version is None or version == current or rt.registry is None:
        return
    rt.champion = await asyncio.to_thread(loop.load_champion, rt.registry)
    logger.info("champion is now v%s", rt.champion.version if rt.champion else None)


async def run_retrain(
    rt: Runtime, triggered_by: str, *, force: bool = False, plan: Plan | None = None
) -> Outcome:
    """Retrain, swap in a promoted champion, re-score the queue and post the report."""
    assert rt.registry is not None

    def swap(champion: loop.Champion) -> None:
        rt.champion = champion

    outcome = await loop.retrain(
        rt.store,
        rt.settings,
        rt.registry,
        champion=rt.champion,
        triggered_by=triggered_by,
        force=force,
        on_champion=swap,
        plan=plan,
        worker=rt.fit_worker,
    )
    rt.wake_dispatcher.set()
    quiet = triggered_by.startswith("schedule") and outcome.status in ("busy", "nothing_new")
    if not quiet:  # a night with nothing new is recorded in runs, not announced
        await post_report(rt, reports.retrain_text(outcome, admins=rt.settings.admins))
    return outcome


def start_retrain(rt: Runtime, triggered_by: str, *, force: bool = False) -> Outcome | None:
    """Begin a retrain now (takes the lock) and finish it in the background.

    Returns the outcome at once when there is nothing to do (busy, nothing new), else None.
    """
    assert rt.registry is not None
    started = loop.begin(rt.store, rt.settings, rt.registry, triggered_by=triggered_by, force=force)
    if isinstance(started, Outcome):
        return started
    rt.retrain_task = asyncio.create_task(
        run_retrain(rt, triggered_by, force=force, plan=started), name="hitl-retrain"
    )
    return None


async def post_report(rt: Runtime, text: str) -> None:
    channel = rt.settings.effective_report_channel
    if not channel:
        return
    try:
        await rt.client.chat_postMessage(channel=channel, text=text, mrkdwn=True)
    except (SlackApiError, SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("could not post the report to %s: %s", channel, type(exc).__name__)


async def scheduled_retrain(rt: Runtime) -> None:
    try:
        await run_retrain(rt, "schedule")
    except Exception:  # noqa: BLE001 - the scheduler must survive a failed night
        logger.exception("scheduled retrain failed")


def start_scheduler(rt: Runtime) -> AsyncIOScheduler:
    """Run the nightly retrain inside the server (APScheduler, one instance at a time)."""
    scheduler = AsyncIOScheduler(timezone=ZoneInfo(rt.settings.timezone))
    scheduler.add_job(
        scheduled_retrain,
        make_trigger(rt.settings),
        args=[rt],
        id="retrain",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
    )
    scheduler.start()
    rt.scheduler_alive = True
    return scheduler


async def catch_up(rt: Runtime, now: datetime) -> Outcome | None:
    """At start: run the retrain the server missed while it was down, once."""
    last = rt.store.last_run("retrain")
    last_started = datetime.fromisoformat(last["started_at"]) if last else None
    if not is_missed(make_trigger(rt.settings), last_started, now):
        return None
    logger.warning("the server missed a scheduled retrain; running it now")
    return await run_retrain(rt, "schedule (missed while down)")


def stop_scheduler(rt: Runtime, scheduler: AsyncIOScheduler) -> None:
    with contextlib.suppress(Exception):
        scheduler.shutdown(wait=False)
    rt.scheduler_alive = False
