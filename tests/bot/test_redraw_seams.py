"""The redrawer's seams: its background loop waits for the next pass that can do something
(no due time left in the past behind another wait), a chat.update whose outcome is unknown is
drawn once more after it settles, a moved question's old message never gets buttons back, the
old app's open questions are redrawn at start (and taken back: ``cant_update_message``), and
`/hitl queue` says what to do about a channel that refuses the bot.

The real server and the fake Slack. Time is the redrawer's clock (``Redrawer.clock``), moved
by the test; the background loop's waits are counted and move that clock instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

import bot.slack.redraw as redraw_module
from bot.runtime import make_client
from bot.sandbox import FakeSlack
from bot.sandbox.webapi import SlackError
from bot.slack.commands import queue_text
from bot.slack.redraw import Redrawer
from tests.bot.harness import (
    Bot,
    Item,
    ManualClock,
    has_buttons,
    item_of,
    make_settings,
    posted_on_clock,
    seed,
    start_bot,
)
from tests.fake_slack import CHANNEL

ITEMS = [Item(f"i{n}", f"ticket number {n} about an invoice or a crash") for n in range(4)]
NEW = "C0NEWQ"


class Stop(Exception):
    """Ends the background loop under test."""


def counted_loop(
    bot: Bot, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, *, span: float, turns: int = 300
) -> Callable[[], dict[str, int]]:
    """Run ``Redrawer.run`` over ``span`` seconds of its own clock: each of its waits moves
    the clock by its timeout instead of sleeping (a wait of 0 s moves nothing). Stops after
    ``turns`` waits whatever the clock says. Returns a function giving the count of waits and
    of passes (``posts_to_redraw`` reads)."""
    counts = {"turns": 0, "passes": 0}
    end = clock.now + span
    store = bot.store
    read = store.posts_to_redraw

    def posts_to_redraw() -> list[dict]:
        counts["passes"] += 1
        return read()

    async def wait(event: asyncio.Event, timeout: float | None) -> None:  # noqa: ASYNC109
        counts["turns"] += 1
        if counts["turns"] >= turns or clock.now >= end:
            raise Stop
        clock.now += timeout or 0.0
        await asyncio.sleep(0)

    monkeypatch.setattr(store, "posts_to_redraw", posts_to_redraw)
    monkeypatch.setattr(redraw_module, "wait_until_woken", wait)

    async def run() -> dict[str, int]:
        with pytest.raises(Stop):
            await Redrawer.of(bot.rt).run()
        return {**counts, "reached": int(clock.now >= end)}

    return run  # type: ignore[return-value]


def posted(fake: FakeSlack, tmp_path: Path, n: int = 1, **changes):
    return posted_on_clock(fake, tmp_path, ITEMS, n, **changes)


def answered(bot: Bot, item_id: str, user: str, label: str, votes: int = 2) -> None:
    bot.store.record_answer(
        item_id, user, label, source="button", dedupe_key=f"{item_id}{user}", votes_needed=votes
    )


async def test_a_refused_token_does_not_leave_a_message_backoff_due_for_a_loop_that_spins(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A redraw fails once (a 500: the message backs off), then Slack refuses the token. The
    token's backoff held every message, but the message's own due time stayed in the past:
    ``next_due`` in the past, every wait 0 s, a pass per turn of the event loop that did
    nothing (55,000 passes in 3 s, a core pegged, as long as the token was refused)."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path):
        item = item_of(bot.posted()[0])
        fake_slack.fail("chat.update", status=500)
        answered(bot, item, "U0ANA", "billing")
        await redrawer.soon()
        assert redrawer.backoff  # it backs off
        fake_slack.fail("chat.update", "invalid_auth", times=10_000)
        clock.now = redrawer.next_due() or clock.now  # its backoff is due
        counts = await counted_loop(bot, clock, monkeypatch, span=120.0)()
        assert redrawer.token_refused == "invalid_auth"
        assert counts["reached"], f"the loop spun at one instant: {counts}"
        # the token's retries (doubling up to SLACK_TOKEN_RETRY), not one per turn
        assert counts["passes"] <= 30, counts
        assert len(fake_slack.calls_to("chat.update")) <= 30


async def test_a_message_waiting_for_its_channel_does_not_make_the_loop_spin(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A message backing off (a 500) is refused next for its channel (not_in_channel): the
    channel's backoff holds it, and its own due time, in the past, must move with it."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path):
        item = item_of(bot.posted()[0])
        fake_slack.fail("chat.update", status=500)
        answered(bot, item, "U0ANA", "billing")
        await redrawer.soon()
        fake_slack.fail("chat.update", "not_in_channel", times=10_000)
        clock.now = redrawer.next_due() or clock.now
        counts = await counted_loop(bot, clock, monkeypatch, span=600.0)()
        assert CHANNEL in redrawer.channel_held
        assert counts["reached"], f"the loop spun at one instant: {counts}"
        assert counts["passes"] <= 40, counts


async def test_a_look_for_a_lost_post_behind_the_erasures_backoff_does_not_spin(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A deleted item's post got no answer (looked for every LOST_LOOK s) while chat.delete
    backs off (a 429, Retry-After 30): once the look was due, ``_erase`` returned early for
    the erasures' backoff and never moved it: a pass per turn until the erasures were due."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path):
        first = item_of(bot.posted()[0])
        other = next(item.id for item in ITEMS if item.id != first)
        assert bot.store.begin_post_attempt(other, CHANNEL, "uncertain", None, None, None)
        bot.store.delete_items([first, other], user_id="U0ADMIN", reason="test")
        assert bot.store.lost_posts() and bot.store.erased_posts()
        fake_slack.fail("chat.delete", status=429, retry_after=30, times=100)
        counts = await counted_loop(bot, clock, monkeypatch, span=25.0)()
        assert redrawer.erase_due is not None and redrawer.lost_due is not None
        assert counts["reached"], f"the loop spun at one instant: {counts}"
        assert counts["passes"] <= 10, counts


async def test_an_update_slack_applies_late_is_drawn_over_once_it_settles(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Slack holds the redraw of Ana's vote past the client's timeout; Raj's vote decides the
    item and its redraw goes through; then Slack applies the held update: the decided
    question showed open again, with buttons, and the database thought it drawn. Now the
    message whose update timed out is drawn once more after UPDATE_SETTLE, and only then; a
    redraw that went through costs no second call."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path, votes=2, show_votes=True):
        message = bot.posted()[0]
        item = item_of(message)
        settle = getattr(redrawer, "update_settle", 60.0)  # UPDATE_SETTLE
        answered(bot, item, "U0RAJ", "crash", votes=9)  # a plain redraw first: no settle
        await redrawer.pending()
        calls = len(fake_slack.calls_to("chat.update"))
        clock.now += 10 * settle
        await redrawer.pending(due_only=True)
        assert len(fake_slack.calls_to("chat.update")) == calls  # nothing failed: no call

        bot.rt.client = make_client(bot.rt.settings, retries=0, timeout=0.3)
        fake_slack.fail("chat.update", mode="timeout")  # held until released
        answered(bot, item, "U0ANA", "billing")
        await redrawer.pending()  # the client gives up after 0.3 s: it backs off
        assert redrawer.backoff
        answered(bot, item, "U0ADMIN", "billing")  # decided
        await redrawer.pending()
        newest = fake_slack.message(CHANNEL, message["ts"])
        assert newest["text"].startswith("Labeled") and not has_buttons(newest)
        held = fake_slack.calls_to("chat.update")[calls]
        fake_slack.release_timeouts()  # Slack applies the held update now
        await fake_slack.wait_for(lambda held=held: held.reply is not None)
        assert has_buttons(fake_slack.message(CHANNEL, message["ts"]))  # the older drawing
        calls = len(fake_slack.calls_to("chat.update"))
        await redrawer.pending(due_only=True)
        assert len(fake_slack.calls_to("chat.update")) == calls  # not before it settles
        clock.now += settle
        await redrawer.pending(due_only=True)
        shown = fake_slack.message(CHANNEL, message["ts"])
        assert shown["blocks"] == newest["blocks"], shown["text"]
        calls = len(fake_slack.calls_to("chat.update"))
        clock.now += 10 * settle
        await redrawer.pending(due_only=True)
        assert len(fake_slack.calls_to("chat.update")) == calls  # once, not again and again


async def test_a_moved_questions_old_message_never_gets_its_buttons_back(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_CHANNEL changed: the open questions moved, their old messages drawn "now asked in
    #new" without buttons. An answer on an old message (it counts) redrew it from the item as
    an open question, buttons and all; decided later, it kept them."""
    fake_slack.add_channel(NEW, "new-questions")
    seed(tmp_path / "hitl.db", ITEMS)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=2)):
        assert await bot.dispatcher.fill() == 2
    old = {item_of(m): m for m in fake_slack.messages(CHANNEL)}
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=2, channel=NEW)
    async for bot in start_bot(fake_slack, settings):
        assert await bot.dispatcher.fill() == 1
        await bot.rt.redrawer.pending()
        asked = item_of(fake_slack.messages(NEW)[0])
        [waiting] = [item for item in old if item != asked]
        ts = old[waiting]["ts"]
        assert not has_buttons(fake_slack.message(CHANNEL, ts))
        label = bot.first_label(old[waiting])
        assert (await bot.action(bot.button_payload(old[waiting], "U0ANA", label))).status == 200
        await bot.settled()
        await bot.rt.redrawer.pending()
        shown = fake_slack.message(CHANNEL, ts)
        assert not has_buttons(shown), shown["text"]
        assert "went back to the queue" in shown["text"] and f"<#{NEW}>" in shown["text"]
        answered(bot, waiting, "U0RAJ", label)  # decided (on the old message too)
        await bot.rt.redrawer.pending()
        assert bot.store.resolution(waiting) is not None
        assert not has_buttons(fake_slack.message(CHANNEL, ts))


async def test_the_old_apps_open_questions_are_redrawn_at_start_and_taken_back(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The app was created again (new bot user, new token) and the server restarted: the old
    app's questions held every place, and nothing redrew them, so Slack's
    ``cant_update_message`` was never heard: the new app posted nothing for 72 h."""
    seed(tmp_path / "hitl.db", ITEMS)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=2)):
        assert await bot.dispatcher.fill() == 2
        await bot.settled()
    fake_slack.token, fake_slack.bot_user_id, fake_slack.bot_id = "xoxb-new-app", "UBOT2", "B2"
    fake_slack.add_user("UBOT2", "hitl2")
    update = fake_slack._handlers["chat.update"]

    def only_its_own(params: dict) -> dict:  # as Slack: another bot user's message is not ours
        stored = fake_slack.messages(CHANNEL)
        mine = {m["ts"]: m for m in stored}.get(str(params.get("ts")))
        if mine is not None and mine.get("user") != fake_slack.bot_user_id:
            raise SlackError("cant_update_message")
        return update(params)

    fake_slack._handlers["chat.update"] = only_its_own
    before = len(fake_slack.calls_to("chat.postMessage"))
    settings = make_settings(fake_slack, tmp_path, max_open=2, slack_bot_token="xoxb-new-app")
    async for bot in start_bot(fake_slack, settings, background=True):
        await fake_slack.wait_for(
            lambda: len(fake_slack.calls_to("chat.postMessage")) >= before + 2, timeout=10
        )
        await bot.settled()
        mine = [m for m in fake_slack.messages(CHANNEL) if m.get("user") == "UBOT2"]
        assert len(mine) == 2  # the new app asks in the places the old questions held
        old = bot.store.db.execute(
            "SELECT count(*) FROM posts WHERE closed_at IS NOT NULL AND expired_at IS NOT NULL"
        ).fetchone()[0]
        assert old == 2  # taken back: Slack said cant_update_message at the start's redraw


async def test_queue_says_what_to_do_about_a_channel_that_refuses_the_bot(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot, _, _ in posted(fake_slack, tmp_path):
        bot.dispatcher.channel_state(CHANNEL).broken = "channel_not_found"
        text = queue_text(bot.rt)
        assert "⛔ not posting: channel_not_found: the bot cannot see this channel" in text
        assert "/invite @hitl" in text
