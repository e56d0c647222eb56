"""Review 2 of the Slack-side fixes, and one leftover of the routed channels' fix.

1. A look for deleted questions (``Redrawer.look_for_deleted``) that Slack answered once with
   ``not_in_channel`` (the bot taken out of a public question channel; it joins again at its
   next post there) was kept as a refusal for good: the channel was never looked at again,
   and the gone-message check no longer read its history, until a restart. Only a scope or
   the channel gone is a refusal now, and it lasts a while (tried again, sooner once posting
   there works); ``not_in_channel`` waits for the next look.
2. An answer stamped by a clock that ran ahead kept its question open until the clock caught
   up, and one HITL_QUESTION_TTL more.
3. Every start redrew every pending split (the review backlog, no bound) though HITL_VOTES
   had not changed: chat.update's budget, which the clicks' redraws share.
4. To look for one lost post in a channel no longer asked in, the bot joined that channel,
   which the workspace had taken it out of.
5. `/hitl queue` counted the questions a retire of their label took back as "taken back
   unanswered".
6. An audit pick asked a question taken back unanswered again at once when the channel's
   audit sample (100 drawn at random) held nothing else of the channel's, though its window
   did.

The real server against the fake Slack, background loops off: the test makes the rounds and
passes itself, and moves the redrawer's clock by hand; nothing sleeps."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack.redraw import LOOK_EVERY, LOOK_GAP, Redrawer
from bot.store import Store
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
from tests.bot.test_label_drift import said as answered
from tests.bot.test_routed_channels_waiting import BILLING, age_open_posts, backlogged, open_in
from tests.bot.test_slack_side_faults import NEW, lost_post_then_moved
from tests.fake_slack import CHANNEL

ITEMS = [Item(f"i{n}", f"ticket number {n} about an invoice or a crash") for n in range(8)]
RETRY = 15 * 60  # seconds a refused history waits before it is read again (HISTORY_RETRY)
ANA, RAJ = "U0ANA", "U0RAJ"


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def history_calls(fake: FakeSlack) -> int:
    return len(fake.calls_to("conversations.history"))


def delete_in_slack(fake: FakeSlack, message: dict) -> None:
    del fake._messages[CHANNEL][message["ts"]]


async def look_due(redrawer: Redrawer, clock: ManualClock) -> None:
    """The channel's first look is due (a channel is looked at ``LOOK_EVERY`` after the
    redrawer first sees its open questions)."""
    assert await redrawer.look_for_deleted() == 0  # seen: its look comes LOOK_EVERY later
    clock.now += LOOK_EVERY


# -- 1: a look Slack refuses ------------------------------------------------------------------


async def test_a_look_answered_not_in_channel_waits_for_the_next_look(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot, redrawer, clock in posted_on_clock(fake_slack, tmp_path, ITEMS, 2):
        await look_due(redrawer, clock)
        fake_slack.fail("conversations.history", error="not_in_channel")
        assert await redrawer.look_for_deleted() == 0
        assert CHANNEL not in redrawer.history_refused  # not a refusal
        delete_in_slack(fake_slack, bot.posted()[0])
        clock.now += LOOK_EVERY + LOOK_GAP
        assert await redrawer.look_for_deleted() == 1  # the channel's next look finds it


async def test_a_look_refused_for_a_scope_is_said_once_and_tried_again_after_a_while(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    async for bot, redrawer, clock in posted_on_clock(fake_slack, tmp_path, ITEMS, 2):
        await look_due(redrawer, clock)
        fake_slack.fail("conversations.history", error="missing_scope", times=2)
        with caplog.at_level(logging.INFO, logger="bot"):
            assert await redrawer.look_for_deleted() == 0
            [line] = said(caplog, f"cannot read the history of {CHANNEL}")
            assert "missing_scope" in line
            delete_in_slack(fake_slack, bot.posted()[0])
            calls = history_calls(fake_slack)
            start = clock.now
            while clock.now + LOOK_EVERY + LOOK_GAP < start + RETRY:  # waits, no call
                clock.now += LOOK_EVERY + LOOK_GAP
                assert await redrawer.look_for_deleted() == 0
            assert history_calls(fake_slack) == calls
            clock.now = start + RETRY + LOOK_GAP
            assert await redrawer.look_for_deleted() == 0  # refused again: not said again
            assert history_calls(fake_slack) == calls + 1
            assert len(said(caplog, f"cannot read the history of {CHANNEL}")) == 1
            # the scope is added (the app reinstalled, same token, no restart)
            clock.now += RETRY + LOOK_GAP
            assert await redrawer.look_for_deleted() == 1
            assert said(caplog, f"the history of {CHANNEL} can be read again")


async def test_a_look_refused_for_the_channel_is_tried_again_once_posting_there_works(
    fake_slack: FakeSlack, tmp_path: Path
):
    async for bot, redrawer, clock in posted_on_clock(fake_slack, tmp_path, ITEMS, 2):
        await look_due(redrawer, clock)
        fake_slack.fail("conversations.history", error="channel_not_found")
        assert await redrawer.look_for_deleted() == 0
        assert CHANNEL in redrawer.history_refused
        answered_one, kept = bot.posted()
        payload = bot.button_payload(answered_one, ANA, bot.first_label(answered_one))
        assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert await bot.dispatcher.fill() == 1  # posting there works: the channel is back
        await bot.settled()
        assert CHANNEL not in redrawer.history_refused
        delete_in_slack(fake_slack, kept)
        clock.now += LOOK_EVERY + LOOK_GAP  # well before the refusal's own retry
        assert await redrawer.look_for_deleted() == 1


# -- 2: an answer stamped ahead ---------------------------------------------------------------


def test_an_answer_stamped_ahead_holds_its_question_one_ttl_from_when_it_is_seen():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    clock = {"t": t0}
    with Store.memory(lambda: clock["t"].isoformat(timespec="milliseconds")) as store:
        store.add_items([Item("a", "refund please"), Item("b", "app crashes")], "import")
        for item in ("a", "b"):
            store.record_post(item, "C1", f"100.{ord(item)}", "uncertain", None, None, None)
        clock["t"] = t0 + timedelta(days=30)  # the host clock reads 30 days ahead
        store.record_answer("a", "U1", "billing", source="slack", dedupe_key="k1", votes_needed=3)
        clock["t"] = t0 + timedelta(minutes=1)  # NTP steps it back
        assert store.expire_posts(72, 10) == []  # the round that first sees it
        [answer] = store.db.execute("SELECT created_at FROM answers WHERE item_id = 'a'")
        assert datetime.fromisoformat(answer[0]) <= clock["t"]
        clock["t"] = t0 + timedelta(hours=80)  # one TTL (72 h) after it was seen: both go
        assert {p["item_id"] for p in store.expire_posts(72, 10)} == {"a", "b"}
        answers, last = store.answers_when_taken_back("a", store.post_for_item("a")["expired_at"])
        assert answers == 1 and last is not None


# -- 3: the splits' draws at start ------------------------------------------------------------


async def split_backlog(fake: FakeSlack, tmp_path: Path, n: int) -> tuple[set[str], object]:
    """``n`` splits under HITL_VOTES=2, made by clicks; the first start drew its (no) splits
    as the background loop does at every start. Returns their messages' ts and the
    settings."""
    seed(tmp_path / "hitl.db", [Item(f"i{k}", f"refund and a crash number {k}") for k in range(n)])
    settings = make_settings(fake, tmp_path, labels=("billing", "bug"), votes=2, max_open=n)
    async for bot in start_bot(fake, settings):
        Redrawer.of(bot.rt).redraw_open()  # as the background loop does at start
        while len(fake.messages(CHANNEL)) < n:  # a round asks a few: rounds until all are
            assert await bot.dispatcher.fill() > 0
        for message in fake.messages(CHANNEL):
            for user, label in ((ANA, "billing"), (RAJ, "bug")):
                assert (await bot.action(bot.button_payload(message, user, label))).status == 200
                await bot.settled()
        assert len(bot.store.split_posts()) == n
    return {m["ts"] for m in fake.messages(CHANNEL)}, settings


async def start_draws(fake: FakeSlack, bot: Bot, split_ts: set[str], *, batches: int) -> int:
    """The start's draws, ``batches`` of them: how many chat.update went to split messages.
    The redrawer's clock stands still meanwhile: a channel Slack refused stays held for the
    start (its backoff, 0.01 s in the tests, is not over by the next batch on a slow machine)."""
    redrawer = Redrawer.of(bot.rt)
    redrawer.start_gap = 0.0
    now = redrawer.clock()
    redrawer.clock = lambda: now
    before = len(fake.calls_to("chat.update"))
    redrawer.redraw_open()
    for _ in range(batches):
        await redrawer.pending(due_only=True)
    return sum(c.params.get("ts") in split_ts for c in fake.calls_to("chat.update")[before:])


async def test_a_start_redraws_the_splits_only_when_hitl_votes_changed(
    fake_slack: FakeSlack, tmp_path: Path
):
    n = 12
    split_ts, settings = await split_backlog(fake_slack, tmp_path, n)
    async for bot in start_bot(fake_slack, settings):  # the same HITL_VOTES: none drawn
        assert await start_draws(fake_slack, bot, split_ts, batches=n) == 0
        assert not Redrawer.of(bot.rt).start_splits
    four = settings.with_changes(votes=4)
    async for bot in start_bot(fake_slack, four):  # stopped after the first batch
        assert 0 < await start_draws(fake_slack, bot, split_ts, batches=1) < n
    three = settings.with_changes(votes=3)
    async for bot in start_bot(fake_slack, three):  # every split again, none left at 4
        assert await start_draws(fake_slack, bot, split_ts, batches=n) == n
        for ts in split_ts:
            drawn = fake_slack.message(CHANNEL, ts)
            assert "2 of 3 answers in" in json.dumps(drawn["blocks"]), drawn["blocks"]
            assert has_buttons(drawn)
    async for bot in start_bot(fake_slack, three):
        assert await start_draws(fake_slack, bot, split_ts, batches=n) == 0


# -- 4: a lost post in a channel no longer asked in -------------------------------------------


async def test_a_lost_post_in_an_old_channel_the_bot_was_taken_out_of_is_given_up_unjoined(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    _, item = await lost_post_then_moved(fake_slack, tmp_path)
    fake_slack.remove_bot(CHANNEL)  # HITL_CHANNEL moved; the bot taken out of the old one
    settings = make_settings(fake_slack, tmp_path, max_open=8, channel=NEW)
    async for bot in start_bot(fake_slack, settings):
        with caplog.at_level(logging.INFO, logger="bot"):
            assert await bot.dispatcher.fill() == 8  # the item is asked in the new channel
        await bot.settled()
        joins = [c.params.get("channel") for c in fake_slack.calls_to("conversations.join")]
        assert CHANNEL not in joins
        assert item in [item_of(m) for m in fake_slack.messages(NEW)]
        assert bot.store.post_attempts() == []
        [line] = said(caplog, f"cannot look in {CHANNEL}, no longer asked in")
        assert "not_in_channel" in line and item in line


# -- 5: /hitl queue's "taken back unanswered" -------------------------------------------------


async def queue_line(bot: Bot) -> str:
    body = await (await bot.command("queue", ANA)).text()
    text = json.loads(body)["text"] if body.startswith("{") else body
    [line] = [line for line in text.splitlines() if f"<#{CHANNEL}>" in line]
    return line


async def test_questions_a_retire_took_back_are_not_counted_taken_back_unanswered(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        store.add_gold([Item(f"g{n}", f"please refund the double charge {n}", "billing")
                        for n in range(2)])  # fmt: skip
    seed(db, [Item("i1", "the app crashes on start")])
    labels = ("billing", "bug", "other")
    settings = make_settings(fake_slack, tmp_path, gold_rate=1.0, max_open=2, labels=labels)
    async for bot in start_bot(fake_slack, settings):
        while len(bot.posted()) < 2:  # both gold questions asked
            assert await bot.dispatcher.fill() > 0
        assert {item_of(m) for m in bot.posted()} == {"g0", "g1"}
        assert (await answered(bot, "labels retire billing")).startswith("Done.")
        await bot.settled()
        assert bot.store.open_post_counts().get(CHANNEL, 0) == 0  # both taken back
        assert "taken back unanswered" not in await queue_line(bot)
        # a question taken back for its time (HITL_QUESTION_TTL) is counted
        bot.rt.settings = bot.rt.settings.with_changes(question_ttl=1)
        assert await bot.dispatcher.fill() == 1
        age_open_posts(bot, 2)
        await bot.dispatcher.fill()
        assert "1 taken back unanswered in the last 7 days" in await queue_line(bot)


# -- 6: an audit pick and a question taken back -----------------------------------------------


def lucky_draw(bot: Bot) -> None:
    """The audit sample (100 unlabeled items drawn at random) holds, of #billing's items, only
    ``bill-hot``: the luck of one draw, fixed so that no run passes by luck."""
    draw = bot.store.sample_unlabeled

    def sample(size: int, rng: object) -> list[dict]:
        rows = sorted(draw(10_000, rng), key=lambda r: r["id"])  # every unlabeled item
        hot = [r for r in rows if r["id"] == "bill-hot"]
        return hot + [r for r in rows if r["id"].startswith("bug")][: size - len(hot)]

    bot.store.sample_unlabeled = sample  # type: ignore[method-assign]


@pytest.mark.parametrize("others", [3, 0])
async def test_an_audit_pick_asks_a_question_taken_back_only_when_its_channel_has_nothing_else(
    fake_slack: FakeSlack, tmp_path: Path, others: int
):
    async for bot in backlogged(fake_slack, tmp_path, billing=others):
        await bot.dispatcher.fill()
        assert open_in(bot, BILLING) == ["bill-hot"]
        age_open_posts(bot, 2)  # nobody answered for over one TTL
        bot.rt.settings = bot.rt.settings.with_changes(audit_rate=1.0)  # every pick an audit
        lucky_draw(bot)
        await bot.dispatcher.fill()
        await bot.settled()
        assert bot.store.resting(1) >= {"bill-hot"}
        if others:  # the channel's window holds other billing items: bill-hot waits
            assert "bill-hot" not in open_in(bot, BILLING)
            assert bot.store.get_item("bill-hot")["status"] == "queued"
        else:  # nothing else for #billing: it is asked again
            assert open_in(bot, BILLING) == ["bill-hot"]
