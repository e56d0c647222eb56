"""The learning loop: schedule, missed runs, retrains, promotion and rejection, locks,
rollback, re-scoring, accuracy you can trust, the chart, and a click during a retrain."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.learning import reports, retrain
from bot.learning.jobs import (
    CHAMPION_CHECK_SECONDS,
    Trainer,
    catch_up,
    is_missed,
    make_trigger,
    run_retrain,
    scheduled_retrain,
    start_scheduler,
    stop_scheduler,
    sync_champion,
)
from bot.learning.scoring import choose, scorer_of
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.fake_slack import CHANNEL

BILLING = [
    "refund my invoice",
    "charged twice on my card",
    "invoice amount is wrong",
    "please refund the payment",
    "billing address on invoice",
    "card payment failed",
]
BUG = [
    "app crashes on start",
    "error 500 when saving",
    "screen freezes after login",
    "crash when uploading",
    "button does nothing error",
    "page shows an error",
]


def labeled_items(prefix: str = "L") -> list[Item]:
    items = [Item(f"{prefix}b{n}", t, "billing") for n, t in enumerate(BILLING)]
    return items + [Item(f"{prefix}g{n}", t, "bug") for n, t in enumerate(BUG)]


UNLABELED = [
    Item("u1", "refund the invoice please"),
    Item("u2", "crash error on login"),
    Item("u3", "hello there"),
    Item("u4", "invoice error crash"),
]


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", labeled_items() + UNLABELED)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), max_open=2)
    async for running in start_bot(fake_slack, settings):
        yield running


def add_labels(store: Store, items: list[Item]) -> None:
    store.add_items(items, "import")


# -- the schedule ---------------------------------------------------------------------------


def test_cron_fires_at_the_configured_time_in_the_time_zone(tmp_path: Path):
    from bot.config import Settings

    settings = Settings(retrain_cron="30 2 * * *", timezone="Europe/Berlin")
    trigger = make_trigger(settings)
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    due = trigger.get_next_fire_time(None, now)
    assert due.astimezone(UTC) == datetime(2026, 11, 25, 1, 30, tzinfo=UTC)  # 02:30 CET


@pytest.mark.parametrize(
    ("cron", "days"),
    [
        ("0 3 * * 1-5", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]),
        ("0 3 * * 0", ["Sun"] * 6),
        ("0 3 * * 7", ["Sun"] * 6),
        ("0 3 * * 6", ["Sat"] * 6),
        ("0 3 * * */2", ["Tue", "Thu", "Sat", "Sun", "Tue", "Thu"]),
        ("0 3 * * 5-7", ["Fri", "Sat", "Sun", "Fri", "Sat", "Sun"]),
        ("0 3 * * mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]),
    ],
)
def test_the_days_of_the_week_are_read_as_cron_reads_them(cron: str, days: list[str]):
    # APScheduler 3 counts weekdays from Monday: "1-5" passed through ran Tuesday to Saturday.
    trigger = make_trigger(Settings(retrain_cron=cron))
    moment, seen = datetime(2026, 12, 6, 12, tzinfo=UTC), []  # a Sunday noon
    for _ in range(6):
        moment = trigger.get_next_fire_time(None, moment)
        seen.append(moment.strftime("%a"))
        moment += timedelta(minutes=1)
    assert seen == days


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("0 3 31 2 *", "never comes (no such date, e.g. the 31st of February)"),
        ("0 3 1 * mon", "both a day of the month and a day of the week"),
        ("0 3 * * 8", "'8' is not a day of the week"),
        ("0 3 * * 5-1", "the day of the week '5-1' is not a range"),
    ],
)
def test_a_schedule_cron_would_read_otherwise_or_that_never_comes_is_refused(cron, why):
    with pytest.raises(ConfigError) as caught:
        load_settings({"HITL_RETRAIN_CRON": cron}, None)
    [problem] = caught.value.problems
    assert problem.startswith(f'HITL_RETRAIN_CRON="{cron}" ') and why in problem, problem


def test_a_run_is_missed_only_when_a_scheduled_time_passed_since_the_last_one():
    from bot.config import Settings

    trigger = make_trigger(Settings())  # 03:00 UTC
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert is_missed(trigger, datetime(2026, 11, 23, 3, 0, 5, tzinfo=UTC), now)
    assert not is_missed(trigger, datetime(2026, 11, 24, 3, 0, 5, tzinfo=UTC), now)
    assert not is_missed(trigger, None, now)


def test_a_set_hour_the_clocks_pass_twice_runs_once_as_in_cron():
    """On the night clocks go back (London, 25 October 2026: 01:00-01:59 passes twice) the
    01:30 retrain runs at the first 01:30 only, also for a server restarted in between; a
    schedule by the hour (*/20) runs on through the repeated hour."""
    from bot.config import Settings

    def fires(cron: str, start: datetime, end: datetime) -> list[str]:
        trigger = make_trigger(Settings(retrain_cron=cron, timezone="Europe/London"))
        out, previous, now = [], None, start
        while (fire := trigger.get_next_fire_time(previous, now)) < end:
            out.append(fire.astimezone(UTC).strftime("%d %H:%M"))
            previous = now = fire
        return out

    night = datetime(2026, 10, 24, 12, 0, tzinfo=UTC), datetime(2026, 10, 26, 12, 0, tzinfo=UTC)
    assert fires("30 1 * * *", *night) == ["25 00:30", "26 01:30"]  # BST, then GMT
    hours = datetime(2026, 10, 25, 0, 0, tzinfo=UTC), datetime(2026, 10, 25, 2, 0, tzinfo=UTC)
    assert fires("*/30 * * * *", *hours) == ["25 00:00", "25 00:30", "25 01:00", "25 01:30"]
    # restarted at 01:45 GMT, after the run at the first 01:30 (00:30 UTC): nothing missed
    trigger = make_trigger(Settings(retrain_cron="30 1 * * *", timezone="Europe/London"))
    first_run = datetime(2026, 10, 25, 0, 30, 4, tzinfo=UTC)
    assert not is_missed(trigger, first_run, datetime(2026, 10, 25, 1, 45, tzinfo=UTC))
    assert is_missed(trigger, first_run, datetime(2026, 10, 26, 1, 45, tzinfo=UTC))


async def two_models(bot: Bot) -> None:
    """v1, then v2 trained on more labels: something to roll back to."""
    await run_retrain(bot.rt, "cli")
    add_labels(bot.store, labeled_items("M"))
    await run_retrain(bot.rt, "cli")


async def test_the_scheduler_registers_the_nightly_job_and_its_run_retrains(bot: Bot):
    scheduler = start_scheduler(bot.rt)
    try:
        job = scheduler.get_job("retrain")
        assert str(job.trigger) == str(make_trigger(bot.rt.settings))
        assert bot.rt.trainer.scheduler_alive is True
        await scheduled_retrain(bot.rt)  # what the scheduler calls at 03:00
    finally:
        stop_scheduler(bot.rt, scheduler)
    [run] = bot.store.runs("retrain")
    assert (run["triggered_by"], run["status"]) == ("schedule", "promoted")
    assert bot.rt.champion is not None and bot.rt.champion.version == 1
    report = (await bot.fake.next_call("chat.postMessage")).params["text"]
    assert report.startswith("*Retrain v1: promoted ✅* (schedule,")


async def test_a_retrain_missed_while_down_runs_once_at_start(bot: Bot):
    old = bot.store.start_run("retrain", "schedule")
    bot.store.db["runs"].update(old, {"started_at": "2026-11-20T03:00:00.000+00:00"})
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    outcome = await catch_up(bot.rt, now)
    assert outcome is not None and outcome.status == "promoted"
    assert bot.store.runs("retrain")[0]["triggered_by"] == "schedule (missed while down)"
    assert await catch_up(bot.rt, now) is None  # once


async def test_no_new_labels_records_nothing_new_and_skips_training(bot: Bot):
    await run_retrain(bot.rt, "schedule")
    again = await run_retrain(bot.rt, "schedule")
    assert again.status == "nothing_new"
    statuses = [r["status"] for r in bot.store.runs("retrain")]
    assert statuses == ["nothing_new", "promoted"]
    assert len(retrain.registry_for(bot.rt.settings).versions()) == 1
    assert len(bot.fake.calls_to("chat.postMessage")) == 1  # a quiet night is not announced


# -- promotion, rejection, force, rollback --------------------------------------------------


def char_only_items(prefix: str, n: int) -> list[Item]:
    """Every word is new, but the class shows in its letters: only character n-grams help."""
    items = []
    for i in range(n):
        items.append(Item(f"{prefix}i{i}", f"invoicexq{i}zz", "billing"))
        items.append(Item(f"{prefix}c{i}", f"crashvw{i}kk", "bug"))
    return items


async def test_promoted_then_rejected_with_reasons_in_db_and_report(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", char_only_items("a", 6))
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    async for bot in start_bot(fake_slack, settings):
        first = await run_retrain(bot.rt, "<@U0ADMIN>")
        assert first.status == "promoted" and first.reason.startswith("promoted: first model")
        add_labels(bot.store, char_only_items("b", 6))
        # A word-only candidate cannot read letters: worse than the champion on the same folds.
        bot.rt.settings = bot.rt.settings.with_changes(pipeline="word_lr")
        second = await run_retrain(bot.rt, "<@U0ADMIN>")
        assert second.status == "rejected"
        assert "worse than the champion" in second.reason
        models = {m["version"]: m for m in bot.store.models()}
        assert (models[1]["status"], models[2]["status"]) == ("champion", "rejected")
        assert models[2]["reason"] == second.reason
        reports_posted = [c.params["text"] for c in bot.fake.calls_to("chat.postMessage")]
        assert "*Retrain v2: rejected ❌*" in reports_posted[1]
        assert f"*Why:* {second.reason}" in reports_posted[1]
        assert "v1 stays champion" in reports_posted[1]
        assert bot.rt.champion.version == 1

        forced = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
        assert forced.status == "promoted" and forced.forced
        assert "⚠️ *Forced:*" in bot.fake.calls_to("chat.postMessage")[-1].params["text"]
        assert bot.store.champion_version() == 3


async def test_concurrent_retrains_one_runs_the_other_is_told(bot: Bot):
    registry = retrain.registry_for(bot.rt.settings)
    plan = retrain.begin(bot.store, bot.rt.settings, registry, triggered_by="cli")
    assert isinstance(plan, retrain.Plan)
    _, [text] = await retrain_told(bot)
    assert text.startswith("Not started: a retrain by cli is already running (")
    assert text.endswith("); try again when it is done.")
    other = retrain.begin(bot.store, bot.rt.settings, registry, triggered_by="cli")
    assert isinstance(other, retrain.Outcome) and other.status == "busy"
    await retrain.retrain(
        bot.store, bot.rt.settings, registry, champion=None, triggered_by="cli", plan=plan
    )
    assert bot.store.db["locks"].count == 0


@pytest.mark.parametrize("where", ["killed here", "elsewhere", "alive here"])
async def test_a_lock_left_by_a_killed_retrain_is_taken_over_and_its_run_ends_failed(
    bot: Bot, where: str
):
    # A server killed during a retrain leaves the lock and a "running" run. On this machine
    # a holder whose process is gone holds nothing; another machine's holder is trusted
    # until the lock expires (its processes cannot be seen from here).
    ended = await asyncio.create_subprocess_exec("true")
    await ended.wait()  # ended and reaped: its pid names no process
    pid = os.getpid() if where == "alive here" else ended.pid
    host = "elsewhere.example" if where == "elsewhere" else socket.gethostname()
    now = datetime.now(UTC)
    holder = f"retrain by <@U0RAJ> on {host}:{pid}:0badc0de"
    later = retrain.iso_time(now + timedelta(hours=2))
    assert bot.store.acquire_lock(retrain.LOCK, holder, retrain.iso_time(now), later) is None
    bot.store.start_run("retrain", "<@U0RAJ>")

    _, told = await retrain_told(bot)

    [*new, killed] = bot.store.runs("retrain")
    if where == "killed here":
        assert told == [], told  # it began: its report goes to the channel
        assert killed["status"] == "failed" and killed["finished_at"]
        assert f"its process, {holder}, is gone" in killed["detail"]["reason"]
        assert len(new) == 1
    else:
        [text] = told
        assert text.startswith(f"Not started: a retrain by <@U0RAJ> is already running ({host}:")
        assert killed["status"] == "running" and new == []


async def test_an_expired_lock_whose_holder_runs_here_is_held_until_the_holder_ends(bot: Bot):
    # A retrain that outlasts LOCK_TTL (or a clock that jumps forward: a VM resumed from
    # suspend) leaves an expired lock while its process still runs on this machine: a second
    # retrain must wait for that process, not for the clock; once it has ended, it takes over.
    running = await asyncio.create_subprocess_exec("cat", stdin=asyncio.subprocess.PIPE)
    holder = f"retrain by <@U0RAJ> on {socket.gethostname()}:{running.pid}:0badc0de"
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    expired = retrain.iso_time(long_ago + retrain.LOCK_TTL)
    assert bot.store.acquire_lock(retrain.LOCK, holder, retrain.iso_time(long_ago), expired) is None
    bot.store.start_run("retrain", "<@U0RAJ>")
    try:
        _, [text] = await retrain_told(bot)
        where = holder.rpartition(" on ")[2]
        assert text.startswith(f"Not started: a retrain by <@U0RAJ> is already running ({where})")
        [first] = bot.store.runs("retrain")
        assert first["status"] == "running"
    finally:
        running.stdin.close()  # cat ends at end of input
        await running.wait()  # ended and reaped: its pid names no process

    assert (await retrain_told(bot))[1] == []  # it began: its report goes to the channel
    [_, first] = bot.store.runs("retrain")
    assert first["status"] == "failed"
    assert f"its process, {holder}, is gone" in first["detail"]["reason"]


async def test_an_expired_lock_whose_pid_is_now_another_process_is_taken(bot: Bot):
    # A container restarted with the same hostname gives its first processes the same pids:
    # the holder's pid then names a live process that is not the holder (here: this one,
    # under a start stamp it never had). Its lock must go once expired, not stay for ever.
    me = f"{socket.gethostname()}:{os.getpid()}"
    holder = f"retrain by <@U0RAJ> on {me}:0badc0de:00000000.1"
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    expired = retrain.iso_time(long_ago + retrain.LOCK_TTL)
    assert bot.store.acquire_lock(retrain.LOCK, holder, retrain.iso_time(long_ago), expired) is None
    bot.store.start_run("retrain", "<@U0RAJ>")

    assert (await retrain_told(bot))[1] == []  # it began: its report goes to the channel
    [_, first] = bot.store.runs("retrain")
    assert first["status"] == "failed"
    assert f"its process, {holder}, is gone" in first["detail"]["reason"]
    # this process's own stamp, in the owners it writes, keeps its locks held
    started = retrain.process_started(os.getpid())
    assert started and retrain.lock_owner("retrain by cli").endswith(f":{started}")
    assert retrain.holder_alive(f"retrain by cli on {me}:0badc0de:{started}") is True
    assert retrain.holder_alive(f"retrain by cli on {me}:0badc0de") is True  # an older owner


async def test_a_retrain_while_a_rollback_runs_says_a_rollback_is_running(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
):
    await two_models(bot)
    slow = SlowLoads(monkeypatch)
    try:
        assert (await rollback_reply(bot, "rollback 1")).startswith("Rolling back to v1")
        _, [text] = await retrain_told(bot)
        assert text.startswith("Not started: a rollback to v1 by <@U0ADMIN> is already running (")
        again = await rollback_reply(bot, "rollback 1")
        assert again.startswith("Cannot roll back: a rollback to v1 by <@U0ADMIN> is already ")
    finally:
        slow.release.set()
    await rollback_report(bot, 2)  # the first told the retrain was not started
    assert [r["status"] for r in bot.store.runs("rollback")] == ["ok"]
    assert bot.store.champion_version() == 1


async def test_another_machines_lock_expires_and_its_run_ends_failed(bot: Bot):
    # A retrain on another machine that crashed: its process cannot be seen from here, so
    # its lock holds until it expires, and its run is failed as unfinished, not as gone.
    registry = retrain.registry_for(bot.rt.settings)
    now = datetime.now(UTC)
    holder = "retrain by cli on elsewhere.example:4242:0badc0de"
    expires = retrain.iso_time(now + retrain.LOCK_TTL)
    assert bot.store.acquire_lock(retrain.LOCK, holder, retrain.iso_time(now), expires) is None
    bot.store.start_run("retrain", "cli")
    busy = retrain.begin(bot.store, bot.rt.settings, registry, triggered_by="cli", now=now)
    assert isinstance(busy, retrain.Outcome) and busy.status == "busy"
    later = now + retrain.LOCK_TTL + timedelta(minutes=1)
    plan = retrain.begin(bot.store, bot.rt.settings, registry, triggered_by="cli", now=later)
    assert isinstance(plan, retrain.Plan)
    [_, crashed] = bot.store.runs("retrain")
    assert crashed["status"] == "failed"
    assert crashed["detail"]["reason"] == f"it did not finish before its lock expired ({holder})"


async def test_rollback_makes_an_earlier_version_champion_again(bot: Bot):
    await two_models(bot)
    assert bot.rt.champion.version == 2
    text = await rollback_reply(bot, "rollback 1")
    assert text == "Rolling back to v1… I'll tell you here when it is done."
    assert await rollback_report(bot) == (
        "Model v1 is the champion again (rolled back by <@U0ADMIN>)."
    )
    assert bot.store.champion_version() == 1 and bot.rt.champion.version == 1
    assert retrain.registry_for(bot.rt.settings).champion().version == 1
    bad = await rollback_reply(bot, "rollback 7")
    assert bad == (
        "Cannot roll back: model v7 does not exist (`/hitl accuracy` lists the recent versions"
        " under *Trend*)"
    )
    [run] = bot.store.runs("rollback")
    assert (run["triggered_by"], run["status"]) == ("<@U0ADMIN>", "ok")
    assert bot.store.db["locks"].count == 0


async def rollback_reply(bot: Bot, text: str) -> str:
    """The immediate answer to an admin's `/hitl <text>` (its report comes by response_url)."""
    response = await bot.command(text, "U0ADMIN", response_url=bot.fake.response_url(CHANNEL))
    assert response.status == 200
    return await response.text()


async def rollback_report(bot: Bot, n: int = 1) -> str:
    """The text of the ``n``-th message sent to the command's response_url."""
    await bot.fake.wait_for(lambda: len(bot.fake.responses) >= n, 10)
    payload = bot.fake.responses[n - 1]["payload"]
    assert payload.get("response_type", "ephemeral") == "ephemeral"
    return payload["text"]


async def retrain_told(bot: Bot, text: str = "retrain") -> tuple[str, list[str]]:
    """An admin's `/hitl retrain`: its ack (at once, before the labels are read) and what the
    admin was told after it by the response_url (busy, nothing new, a lost database, too few
    labels; nothing when the retrain began: its report goes to the channel)."""
    told, others = len(bot.fake.responses), set(bot.rt.background.tasks)  # e.g. a rollback
    response = await bot.command(text, "U0ADMIN", response_url=bot.fake.response_url(CHANNEL))
    assert response.status == 200
    ack = await response.text()
    assert ack.startswith("Retraining"), ack
    async with asyncio.timeout(30):  # the command's listener, at work after its ack
        await asyncio.gather(*(bot.rt.background.tasks - others))
    return ack, [r["payload"]["text"] for r in bot.fake.responses[told:]]


class SlowLoads:
    """Holds the first ``hold`` model loads in this process (skops' ``loads``: reading a 543 MB
    file) until the test releases them, so a slow load is deterministic. A watchdog releases
    a load after WATCHDOG seconds, so code that blocks the event loop on it fails the test
    (``watchdog_fired``) instead of hanging it; passing tests never wait for it."""

    WATCHDOG = 30.0

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: int = 1) -> None:
        import skops.io as sio

        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.watchdog_fired = False
        real = sio.loads

        def loads(data, *args, **kwargs):
            self.calls += 1
            if self.calls <= hold:
                self.entered.set()
                if not self.release.wait(self.WATCHDOG):
                    self.watchdog_fired = True
            return real(data, *args, **kwargs)

        monkeypatch.setattr(sio, "loads", loads)


async def test_a_rollback_whose_model_load_is_slow_is_acked_at_once(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
):
    await two_models(bot)
    slow = SlowLoads(monkeypatch)
    try:
        text = await rollback_reply(bot, "rollback 1")
        assert not slow.watchdog_fired, "the ack waited for the model file"
        assert text == "Rolling back to v1… I'll tell you here when it is done."
        assert await asyncio.to_thread(slow.entered.wait, 10)  # the load is under way...
        health = await bot.http.get("/healthz")  # ...and the server answers meanwhile
        assert health.status == 200 and (await health.json())["champion"] == 2
        assert not slow.watchdog_fired
    finally:
        slow.release.set()
    assert await rollback_report(bot) == (
        "Model v1 is the champion again (rolled back by <@U0ADMIN>)."
    )
    assert bot.rt.champion.version == bot.store.champion_version() == 1
    assert slow.calls == 1  # the file is read and checked once, not again to serve it


async def test_a_rollback_that_cannot_load_says_why_without_a_path(bot: Bot):
    await two_models(bot)
    (bot.rt.settings.models_dir / "v1.skops").unlink()
    assert (await rollback_reply(bot, "rollback 1")).startswith("Rolling back to v1")
    report = await rollback_report(bot)
    assert report == "Cannot roll back: model v1's file is missing or unreadable"
    assert bot.store.champion_version() == bot.rt.champion.version == 2
    assert bot.store.runs("rollback")[0]["status"] == "failed"
    assert bot.store.db["locks"].count == 0


async def test_slack_rollback_to_a_rejected_model_needs_force_and_warns(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", char_only_items("a", 6))
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    async for bot in start_bot(fake_slack, settings):
        await run_retrain(bot.rt, "<@U0ADMIN>")
        add_labels(bot.store, char_only_items("b", 6))
        bot.rt.settings = bot.rt.settings.with_changes(pipeline="word_lr")
        rejected = await run_retrain(bot.rt, "<@U0ADMIN>")
        assert rejected.status == "rejected"
        scores = (
            f"accuracy {rejected.metrics['accuracy']:.1%}, "
            f"macro-F1 {rejected.metrics['macro_f1']:.3f}"
        )
        refused = await rollback_reply(bot, "rollback 2")
        assert refused == (
            f"Cannot roll back: model v2 was rejected ({scores}: {rejected.reason}); "
            "add --force to make it the champion anyway"
        )
        assert bot.store.runs("rollback") == []
        forced = await rollback_reply(bot, "rollback 2 --force")
        assert forced == (
            f"⚠️ v2 was rejected ({scores}: {rejected.reason}). Rolling back to it anyway "
            "(--force)… I'll tell you here when it is done."
        )
        assert await rollback_report(bot) == (
            "Model v2 is the champion again (rolled back by <@U0ADMIN>). "
            f"⚠️ Forced: the gate had rejected it ({scores})."
        )
        [row] = [m for m in bot.store.models() if m["version"] == 2]
        assert row["status"] == "champion"
        assert row["reason"] == (
            f"{rejected.reason} → rolled back to v2 by <@U0ADMIN>, forced although rejected "
            f"({scores})"
        )


async def test_a_cli_rollback_reaches_a_server_whose_channels_are_full(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    seed(db, labeled_items() + UNLABELED)
    for args in (["retrain"], ["retrain", "--force"]):
        assert (await hitl_here(db, *args))[0] == 0
    settings = make_settings(
        fake_slack,
        tmp_path,
        labels=("billing", "bug"),
        max_open=2,
        threshold=1.0,
        api_token="t0ken",
    )
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 2
        assert bot.store.open_post_counts() == {CHANNEL: 2}  # every channel is full
        assert bot.rt.champion.version == 2
        # What `hitl serve` runs in the background: the dispatcher and the scheduler.
        dispatcher = asyncio.create_task(bot.dispatcher.run())
        scheduler = start_scheduler(bot.rt)
        try:
            code, out = await hitl(db, "rollback", "1")
            assert (code, out) == (0, "v1 is the champion again.\n")
            bot.rt.wake_dispatcher()  # an answer arrives; the dispatcher finds no room
            watch = bot.rt.champion_holder.watch
            assert watch is not None and watch.every == CHAMPION_CHECK_SECONDS == 1.0  # README
            await watch.check_now()  # what happens on its own within `every` seconds
            health = await (await bot.http.get("/healthz")).json()
            assert health["champion"] == 1
            predicted = await bot.http.post(
                "/api/predict",
                json={"id": "p1", "text": "refund my card"},
                headers={"Authorization": "Bearer t0ken"},
            )
            assert (await predicted.json())["model_version"] == 1
            assert bot.store.open_post_counts() == {CHANNEL: 2}  # still full
        finally:
            stop_scheduler(bot.rt, scheduler)
            dispatcher.cancel()


async def hitl_here(db: Path, *args: str) -> tuple[int, str]:
    """The same `hitl` command in this process, for set-up steps that need no process of their
    own (a new interpreter costs ~2 s): from a thread, as the CLI runs its own event loop."""
    from click.testing import CliRunner

    from bot.cli import cli

    invoke = functools.partial(CliRunner().invoke, cli, ["--db", str(db), *args], prog_name="hitl")
    result = await asyncio.to_thread(invoke)
    assert result.exit_code == 0 or result.stderr, (result.output, result.exception)
    return result.exit_code, result.stdout


async def hitl(db: Path, *args: str) -> tuple[int, str]:
    """Run the real `hitl` command in its own process (as an admin at a terminal would)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--db",
        str(db),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0 or err, out
    return process.returncode, out.decode()


async def test_a_cli_promotion_reaches_the_running_server(bot: Bot):
    registry = retrain.registry_for(bot.rt.settings)
    await retrain.retrain(bot.store, bot.rt.settings, registry, champion=None, triggered_by="cli")
    assert bot.rt.champion is None
    await sync_champion(bot.rt)
    assert bot.rt.champion.version == 1


async def test_in_serve_a_promotion_leaves_the_walk_to_the_background_and_reports_at_once(
    bot: Bot,
):
    """`hitl serve` walks the queue in a background task, and at a million items a walk takes
    minutes. A retrain that re-scored the whole queue first held the fit lock that long (no
    refresh of the answers given meanwhile) and posted its report only then."""
    scorer = scorer_of(bot.rt)
    walker = asyncio.create_task(scorer.run())  # as `hitl serve` runs it
    try:
        await scorer.walking.acquire()  # a long walk under way
        outcome = await asyncio.wait_for(run_retrain(bot.rt, "cli"), 60)
        assert outcome.promoted and outcome.rescoring and not outcome.queue_after
        assert not Trainer.of(bot.rt).fit_lock.locked()  # a refresh may run
        report = (await bot.fake.next_call("chat.postMessage")).params["text"]
        queue = (
            "*Queue:* v1 is re-scoring the waiting items in the background (before it: 4 waiting"
            " for"
        )
        assert queue in report
        assert [it["model_version"] for it in bot.store.pool()] == [None] * 4
        scorer.walking.release()
        await scorer.catch_up()  # after the background walk (the lock is first come, first served)
        assert [it["model_version"] for it in bot.store.pool()] == [1] * 4
    finally:
        walker.cancel()


async def test_promotion_rescores_and_reorders_the_queue(bot: Bot):
    assert [it["confidence"] for it in bot.store.pool()] == [None] * 4
    outcome = await run_retrain(bot.rt, "cli")
    assert outcome.rescored == 4
    pool = bot.store.pool()
    assert {it["model_version"] for it in pool} == {1}
    margins = {it["id"]: it["ranked"][0][1] - it["ranked"][1][1] for it in pool}
    bot.rt.settings = bot.rt.settings.with_changes(audit_rate=0.0, threshold=1.0)
    import random

    order = [it["id"] for it, _ in choose(bot.rt, pool, 4, random.Random(0))]
    assert order == sorted(margins, key=lambda i: (margins[i], i))  # most uncertain first
    assert order[-1] in ("u1", "u2")  # the clearest items now wait last


# -- accuracy you can trust -------------------------------------------------------------------


async def test_audit_accuracy_and_wilson_interval_match_a_hand_check(bot: Bot):
    await run_retrain(bot.rt, "cli")
    extra = [Item(f"x{n}", f"audit item {n}") for n in range(10)]
    add_labels(bot.store, extra)
    for n, item in enumerate(extra):
        bot.store.record_post(item.id, CHANNEL, f"9.{n}", "audit", 1, "billing", 0.6)
        truth = "billing" if n < 8 else "bug"  # the model was right 8 times out of 10
        bot.store.record_answer(item.id, "U0ANA", truth, source="button", dedupe_key=f"k{n}")
    report = reports.accuracy_report(bot.store, bot.rt.registry, datetime.now(UTC))
    assert (report.audit_n, report.audit_correct) == (10, 8)
    lo, hi = report.audit_interval
    # Wilson 95%: p=0.8, n=10, z=1.96 → (0.490, 0.943), by hand.
    assert (round(lo, 3), round(hi, 3)) == (0.49, 0.943)
    text = reports.accuracy_text(report)
    assert (
        "*Live accuracy on audit posts* (random picks, unbiased): 80.0% (95% CI 49.0%–94.3%, n=10)"
        in text
    )


async def test_audit_accuracy_holds_when_a_label_is_renamed_or_merged(bot: Bot):
    # The posts keep the guess as it was shown ("bug"); the decided labels follow the rename.
    # A guess counts under the label's successor, or a rename, with no new answer, would turn
    # right guesses into wrong ones (60% became 20% of the same five answers).
    await run_retrain(bot.rt, "cli")
    extra = [Item(f"x{n}", f"audit item {n}") for n in range(5)]
    add_labels(bot.store, extra)
    guesses = ["bug", "bug", "billing", "bug", "billing"]
    truths = ["bug", "bug", "billing", "billing", "bug"]  # 3 of 5 right
    for n, (item, guess, truth) in enumerate(zip(extra, guesses, truths, strict=True)):
        bot.store.record_post(item.id, CHANNEL, f"9.{n}", "audit", 1, guess, 0.6)
        bot.store.record_answer(item.id, "U0ANA", truth, source="button", dedupe_key=f"k{n}")
    assert bot.store.live_accuracy(1, "audit") == (5, 3)
    current = ["billing", "bug"]
    current = bot.store.change_label_set(
        "rename", "bug", "bug_x", current=current, user_id="U0ADMIN"
    )
    assert bot.store.live_accuracy(1, "audit") == (5, 3)
    report = reports.accuracy_report(bot.store, bot.rt.registry, datetime.now(UTC))
    assert "audit posts* (random picks, unbiased): 60.0% (" in reports.accuracy_text(report)
    # A merge too: bug_x's items are billing now, and so are its guesses: all five right.
    bot.store.change_label_set("merge", "bug_x", "billing", current=current, user_id="U0ADMIN")
    assert bot.store.live_accuracy(1, "audit") == (5, 5)


async def test_an_audit_question_posted_twice_counts_once_in_live_accuracy(bot: Bot):
    # its question moved to another channel (the question channels changed between two runs):
    # two posts of the same item, one answer; live accuracy counted the answer twice
    await run_retrain(bot.rt, "cli")
    [item] = [Item("x0", "audit item 0")]
    add_labels(bot.store, [item])
    bot.store.record_post(item.id, "C0OLD", "9.1", "audit", 1, "bug", 0.6)
    bot.store.requeue_posts_outside([CHANNEL])
    bot.store.record_post(item.id, CHANNEL, "9.2", "audit", 1, "billing", 0.6)
    bot.store.record_answer(item.id, "U0ANA", "billing", source="button", dedupe_key="k0")
    assert bot.store.live_accuracy(1, "audit") == (1, 1)  # by its newest post's guess


async def test_accuracy_chart_goes_only_to_the_person_who_asked(bot: Bot):
    await run_retrain(bot.rt, "cli")
    before = bot.fake.messages(CHANNEL)
    text = await (await bot.command("accuracy", "U0ANA")).text()
    assert text.startswith("*Model v1*") and "*Cross-validated*" in text
    await bot.rt.background.drain(timeout=60)  # the chart is drawn after the ack (matplotlib: slow)
    [opened] = bot.fake.calls_to("conversations.open")
    assert opened.params["users"] == "U0ANA"
    [complete] = bot.fake.calls_to("files.completeUploadExternal")
    dm = bot.fake.dm_channel("U0ANA")
    assert complete.params["channel_id"] == dm  # their direct messages with the bot
    [stored] = bot.fake.files.values()
    assert stored["content"][:8] == b"\x89PNG\r\n\x1a\n" and stored["channel"] == dm
    assert bot.fake.messages(CHANNEL) == before  # nothing public in the questions channel
    [shared] = bot.fake.messages(dm)
    assert shared["files"][0]["id"] == stored["id"]


@pytest.mark.parametrize(
    ("fault", "lost"),
    [
        ({"status": 500}, "Slack answered HTTP 500"),
        ({"mode": "reset"}, "the connection dropped after the request was sent"),
    ],
    ids=["500", "reset"],
)
async def test_an_accuracy_chart_shared_before_its_answer_was_lost_is_sent_once_and_said_maybe_sent(
    bot: Bot, caplog: pytest.LogCaptureFixture, fault: dict, lost: str
):
    # files.completeUploadExternal shared the chart and its answer was lost: the log said
    # "could not send the accuracy chart" (a 500) or "on_command: Slack unreachable" (a reset)
    await run_retrain(bot.rt, "cli")
    bot.fake.fail("files.completeUploadExternal", after=True, **fault)
    with caplog.at_level(logging.WARNING, logger="bot"):
        await bot.command("accuracy", "U0ANA")
        await bot.rt.background.drain(timeout=60)
    assert len(bot.fake.calls_to("files.completeUploadExternal")) == 1  # not sent again
    assert len(bot.fake.messages(bot.fake.dm_channel("U0ANA"))) == 1  # shown once
    [said] = [r.getMessage() for r in caplog.records if r.name.startswith("bot")]
    assert said.startswith(f"the accuracy chart for U0ANA may have been sent: {lost}"), said


async def test_accuracy_reads_the_answers_off_the_event_loops_connection(bot: Bot):
    # /hitl accuracy read every answer to the champion's questions (and every model's
    # metadata file) on the event loop: the report is built in a worker thread now
    await run_retrain(bot.rt, "cli")
    on_the_loop: list[str] = []
    bot.store.db.conn.set_trace_callback(on_the_loop.append)
    try:
        text = await (await bot.command("accuracy", "U0ANA")).text()
        bot.store.count_items()  # the trace works: it counts on the loop
    finally:
        bot.store.db.conn.set_trace_callback(None)
    assert text.startswith("*Model v1*") and "*Live accuracy on audit posts:*" in text, text
    assert any("FROM item_counts" in sql for sql in on_the_loop)
    assert [sql for sql in on_the_loop if "FROM posts p JOIN labels" in sql] == []


async def test_without_im_write_the_chart_is_not_posted_anywhere(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    fake_slack.scopes = tuple(s for s in fake_slack.scopes if s != "im:write")
    seed(tmp_path / "hitl.db", labeled_items())
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        await run_retrain(bot.rt, "cli")
        text = await (await bot.command("accuracy", "U0ANA")).text()
        assert text.startswith("*Model v1*")
        await bot.rt.background.drain(timeout=60)
        assert bot.fake.calls_to("conversations.open") == []
        assert bot.fake.calls_to("files.getUploadURLExternal") == []
        assert "the app lacks the im:write scope" in caplog.text


async def test_without_files_write_the_text_table_is_all(fake_slack: FakeSlack, tmp_path: Path):
    fake_slack.scopes = ("chat:write", "commands")
    seed(tmp_path / "hitl.db", labeled_items())
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        await run_retrain(bot.rt, "cli")
        text = await (await bot.command("accuracy", "U0ANA")).text()
        assert text.startswith("*Model v1*")
        await bot.fake.next_call("auth.test")
        assert bot.fake.calls_to("files.getUploadURLExternal") == []


# -- never block the bot ----------------------------------------------------------------------


async def test_a_click_is_acknowledged_while_a_retrain_is_fitting(bot: Bot):
    fitting = threading.Event()
    release = threading.Event()

    def progress(done: int, total: int) -> None:  # runs in the worker thread
        fitting.set()
        release.wait(30)

    await bot.dispatcher.fill()
    message = bot.posted()[0]
    registry = retrain.registry_for(bot.rt.settings)
    retraining = asyncio.create_task(
        retrain.retrain(
            bot.store,
            bot.rt.settings,
            registry,
            champion=None,
            triggered_by="cli",
            progress=progress,
        )
    )
    try:
        assert await asyncio.to_thread(fitting.wait, 30)
        response = await bot.action(bot.button_payload(message, "U0ANA", "bug"))
        assert response.status == 200
        assert not retraining.done()  # the click completed while the model was still fitting
        assert [a["label"] for a in bot.store.iter_answers() if a["user_id"] == "U0ANA"] == ["bug"]
    finally:
        release.set()
    outcome = await retraining
    assert outcome.status == "promoted"


async def test_the_server_fits_in_a_child_process_and_shutdown_stops_it(bot: Bot):
    registry = retrain.registry_for(bot.rt.settings)
    worker = retrain.FitWorker()
    try:
        outcome = await retrain.retrain(
            bot.store, bot.rt.settings, registry, champion=None, triggered_by="cli", worker=worker
        )
        assert outcome.status == "promoted" and outcome.rescored == 4
        assert registry.champion().version == 1
        # the fit's child runs at a lower priority, so the server's acks win the cores
        child_niceness = await worker._call(os.nice, (0,))
        assert child_niceness == min(os.nice(0) + retrain.FIT_NICENESS, 19)
        # forked by the fork server, which imported the fit's code once (not spawned by the
        # server: every fit's new child would import scikit-learn again)
        assert await worker._call(os.getppid, ()) != os.getpid()
        bot.store.add_items(labeled_items("N"), "import")
        second = asyncio.create_task(
            retrain.retrain(
                bot.store,
                bot.rt.settings,
                registry,
                champion=None,
                triggered_by="cli",
                worker=worker,
            )
        )
        await asyncio.sleep(0)  # the run has begun: lock taken, the child is fitting
        assert bot.store.db["locks"].count == 1
    finally:
        worker.close()  # what shutdown does: the child is terminated, not waited for
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    [stopped, done] = bot.store.runs("retrain")
    assert stopped["status"] == "failed" and "CancelledError" in stopped["detail"]["reason"]
    assert done["status"] == "promoted"
    assert bot.store.db["locks"].count == 0  # released, so the next retrain can run


async def test_a_retrain_that_failed_on_its_way_is_tried_again_without_new_labels(bot: Bot):
    """A retrain whose fit died (the disk filled, the child was killed) recorded the labels it
    read, so the next one said "nothing new: no labels since the last run" and trained nothing
    until new labels came, with no model at all. Only a failure of the labels themselves (too
    few to train) waits for new ones."""
    registry = retrain.registry_for(bot.rt.settings)
    bot.store.add_items(labeled_items("K"), "import")
    worker = retrain.FitWorker()
    try:
        first = asyncio.create_task(
            retrain.retrain(
                bot.store, bot.rt.settings, registry, champion=None, triggered_by="cli",
                worker=worker,
            )
        )  # fmt: skip
        await asyncio.sleep(0)  # the run has begun: lock taken, the child is fitting
        assert bot.store.db["locks"].count == 1
    finally:
        worker.close()  # the fit's child is gone mid-fit
    with pytest.raises(retrain.FitStopped):
        await first
    [stopped] = bot.store.runs("retrain")
    assert stopped["status"] == "failed" and "FitStopped" in stopped["detail"]["reason"]
    again = await retrain.retrain(
        bot.store, bot.rt.settings, registry, champion=None, triggered_by="cli"
    )
    assert again.status == "promoted", again.reason
    assert registry.champion().version == 1


def test_the_retrain_report_says_which_before_figure_is_which():
    # v1 scored 0.178 in its own cross-validation (on the 15 labels it had); refitted on the
    # labels it had and scored on v2's folds it gets 0.165: the gate's comparison, in "Why".
    outcome = retrain.Outcome(
        "promoted",
        "promoted: macro-F1 0.165→0.400 on the same 3 folds (n=30)",
        "cli",
        version=2,
        previous_version=1,
        n_labels=30,
        n_new=15,
        metrics={"macro_f1": 0.4, "accuracy": 0.5, "n_samples": 30, "n_splits": 3},
        previous_metrics={"macro_f1": 0.178, "accuracy": 0.2, "n_samples": 15, "n_splits": 3},
    )
    lines = reports.retrain_text(outcome).splitlines()
    assert lines[2] == "*Macro-F1:* 0.400 · *accuracy:* 50.0% (v2, 3-fold CV on its 30 labels)"
    assert lines[3] == (
        "*v1 at its own training:* macro-F1 0.178 · accuracy 20.0% (3-fold CV on its 15 "
        "labels; other labels and folds than v2's)"
    )
    assert lines[4] == "*Why:* promoted: macro-F1 0.165→0.400 on the same 3 folds (n=30)"
    assert sum("0.178" in line for line in lines) == 1 and sum("→" in line for line in lines) == 1


def test_a_chart_of_one_model_has_whole_version_ticks_and_a_sane_range():
    point = reports.VersionPoint(1, "champion", 15, 0.6, 0.558, "2026-11-24T07:16:00+00:00")
    report = reports.AccuracyReport(
        version=1,
        created_at=point.created_at,
        age_days=0.0,
        n_train=15,
        cv_accuracy=0.6,
        cv_macro_f1=0.558,
        n_splits=3,
        audit_n=0,
        audit_correct=0,
        audit_interval=(0.0, 1.0),
        uncertain_n=0,
        uncertain_correct=0,
        weakest=[],
        trend=[point],
    )
    by_version, by_labels = reports.chart_figure(report).axes
    assert list(by_version.get_xticks()) == [1]  # not 0.945 … 1.050
    low, high = by_version.get_xlim()
    assert (low, high) == (0.5, 1.5)
    assert all(float(t).is_integer() for t in by_labels.get_xticks())
    low, high = by_labels.get_xlim()
    assert low == 0 and 15 < high <= 30  # from no labels to a little past the 15 used


async def test_a_report_channel_archived_while_serving_is_an_error_that_says_the_fix(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    fake_slack.add_channel("C0REPORTS", "hitl-reports")
    seed(tmp_path / "hitl.db", labeled_items())
    settings = make_settings(fake_slack, tmp_path, report_channel="C0REPORTS")
    async for bot in start_bot(fake_slack, settings):
        fake_slack.archive_channel("C0REPORTS")  # after the start-up check
        assert (await run_retrain(bot.rt, "schedule")).status == "promoted"
    [said] = [r for r in caplog.records if "the report" in r.getMessage()]
    assert said.levelname == "ERROR"
    assert "is_archived; unarchive it, or set HITL_REPORT_CHANNEL" in said.getMessage()


async def test_the_report_reaches_a_public_report_channel_the_bot_was_not_in(
    fake_slack: FakeSlack, tmp_path: Path
):
    # HITL_REPORT_CHANNEL public but never joined: chat.postMessage says not_in_channel and
    # the nightly report was lost with one warning; the bot joins it, as question channels.
    fake_slack.add_channel("C0REPORTS", "hitl-reports", is_member=False)
    seed(tmp_path / "hitl.db", labeled_items())
    settings = make_settings(fake_slack, tmp_path, report_channel="C0REPORTS")
    async for bot in start_bot(fake_slack, settings):
        outcome = await run_retrain(bot.rt, "schedule")
        assert outcome.status == "promoted"
        [report] = fake_slack.messages("C0REPORTS")
        assert report["text"].startswith("*Retrain v1: promoted")
        assert len(fake_slack.calls_to("conversations.join")) == 1
