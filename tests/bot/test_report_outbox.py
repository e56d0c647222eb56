"""A report Slack refuses during an outage is held and posted once Slack answers again, in
order, once; a refusal no retry can fix is not retried, and says what to fix; at most
REPORTS_KEPT are held; a server that stops with one held ends cleanly and says it was lost.

An outside test (an outage of 503s) saw the nightly retrain promote v2 and its report dropped
with one warning: the report channel stayed empty after Slack came back. The retries are
driven here by calling ``ReportOutbox.send`` with the outbox's clock moved by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.learning.jobs import (
    REPORT_MAX_BACKOFF,
    REPORTS_KEPT,
    ReportOutbox,
    Trainer,
    post_report,
    run_retrain,
)
from bot.sandbox import FakeSlack
from bot.slack import dispatch, redraw
from tests.bot.harness import Bot, make_settings, seed, start_bot
from tests.bot.test_learning import labeled_items

REPORTS = "C0REPORTS"
HELD = "held, posted when Slack answers again (lost if the server stops first)"


class Clock:
    """The outbox's clock, moved by the test: its backoff ends when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path):
    fake_slack.add_channel(REPORTS, "hitl-reports")
    seed(tmp_path / "hitl.db", labeled_items())
    settings = make_settings(fake_slack, tmp_path, report_channel=REPORTS)
    async for running in start_bot(fake_slack, settings, retries=0):
        yield running


def outbox_of(bot: Bot) -> tuple[ReportOutbox, Clock]:
    outbox, clock = ReportOutbox.of(bot.rt), Clock()
    outbox.clock = clock
    return outbox, clock


def report_posts(bot: Bot) -> list:
    return [c for c in bot.fake.calls_to("chat.postMessage") if c.params["channel"] == REPORTS]


def lines(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


@pytest.mark.parametrize(
    "fault",
    [
        {"error": "internal_error"},
        {"error": "internal_error", "status": 503},
        {"error": "fatal_error"},
        {"error": "service_unavailable"},
        {"error": "request_timeout"},
        {"mode": "reset"},
    ],
    ids=["internal_error", "503", "fatal_error", "service_unavailable", "timeout", "reset"],
)
async def test_a_report_refused_twice_is_posted_once_slack_answers_in_order_with_a_later_one(
    bot: Bot, caplog: pytest.LogCaptureFixture, fault: dict
):
    outbox, clock = outbox_of(bot)
    bot.fake.fail("chat.postMessage", times=2, **fault)
    assert (await run_retrain(bot.rt, "schedule")).status == "promoted"  # v1
    assert bot.fake.messages(REPORTS) == []
    [held] = lines(caplog, "could not post the retrain report of")
    assert "(v1) to C0REPORTS" in held and held.endswith(HELD)
    assert await outbox.send() == 1  # still backing off: Slack is not asked
    assert len(report_posts(bot)) == 1
    clock.now += 1
    assert await outbox.send() == 1  # refused again: said once only
    assert len(lines(caplog, "could not post")) == 1
    # the next retrain's report waits behind it: never posted before an older one
    assert (await run_retrain(bot.rt, "cli", force=True)).status == "promoted"  # v2
    assert len(outbox.queue) == 2 and bot.fake.messages(REPORTS) == []
    clock.now += REPORT_MAX_BACKOFF
    assert await outbox.send() == 0
    texts = [m["text"] for m in bot.fake.messages(REPORTS)]
    assert [t.split(":")[0] for t in texts] == ["*Retrain v1", "*Retrain v2"]
    [said] = lines(caplog, "that Slack refused at first")
    assert said.startswith("posted the retrain report of ") and "(v1)" in said
    assert await outbox.send(now=True) == 0  # nothing left: nothing posted again
    assert len(bot.fake.messages(REPORTS)) == 2


async def test_a_rate_limited_report_waits_for_retry_after(bot: Bot):
    outbox, clock = outbox_of(bot)
    bot.fake.fail("chat.postMessage", "ratelimited", status=429, retry_after=30)
    await post_report(bot.rt, "*Retrain v7: promoted*", "the retrain report of today (v7)")
    clock.now += 29
    assert await outbox.send() == 1 and len(report_posts(bot)) == 1  # not before Retry-After
    clock.now += 2
    assert await outbox.send() == 0
    assert [m["text"] for m in bot.fake.messages(REPORTS)] == ["*Retrain v7: promoted*"]


async def test_a_rate_limited_report_is_held_without_sleeping_in_the_outbox(
    fake_slack: FakeSlack, tmp_path: Path
):
    """With the client's own retries (the server's: 2), a 429 on a report's post was slept
    out twice inside ``send``, the outbox's lock held and the retrain that wrote the report
    waiting for it, and chat.postMessage called three times into the limit. One call now:
    the report is held for its Retry-After and the caller goes on."""
    fake_slack.add_channel(REPORTS, "hitl-reports")
    seed(tmp_path / "hitl.db", labeled_items())
    settings = make_settings(fake_slack, tmp_path, report_channel=REPORTS)
    async for bot in start_bot(fake_slack, settings, retries=2):
        outbox, clock = outbox_of(bot)
        bot.fake.fail("chat.postMessage", "ratelimited", status=429, retry_after=30, times=1)
        async with asyncio.timeout(5):  # the old send slept 30 s in the call
            await post_report(bot.rt, "*Retrain v7: promoted*", "the retrain report (v7)")
        assert len(report_posts(bot)) == 1 and outbox.next_due() == clock.now + 30
        clock.now += 30
        assert await outbox.send() == 0
        assert [m["text"] for m in bot.fake.messages(REPORTS)] == ["*Retrain v7: promoted*"]


async def test_a_report_slack_posted_though_its_answer_was_lost_is_not_posted_twice(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    outbox, clock = outbox_of(bot)
    bot.fake.fail("chat.postMessage", "internal_error", status=503, after=True)
    assert (await run_retrain(bot.rt, "schedule")).status == "promoted"
    clock.now += 1
    assert await outbox.send() == 0
    assert len(bot.fake.messages(REPORTS)) == 1  # looked for in the history, found
    assert len(report_posts(bot)) == 1
    assert len(lines(caplog, "was posted after all")) == 1


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        ("channel_not_found", "invite the bot to it (/invite @hitl), or set HITL_REPORT_CHANNEL"),
        ("is_archived", "unarchive it"),
        ("not_in_channel", "invite the bot to it (/invite @hitl)"),
        ("invalid_auth", "fix SLACK_BOT_TOKEN"),
        ("token_revoked", "fix SLACK_BOT_TOKEN"),
        ("account_inactive", "fix SLACK_BOT_TOKEN"),
        ("missing_scope", "the app lacks the chat:write scope"),
    ],
)
async def test_a_permanent_refusal_is_not_retried_and_says_what_to_fix(
    bot: Bot, caplog: pytest.LogCaptureFixture, error: str, fix: str
):
    outbox, clock = outbox_of(bot)
    # not_in_channel: the bot joins, and the post after the join is refused again
    bot.fake.fail("chat.postMessage", error, times=2)
    assert (await run_retrain(bot.rt, "schedule")).status == "promoted"
    tried = len(report_posts(bot))
    assert tried == (2 if error == "not_in_channel" else 1)
    assert not outbox.queue  # dropped, not held
    clock.now += REPORT_MAX_BACKOFF * 10
    assert await outbox.send(now=True) == 0
    assert len(report_posts(bot)) == tried  # never tried again
    [said] = [r for r in caplog.records if "could not post the report" in r.getMessage()]
    assert said.levelname == "ERROR"
    assert f"Slack said {error}; {fix}" in said.getMessage()
    assert "is not posted: `hitl models` and `hitl accuracy`" in said.getMessage()
    assert lines(caplog, HELD) == []


async def test_more_reports_than_kept_drop_the_oldest_with_one_line(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    outbox, clock = outbox_of(bot)
    # the first refused; the second too, once tried (the first dropped, it is the oldest)
    bot.fake.fail("chat.postMessage", "internal_error", times=2)
    for n in range(1, REPORTS_KEPT + 2):
        await post_report(bot.rt, f"report {n}", f"the retrain report of day {n} (v{n})")
    assert len(outbox.queue) == REPORTS_KEPT
    [dropped] = lines(caplog, "dropped")
    assert dropped.startswith("dropped the retrain report of day 1 (v1), held since Slack")
    assert "`hitl models` and `hitl accuracy` show what it said" in dropped
    clock.now += 1
    assert await outbox.send() == 0
    texts = [m["text"] for m in bot.fake.messages(REPORTS)]
    assert texts == [f"report {n}" for n in range(2, REPORTS_KEPT + 2)]


async def test_a_server_stopping_with_a_held_report_ends_cleanly_and_says_it_is_lost(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    fake_slack.add_channel(REPORTS, "hitl-reports")
    seed(tmp_path / "hitl.db", labeled_items())
    settings = make_settings(fake_slack, tmp_path, report_channel=REPORTS)
    async for bot in start_bot(fake_slack, settings, background=True, retries=0):  # as serve
        outbox, _clock = outbox_of(bot)  # its backoff never ends: held until the stop
        assert outbox.task is not None and not outbox.task.done()  # the loop runs
        fake_slack.fail("chat.postMessage", "internal_error", times=1000)
        await post_report(bot.rt, "*Retrain v1: promoted*", "the retrain report of today (v1)")
        assert len(outbox.queue) == 1
        task = outbox.task
    assert task.done() and Trainer.of(bot.rt).outbox is outbox and outbox.task is None
    [lost] = lines(caplog, "not posted: the server stops")
    assert lost.startswith("1 report(s) Slack refused are not posted: the server stops")
    assert "(the retrain report of today (v1))" in lost
    assert lines(caplog, "did not stop") == []
    assert fake_slack.messages(REPORTS) == []


async def test_the_loop_posts_a_held_report_when_its_backoff_ends(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    fake_slack.add_channel(REPORTS, "hitl-reports")
    seed(tmp_path / "hitl.db", labeled_items())
    settings = make_settings(fake_slack, tmp_path, report_channel=REPORTS)
    async for bot in start_bot(fake_slack, settings, background=True, retries=0):  # as serve
        fake_slack.fail("chat.postMessage", "internal_error", status=503, times=2)
        await post_report(bot.rt, "*Retrain v1: promoted*", "the retrain report of today (v1)")
        # the background loop tries again after 0.01 s, then 0.02 s (the harness' retry_base)
        await fake_slack.wait_for(lambda: len(fake_slack.messages(REPORTS)) == 1, 10)
    assert [m["text"] for m in fake_slack.messages(REPORTS)] == ["*Retrain v1: promoted*"]
    assert len(lines(caplog, "that Slack refused at first")) == 1


def test_the_backoff_is_the_dispatchers_and_the_redrawers():
    assert REPORT_MAX_BACKOFF == dispatch.MAX_BACKOFF == redraw.MAX_BACKOFF
