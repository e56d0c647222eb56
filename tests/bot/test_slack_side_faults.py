"""What happens on Slack's side while `hitl serve` runs (outside test "slackfaults").

1. An open question whose message is deleted in Slack: nobody can click it, so no redraw
   told it was gone, and it held its channel place until HITL_QUESTION_TTL (never with 0)
   or a restart. The redrawer now looks at a quiet or full channel's history now and then
   (``Redrawer.look_for_deleted``), and acts on Slack's ``message_deleted`` event when an
   operator subscribes to message events; either way the message is checked through the
   redrawer's own test of a gone message before its question is taken back.
2. A late redelivery of ``channel_archive`` (after the ``channel_unarchive``) stopped posting
   to a channel that is not archived.
3. A post whose answer was lost before a stop, in a channel that is no longer a question
   channel at the restart, was dropped: its message kept live buttons for good and its item
   was asked a second time.
4. A Web API answer with HTTP 200 that is not JSON (a proxy's page) was an AttributeError:
   a dispatcher round failed with a traceback, a click's redraw said "malformed payload" and
   the dispatcher was not woken.

The real server against the fake Slack, background loops off: the test makes the rounds and
passes itself, and moves the redrawer's clock by hand; nothing sleeps."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.redraw import GIVE_UP_AFTER, LOOK_EVERY, LOOK_GAP, Redrawer
from tests import signing
from tests.bot.harness import (
    SECRET,
    Item,
    has_buttons,
    item_of,
    make_settings,
    posted_on_clock,
    seed,
    start_bot,
)
from tests.fake_slack import CHANNEL

ITEMS = [Item(f"i{n}", f"ticket number {n} about an invoice or a crash") for n in range(8)]
NEW = "C0NEWQS"


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def history_calls(fake: FakeSlack) -> int:
    return len(fake.calls_to("conversations.history"))


def delete_in_slack(fake: FakeSlack, message: dict) -> None:
    """A workspace admin deletes the message (Slack keeps no trace of it in the history)."""
    del fake._messages[CHANNEL][message["ts"]]


def deleted_event(message: dict) -> dict:
    """Slack's ``message_deleted`` (sent only to an app subscribed to message events)."""
    return signing.event_envelope(
        {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": CHANNEL,
            "deleted_ts": message["ts"],
            "previous_message": message,
            "ts": "1700000500.000001",
            "event_ts": "1700000500.000001",
            "channel_type": "channel",
        }
    )


# -- 1: open questions deleted in Slack ---------------------------------------------------------


async def test_questions_deleted_in_a_full_channel_are_found_by_a_look_and_taken_back(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Both questions of a full channel deleted while the server runs: the channel stayed
    empty, `/hitl queue` said 2 of 2 open, until the TTL (72 h) or a restart."""
    async for bot, redrawer, clock in posted_on_clock(fake_slack, tmp_path, ITEMS, 2):
        first = {item_of(m) for m in bot.posted()}
        for message in bot.posted():
            delete_in_slack(fake_slack, message)
        before = history_calls(fake_slack)
        assert await redrawer.look_for_deleted() == 0  # not yet: the start drew them all
        assert history_calls(fake_slack) == before
        clock.now += LOOK_EVERY
        with caplog.at_level(logging.INFO, logger="bot"):
            assert await redrawer.look_for_deleted() == 2
            assert history_calls(fake_slack) == before + 1  # one call for the channel
            assert bot.store.open_post_counts() == {CHANNEL: 2}  # the look alone takes none
            for _ in range(GIVE_UP_AFTER):  # checked as any gone message is
                await redrawer.pending()
        assert bot.store.open_post_counts().get(CHANNEL, 0) == 0
        assert said(caplog, "took back 2 open question(s) whose Slack message is gone")
        assert bot.dispatcher.woken.is_set()
        assert await bot.dispatcher.fill() == 2  # the places are free: asked again
        assert len(bot.posted()) == 2
        assert {item_of(m) for m in bot.posted()}.isdisjoint(first)  # others first (resting)
        # the next look waits: a few calls a minute at most, whatever happens
        calls = history_calls(fake_slack)
        assert await redrawer.look_for_deleted() == 0
        assert history_calls(fake_slack) == calls


async def test_a_look_that_finds_every_message_takes_nothing_back_and_a_busy_channel_costs_none(
    fake_slack: FakeSlack, tmp_path: Path
):
    # two open questions in a channel with room for three, just posted: people are being
    # asked; no look is made there
    async for bot, redrawer, clock in posted_on_clock(fake_slack, tmp_path, ITEMS, 2):
        bot.rt.settings = bot.rt.settings.with_changes(max_open=3)
        assert await redrawer.look_for_deleted() == 0
        clock.now += LOOK_EVERY
        before = history_calls(fake_slack)
        assert await redrawer.look_for_deleted() == 0
        assert history_calls(fake_slack) == before
        # full again: a look is made (after the gap), finds both, and checks nothing
        bot.rt.settings = bot.rt.settings.with_changes(max_open=2)
        clock.now += LOOK_GAP
        updates = len(fake_slack.calls_to("chat.update"))
        assert await redrawer.look_for_deleted() == 0
        assert history_calls(fake_slack) == before + 1
        await redrawer.pending()
        assert len(fake_slack.calls_to("chat.update")) == updates
        assert bot.store.open_post_counts() == {CHANNEL: 2}
        # one message deleted, Slack rate limits the look: its Retry-After is waited out
        delete_in_slack(fake_slack, bot.posted()[0])
        clock.now += LOOK_EVERY
        fake_slack.fail("conversations.history", status=429, retry_after=600)
        assert await redrawer.look_for_deleted() == 0
        clock.now += LOOK_EVERY + LOOK_GAP  # past the look's interval, not the Retry-After
        calls = history_calls(fake_slack)
        assert await redrawer.look_for_deleted() == 0
        assert history_calls(fake_slack) == calls
        clock.now += 600
        assert await redrawer.look_for_deleted() == 1


async def test_slacks_message_deleted_event_has_the_question_checked_and_taken_back(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """An operator who subscribes to message events (message.channels): Slack's
    message_deleted was acknowledged and ignored."""
    async for bot, redrawer, _ in posted_on_clock(fake_slack, tmp_path, ITEMS, 2):
        gone, kept = bot.posted()
        delete_in_slack(fake_slack, gone)
        assert (await bot.event(deleted_event(gone))).status == 200
        # an event for a message still there (sent late, or forged) takes nothing back
        assert (await bot.event(deleted_event(kept))).status == 200
        # another message of the channel (not a question): nothing to do
        other = {**kept, "ts": "1700000400.000001"}
        assert (await bot.event(deleted_event(other))).status == 200
        await bot.rt.background.drain(10)
        with caplog.at_level(logging.INFO, logger="bot"):
            for _ in range(GIVE_UP_AFTER):
                await redrawer.pending()
        assert bot.store.open_post_counts() == {CHANNEL: 1}
        assert bot.store.post_for_item(item_of(gone))["expired_at"] is not None
        assert bot.store.post_for_item(item_of(kept))["closed_at"] is None
        assert has_buttons(fake_slack.message(CHANNEL, kept["ts"]))
        assert said(caplog, "took back 1 open question(s) whose Slack message is gone")
        assert await bot.dispatcher.fill() == 1


# -- 2: a late channel_archive ----------------------------------------------------------------


async def test_a_late_redelivery_of_channel_archive_does_not_stop_posting(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", ITEMS)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=2)):
        assert await bot.dispatcher.fill() == 2
        archive = signing.event_envelope(
            {"type": "channel_archive", "channel": CHANNEL, "user": "U0ADMIN"}
        )
        unarchive = signing.event_envelope(
            {"type": "channel_unarchive", "channel": CHANNEL, "user": "U0ADMIN"}
        )
        archive["event_time"], unarchive["event_time"] = 1_700_000_600, 1_700_000_700
        checks = len(fake_slack.calls_to("conversations.info"))  # the start's
        assert (await bot.event(unarchive)).status == 200
        body, headers = signing.signed_event(archive, SECRET)
        headers = {**headers, "X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_error"}
        assert (await bot.post(body, headers)).status == 200
        await bot.rt.background.drain(10)
        assert bot.dispatcher.channel_state(CHANNEL).broken is None
        assert "⛔" not in await (await bot.command("queue", "U0ADMIN")).text()
        assert len(fake_slack.calls_to("conversations.info")) == checks  # by its time alone


async def test_an_archive_event_for_a_channel_slack_says_is_not_archived_is_ignored(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The unarchive came before a restart, the archive's redelivery after it: no time to
    compare with, so Slack is asked."""
    seed(tmp_path / "hitl.db", ITEMS)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=3)):
        assert await bot.dispatcher.fill() == 3
        checks = len(fake_slack.calls_to("conversations.info"))  # the start's
        event = {"type": "channel_archive", "channel": CHANNEL, "user": "U0ADMIN"}
        assert (await bot.event(signing.event_envelope(event))).status == 200
        await bot.rt.background.drain(10)
        assert len(fake_slack.calls_to("conversations.info")) == checks + 1
        assert bot.dispatcher.channel_state(CHANNEL).broken is None
        message = bot.posted()[0]
        click = bot.button_payload(message, "U0ANA", bot.first_label(message))
        assert (await bot.action(click)).status == 200
        await bot.settled()
        assert await bot.dispatcher.fill() == 1  # posting goes on


# -- 3: a lost post in a channel no longer asked in ---------------------------------------------


async def lost_post_then_moved(fake: FakeSlack, tmp_path: Path) -> tuple[str, str]:
    """A post Slack stored whose answer was lost, then the server stopped: (its ts, item)."""
    fake.add_channel(NEW, "labeling-2")
    seed(tmp_path / "hitl.db", ITEMS)
    settings = make_settings(fake, tmp_path, max_open=2)
    async for bot in start_bot(fake, settings, retries=0):
        fake.fail("chat.postMessage", mode="reset", after=True)
        assert await bot.dispatcher.fill() == 0
        [attempt] = bot.store.post_attempts()
        [lost] = fake.messages(CHANNEL)
        assert item_of(lost) == attempt["item_id"]
    return lost["ts"], item_of(lost)


async def test_a_lost_post_in_a_channel_no_longer_asked_in_is_found_and_moved(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    ts, item = await lost_post_then_moved(fake_slack, tmp_path)
    settings = make_settings(fake_slack, tmp_path, max_open=8, channel=NEW)
    async for bot in start_bot(fake_slack, settings):
        with caplog.at_level(logging.INFO, logger="bot"):
            assert await bot.dispatcher.fill() == 8  # every item: the found one too
        await bot.settled()
        old = fake_slack.message(CHANNEL, ts)
        assert not has_buttons(old)  # no second live message for the item
        assert f"<#{NEW}>" in old["text"]
        asked = [item_of(m) for m in fake_slack.messages(NEW)]
        assert asked.count(item) == 1
        assert bot.store.post_attempts() == []
        assert said(caplog, f"item {item} was posted after all")
        assert said(caplog, f"moved 1 question(s) found in {CHANNEL}")


async def test_a_lost_post_in_a_channel_slack_no_longer_shows_is_given_up_in_one_line(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    ts, item = await lost_post_then_moved(fake_slack, tmp_path)
    del fake_slack._channels[CHANNEL]  # the old channel was deleted: channel_not_found
    settings = make_settings(fake_slack, tmp_path, max_open=8, channel=NEW)
    async for bot in start_bot(fake_slack, settings):
        with caplog.at_level(logging.INFO, logger="bot"):
            assert await bot.dispatcher.fill() == 8
        assert item in [item_of(m) for m in fake_slack.messages(NEW)]
        assert bot.store.post_attempts() == []
        [line] = said(caplog, f"cannot look in {CHANNEL}, no longer asked in")
        assert "channel_not_found" in line and item in line


# -- 4: an HTTP 200 answer that is not JSON -----------------------------------------------------


PAGE = "<html>Access gateway: sign in</html>"


async def test_a_post_answered_by_a_200_page_is_unsure_and_backs_off_in_one_line(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    seed(tmp_path / "hitl.db", ITEMS)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=2)):
        fake_slack.fail("chat.postMessage", mode="text", status=200, error=PAGE)
        with caplog.at_level(logging.INFO, logger="bot"):
            await bot.dispatcher.round()
        assert not [r for r in caplog.records if r.exc_info]  # no traceback
        assert said(caplog, "dispatcher round failed") == []
        [line] = said(caplog, f"posting to {CHANNEL} failed")
        assert "HTTP 200 without Slack's JSON" in line
        state = bot.dispatcher.channel_state(CHANNEL)
        [unsure] = state.unsure  # looked for as a lost post, not posted again blindly
        assert [a["item_id"] for a in bot.store.post_attempts()] == [unsure]
        state.next_attempt = 0.0  # the backoff is over
        bot.dispatcher.post_settle = 0.0  # and the post long settled: not in the history
        assert await bot.dispatcher.fill() == 2
        items = [item_of(m) for m in bot.posted()]
        assert len(items) == len(set(items)) == 2
        assert bot.store.post_attempts() == []


async def test_a_redraw_answered_by_a_200_page_after_a_click_still_wakes_the_dispatcher(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    seed(tmp_path / "hitl.db", ITEMS)
    settings = make_settings(fake_slack, tmp_path, max_open=2, votes=1)
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 2
        await bot.settled()
        message = bot.posted()[0]
        fake_slack.fail("chat.update", mode="text", status=200, error=PAGE)
        bot.dispatcher.woken.clear()
        with caplog.at_level(logging.INFO, logger="bot"):
            click = bot.button_payload(message, "U0ANA", bot.first_label(message))
            assert (await bot.action(click)).status == 200
            await bot.rt.background.drain(10)
        assert said(caplog, "malformed payload") == []
        assert not [r for r in caplog.records if r.exc_info]
        [line] = said(caplog, "chat.update failed for 1 message(s)")
        assert "HTTP 200 without Slack's JSON" in line
        assert bot.dispatcher.woken.is_set()  # the freed place is filled now
        assert bot.store.get_item(item_of(message))["status"] == "resolved"
        assert await bot.dispatcher.fill() == 1
        await Redrawer.of(bot.rt).pending()  # the redraw goes through once Slack answers
        assert not has_buttons(fake_slack.message(CHANNEL, message["ts"]))
