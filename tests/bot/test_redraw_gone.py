"""Question messages that are gone, and channels that refuse the bot for a while.

An open question whose Slack message is gone (deleted in Slack: ``message_not_found``, said
``GIVE_UP_AFTER`` times; posted by another app: ``cant_update_message``) is taken back as an
expired one is: its place is free and its item back in the queue. A redraw refused because of
the channel (``not_in_channel``, ``is_archived``, ``channel_not_found``) waits for the channel
and is drawn once it works again, and the log says what the start-up check says for it.

The real server, its background loops off: the test makes the dispatcher's rounds and the
redrawer's passes itself, and moves the redrawer's clock by hand; nothing sleeps."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.redraw import GIVE_UP_AFTER
from tests import signing
from tests.bot.harness import (
    Bot,
    Item,
    has_buttons,
    item_of,
    posted_on_clock,
)
from tests.fake_slack import CHANNEL, CHANNEL_NAME

ITEMS = [Item(f"i{n}", f"ticket number {n} about an invoice or a crash") for n in range(6)]


def two_posted(fake: FakeSlack, tmp_path: Path, **changes):
    """A bot with two questions posted (HITL_MAX_OPEN=2), its redrawer on the test's clock."""
    return posted_on_clock(fake, tmp_path, ITEMS, 2, **changes)


def touch(bot: Bot, item_id: str, key: str) -> None:
    """An answer that decides nothing: the item's message is behind the database."""
    bot.store.record_answer(
        item_id, f"U{key}", None, source="button", dedupe_key=key, votes_needed=9
    )


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# -- 1: a question whose message is gone is taken back --------------------------------------


async def test_open_questions_whose_messages_were_deleted_are_taken_back_and_asked_again(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Both question messages deleted in Slack: the redrawer said "message gone" and marked
    them drawn, while the database still counted 2 of 2 open, and nothing more was posted
    until HITL_QUESTION_TTL (72 h; never with 0)."""
    async for bot, redrawer, _ in two_posted(fake_slack, tmp_path):
        first = {item_of(m) for m in bot.posted()}
        for message in bot.posted():  # a teammate deletes them
            del fake_slack._messages[CHANNEL][message["ts"]]
            touch(bot, item_of(message), f"t{message['ts']}")
        with caplog.at_level(logging.INFO, logger="bot"):
            for _ in range(GIVE_UP_AFTER):
                await redrawer.pending()
        assert bot.store.open_post_counts().get(CHANNEL, 0) == 0
        assert bot.store.posts_to_redraw() == []  # nothing left to draw on the gone messages
        for item_id in first:
            assert (
                bot.store.get_item(item_id)["status"] == "new"
            )  # back where it waited: no model yet
            assert bot.store.post_for_item(item_id)["expired_at"] is not None
        [line] = said(caplog, "took back 2 open question(s) whose Slack message is gone")
        assert "message_not_found" in line and "back in the queue" in line
        assert redrawer.gone == {} and redrawer.backoff == {}
        assert redrawer.rt.dispatcher.woken.is_set()  # the places are filled now
        assert await bot.dispatcher.fill() == 2  # the places are free again
        assert {item_of(m) for m in bot.posted()}.isdisjoint(first)  # others first (resting)


async def test_a_question_posted_by_another_app_is_taken_back_at_once(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The app was created again: Slack says cant_update_message for the old app's
    messages, for good. Such a question is taken back at the first answer."""
    async for bot, redrawer, _ in two_posted(fake_slack, tmp_path):
        old = bot.posted()[0]
        touch(bot, item_of(old), "x")
        fake_slack.fail("chat.update", "cant_update_message")
        with caplog.at_level(logging.INFO, logger="bot"):
            await redrawer.pending()
        assert len(fake_slack.calls_to("chat.update")) == 1
        assert bot.store.open_post_counts() == {CHANNEL: 1}
        assert (
            bot.store.get_item(item_of(old))["status"] == "new"
        )  # back where it waited: no model yet
        [line] = said(caplog, "took back 1 open question(s)")
        assert "cant_update_message" in line and "another app" in line


async def test_a_decided_question_whose_message_is_gone_stays_decided(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    async for bot, redrawer, _ in two_posted(fake_slack, tmp_path):
        message = bot.posted()[0]
        del fake_slack._messages[CHANNEL][message["ts"]]
        bot.store.record_answer(
            item_of(message), "U0ANA", "bug", source="button", dedupe_key="d", votes_needed=1
        )
        with caplog.at_level(logging.INFO, logger="bot"):
            for _ in range(GIVE_UP_AFTER):
                await redrawer.pending()
        assert bot.store.get_item(item_of(message))["status"] == "resolved"
        assert bot.store.resolution(item_of(message))["label"] == "bug"
        assert bot.store.post_for_item(item_of(message))["expired_at"] is None
        assert said(caplog, "took back") == []
        assert said(caplog, "is gone (message_not_found); not redrawing it")
        assert bot.store.posts_to_redraw() == []


# -- 2 and 5: a redraw the channel refused waits for the channel ----------------------------


async def test_a_redraw_refused_while_the_channel_was_archived_is_drawn_once_it_is_back(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Archived, a question decided, its redraw refused with is_archived three times: it
    was given up as "message gone", and kept its buttons after the unarchive."""
    async for bot, redrawer, _ in two_posted(fake_slack, tmp_path):
        message = bot.posted()[0]
        fake_slack.archive_channel(CHANNEL)
        event = {"type": "channel_archive", "channel": CHANNEL, "user": "U0ADMIN"}
        with caplog.at_level(logging.INFO, logger="bot"):
            assert (await bot.event(signing.event_envelope(event))).status == 200
            bot.store.record_answer(
                item_of(message), "U0ANA", "bug", source="button", dedupe_key="a", votes_needed=1
            )
            for _ in range(GIVE_UP_AFTER + 1):  # every message tried now, backoff or not
                await redrawer.pending()
            calls = len(fake_slack.calls_to("chat.update"))
            await redrawer.pending(due_only=True)  # its backoff holds it: no call
            assert len(fake_slack.calls_to("chat.update")) == calls
            assert has_buttons(fake_slack.message(CHANNEL, message["ts"]))
            fake_slack.unarchive_channel(CHANNEL)
            event = {"type": "channel_unarchive", "channel": CHANNEL, "user": "U0ADMIN"}
            assert (await bot.event(signing.event_envelope(event))).status == 200
            await redrawer.pending(due_only=True)  # what the background loop makes now
        now = fake_slack.message(CHANNEL, message["ts"])
        assert not has_buttons(now) and "bug" in now["text"]
        assert redrawer.woken.is_set()  # the unarchive woke the background loop for it
        assert bot.store.posts_to_redraw() == []
        [line] = said(caplog, "cannot redraw")  # said once, however many tries
        assert "archived" in line and "is gone" not in line
        assert said(caplog, "takes the bot's messages again")
        [stopped] = said(caplog, "stopped posting")
        assert "restart" not in stopped  # a restart would refuse to start: archived


async def test_a_redraw_refused_while_the_bot_was_out_of_a_public_channel_is_drawn_when_it_rejoins(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The bot removed from a public channel, a click decides a question: the redraw said
    not_in_channel and was dropped; the dispatcher rejoined and posted, the decided question
    kept its buttons."""
    async for bot, redrawer, _ in two_posted(fake_slack, tmp_path):
        message = bot.posted()[0]
        fake_slack.remove_bot(CHANNEL)
        with caplog.at_level(logging.INFO, logger="bot"):
            payload = bot.button_payload(message, "U0ANA", bot.first_label(message))
            assert (await bot.action(payload)).status == 200
            await bot.rt.background.drain()
            assert bot.store.resolution(item_of(message)) is not None
            assert has_buttons(fake_slack.message(CHANNEL, message["ts"]))
            assert await bot.dispatcher.fill() == 1  # joins again, posts in the freed place
            assert fake_slack.calls_to("conversations.join")
            await redrawer.pending(due_only=True)  # what the background loop makes now
        assert not has_buttons(fake_slack.message(CHANNEL, message["ts"]))
        assert bot.store.posts_to_redraw() == []
        assert redrawer.woken.is_set()  # the post woke the background loop for it
        [line] = said(caplog, "cannot redraw")
        assert "not_in_channel" in line and "joins a public channel again" in line


async def test_the_bot_removed_from_a_private_channel_is_said_as_the_start_up_check_says_it(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Removed from a private channel (Slack says channel_not_found): the log said "fix the
    channel (…, or restart)" and "message … is gone", where a restart refuses to start and
    the fix is /invite @hitl. Once it is invited back, the waiting redraw is drawn on its
    backoff, and the dispatcher posts there again then, not 15 minutes later."""
    fake_slack.add_channel(CHANNEL, CHANNEL_NAME, is_private=True)
    async for bot, redrawer, clock in two_posted(fake_slack, tmp_path):
        message = bot.posted()[0]
        fake_slack.remove_bot(CHANNEL)
        with caplog.at_level(logging.INFO, logger="bot"):
            payload = bot.button_payload(message, "U0ANA", bot.first_label(message))
            assert (await bot.action(payload)).status == 200
            await bot.rt.background.drain()
            assert await bot.dispatcher.fill() == 0  # channel_not_found: stops posting there
            for _ in range(GIVE_UP_AFTER):
                await redrawer.pending()
            told = "the bot cannot see this channel (channel_not_found); check the ID, and in a "
            told += "private channel /invite @hitl"
            [stopped] = said(caplog, "stopped posting")
            assert told in stopped
            assert "restart" not in stopped and "fix the channel" not in stopped
            assert said(caplog, "is gone") == []
            [redraw] = said(caplog, "cannot redraw")  # said once
            assert told in redraw and "restart" not in redraw
            fake_slack._channels[CHANNEL]["is_member"] = True  # /invite @hitl
            clock.now = redrawer.next_due() or clock.now  # the channel's backoff ends
            await redrawer.pending(due_only=True)
            assert not has_buttons(fake_slack.message(CHANNEL, message["ts"]))
            assert bot.dispatcher.woken.is_set()
            assert await bot.dispatcher.fill() == 1  # posting resumes now
        assert said(caplog, "is gone") == [] and len(said(caplog, "cannot redraw")) == 1


def test_taking_back_gone_questions_is_one_transaction_of_a_few_statements(store):
    """However many messages a pass finds gone, their take-back is one transaction of a few
    set-wide statements, not a statement (or a transaction) per question; a decided one is
    left as it is."""
    store.add_items([Item(f"g{n}", f"text {n}") for n in range(300)], "import")
    ids = [
        store.record_post(f"g{n}", CHANNEL, f"17.{n:06d}", "uncertain", None, None, None)
        for n in range(300)
    ]
    store.record_answer("g0", "U0ANA", "bug", source="button", dedupe_key="g0", votes_needed=1)
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        taken = store.take_back_gone(ids)
    finally:
        store.db.conn.set_trace_callback(None)
    assert len(taken) == 299 and "g0" not in {post["item_id"] for post in taken}
    assert store.open_post_counts() == {}
    assert store.get_item("g0")["status"] == "resolved"
    assert [post["item_id"] for post in store.posts_to_redraw()] == ["g0"]  # its decision
    # distinct statements: the status counts' trigger traces its statement again per row
    writes = {sql for sql in statements if sql.lstrip().upper().startswith(("UPDATE", "INSERT"))}
    assert len(writes) <= 3, sorted(writes)
    assert sum(sql.upper().startswith("BEGIN") for sql in statements) == 1
