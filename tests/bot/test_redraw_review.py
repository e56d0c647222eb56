"""The redrawer after review r_today1: a settle draw (``UPDATE_SETTLE``) is not cut short by a
post that goes through again (``retry_now``) or a channel that works again; the start's draw
of every open question goes a few at a time, after the changes, and stops at a 429; a
``message_not_found`` Slack says for a while of a message that is there takes nothing back; a
"message gone" count does not carry over to a new post that reuses a deleted post's id; and
``has_answered_in`` reads the smaller side (a heavy labeler, a small routed channel).

The real server and the fake Slack. Time is the redrawer's clock (``Redrawer.clock``), moved
by the test; nothing sleeps. The query's cost is counted in SQLite's steps (a progress
handler), not timed."""

from __future__ import annotations

import copy
from pathlib import Path

import bot.slack.redraw as redraw_module
from bot.sandbox import FakeSlack
from bot.slack.redraw import Backoff
from bot.store import Store
from tests.bot.harness import (
    Bot,
    Item,
    has_buttons,
    item_of,
    posted_on_clock,
)
from tests.fake_slack import CHANNEL

START_BATCH = getattr(redraw_module, "START_BATCH", 4)  # start draws a pass
ITEMS = [Item(f"i{n}", f"ticket number {n} about an invoice or a crash") for n in range(14)]


def posted(fake: FakeSlack, tmp_path: Path, n: int = 2, retries: int = 0, **changes):
    return posted_on_clock(fake, tmp_path, ITEMS, n, retries, **changes)


def touch(bot: Bot, item_id: str, key: str) -> None:
    """An answer that decides nothing: the item's message is behind the database."""
    bot.store.record_answer(
        item_id, f"U{key}", None, source="button", dedupe_key=key, votes_needed=9
    )


def updates(fake: FakeSlack) -> list[str]:
    """The ts of each chat.update call, in order."""
    return [str(call.params.get("ts")) for call in fake.calls_to("chat.update")]


# -- 1: a settle draw keeps its time ---------------------------------------------------------


async def test_a_settle_draw_is_not_cut_short_by_a_post_that_goes_through_again(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A chat.update answered 500 (Slack may apply it late); in the same hiccup a post went
    through again (``retry_now``), which made the settle draw due at once: the decided
    redraw took it, and the late update then left the decided question with buttons."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path, votes=2, show_votes=True):
        message = bot.posted()[0]
        item, ts = item_of(message), message["ts"]
        fake_slack.fail("chat.update", "internal_error", status=500)
        bot.store.record_answer(
            item, "U0ANA", "billing", source="button", dedupe_key="a", votes_needed=2
        )
        await redrawer.pending()
        late = copy.deepcopy(fake_slack.message(CHANNEL, ts))  # what Slack may apply late
        late["blocks"] = copy.deepcopy(message["blocks"])  # an open drawing, with buttons
        assert int(bot.store.post_for_item(item)["id"]) in redrawer.again_due
        redrawer.retry_now()  # the dispatcher: a post went through again
        redrawer.channel_held[CHANNEL] = Backoff("not_in_channel", 1.0, clock.now + 1, CHANNEL)
        redrawer.channel_works(CHANNEL)  # the channel works again
        del redrawer.channel_held[CHANNEL]
        bot.store.record_answer(
            item, "U0RAJ", "billing", source="button", dedupe_key="b", votes_needed=2
        )  # decided
        await redrawer.pending(due_only=True)
        decided = fake_slack.message(CHANNEL, ts)
        assert not has_buttons(decided)
        fake_slack._messages[CHANNEL][ts] = late  # Slack applies the held update now
        calls = len(fake_slack.calls_to("chat.update"))
        await redrawer.pending(due_only=True)
        assert len(fake_slack.calls_to("chat.update")) == calls  # not before it settles
        clock.now += redrawer.update_settle
        await redrawer.pending(due_only=True)
        shown = fake_slack.message(CHANNEL, ts)
        assert not has_buttons(shown), "the settle draw was cut short: buttons on a decided item"
        assert shown["blocks"] == decided["blocks"]


# -- 2: the start's draws go a few at a time, after the changes, and stop at a 429 ----------


async def test_the_start_draws_a_few_open_questions_a_pass_after_the_changes(
    fake_slack: FakeSlack, tmp_path: Path
):
    """At start every open question was drawn in one pass holding the redrawer's lock: a
    click's redraw waited for all of them (10 s with 50 questions and a slow Slack)."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path, n=12):
        messages = bot.posted()
        before = len(updates(fake_slack))
        redrawer.redraw_open()  # as the background loop does at start
        clicked = messages[-1]
        touch(bot, item_of(clicked), "click")  # a click right after the start
        await redrawer.pending(due_only=True)
        drawn = updates(fake_slack)[before:]
        assert drawn[0] == clicked["ts"]  # the click's redraw first
        assert len(drawn) <= 1 + START_BATCH, drawn
        await redrawer.pending(due_only=True)  # the next batch is not due yet
        assert len(updates(fake_slack)) == before + len(drawn)
        for _ in range(len(messages)):
            clock.now = redrawer.next_due() or clock.now
            await redrawer.pending(due_only=True)
        assert set(updates(fake_slack)[before:]) == {m["ts"] for m in messages}  # each once
        assert redrawer.next_due() is None


async def test_the_start_draws_stop_at_a_rate_limit_and_wait_its_retry_after(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A restart while Slack rate-limited chat.update: the start pass tried every open
    question in turn (each 429 a failure of that message only), the lock held throughout."""
    async for _bot, redrawer, clock in posted(fake_slack, tmp_path, n=10):
        before = len(updates(fake_slack))
        fake_slack.fail("chat.update", "ratelimited", status=429, retry_after=30, times=1000)
        redrawer.redraw_open()
        await redrawer.pending(due_only=True)
        assert len(updates(fake_slack)) == before + 1  # one call, then it waits
        assert (redrawer.next_due() or 0.0) >= clock.now + 30  # at least its Retry-After
        clock.now += 29
        await redrawer.pending(due_only=True)
        assert len(updates(fake_slack)) == before + 1
        fake_slack._faults.pop("chat.update")  # Slack takes them again
        clock.now += 1
        await redrawer.pending(due_only=True)
        assert len(updates(fake_slack)) > before + 1  # it goes on after the wait


# -- 3: message_not_found for a while takes nothing back --------------------------------------


async def test_message_not_found_for_a_while_of_a_message_that_is_there_takes_nothing_back(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Slack answered message_not_found three times in a row (a few seconds) of a message
    that was there: the question was taken back, its message kept live buttons for good."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path):
        message = bot.posted()[0]
        item = item_of(message)
        fake_slack.fail("chat.update", "message_not_found", times=3)
        touch(bot, item, "a")
        for _ in range(3):
            clock.now += 1
            await redrawer.pending()
        post = bot.store.post_for_item(item)
        assert post["expired_at"] is None and post["closed_at"] is None, "taken back"
        assert len(fake_slack.calls_to("conversations.history")) == 1  # looked once
        clock.now = redrawer.next_due() or clock.now
        await redrawer.pending(due_only=True)  # Slack takes it again: drawn
        assert bot.store.posts_to_redraw() == [] and redrawer.gone == {}


async def test_where_the_history_cannot_be_read_message_not_found_must_last(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Without the history scope the message cannot be looked for: the answers must span
    GONE_SPAN before the question is taken back (a deleted message is taken back then)."""
    fake_slack.scopes = [s for s in fake_slack.scopes if s != "channels:history"]
    async for bot, redrawer, clock in posted(fake_slack, tmp_path):
        message = bot.posted()[0]
        item = item_of(message)
        del fake_slack._messages[CHANNEL][message["ts"]]  # deleted in Slack
        touch(bot, item, "a")
        for _ in range(4):
            clock.now += 1
            await redrawer.pending()
        assert bot.store.post_for_item(item)["expired_at"] is None  # not yet
        clock.now += 600
        await redrawer.pending()
        assert bot.store.post_for_item(item)["expired_at"] is not None  # it lasted: taken back


async def test_a_rate_limited_history_is_not_waited_out_inside_the_pass(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The history look that confirms a message is gone is made inside the redraw pass,
    with its lock held: a 429 there was slept out (Retry-After, twice), once per deleted
    message, and a click's redraw waited behind it. One try now, and the channel's history
    is not read again before its Retry-After."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path, n=3, retries=2):
        for message in bot.posted():
            del fake_slack._messages[CHANNEL][message["ts"]]  # deleted in Slack
            touch(bot, item_of(message), f"d{message['ts']}")
        fake_slack.fail("conversations.history", "ratelimited", status=429, retry_after=5)
        for _ in range(3):
            clock.now += 1
            await redrawer.pending()
        assert len(fake_slack.calls_to("conversations.history")) == 1  # one try, for the channel
        assert bot.store.open_post_counts().get(CHANNEL, 0) == 3  # nothing taken back unsure
        clock.now += 5  # its Retry-After is over: looked again, and they are gone
        await redrawer.pending()
        assert bot.store.open_post_counts().get(CHANNEL, 0) < 3


# -- 4: a "message gone" count does not carry over to a reused post id ------------------------


async def test_a_gone_count_does_not_carry_over_to_a_new_post_with_the_same_id(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Two message_not_found on the newest question, then `hitl delete` of its item: the next
    post reused its id (a rowid) and inherited the count, and ONE transient
    message_not_found took the new question back."""
    async for bot, redrawer, clock in posted(fake_slack, tmp_path):
        newest = bot.posted()[-1]
        item = item_of(newest)
        old_id = int(bot.store.post_for_item(item)["id"])
        fake_slack.fail("chat.update", "message_not_found", times=2)
        for key in "ab":
            touch(bot, item, key)
            clock.now += 100
            await redrawer.pending()
        bot.store.delete_items([item], user_id="U0ADMIN")  # hitl delete
        clock.now += 100
        await redrawer.pending()
        assert redrawer.gone == {}  # forgotten with its post
        assert await bot.dispatcher.fill() == 1
        await bot.settled()
        [new] = [p for p in bot.store.open_posts() if int(p["id"]) == old_id]  # id reused
        fake_slack.fail("chat.update", "message_not_found", times=1)
        touch(bot, str(new["item_id"]), "c")
        clock.now += 100
        await redrawer.pending()
        assert bot.store.post(old_id)["expired_at"] is None, "one message_not_found took it back"


# -- 5: has_answered_in reads the smaller side -------------------------------------------------


def steps(store: Store, call) -> int:
    """SQLite's virtual machine steps (in thousands) ``call`` takes."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    store.db.conn.set_progress_handler(tick, 1000)
    try:
        call()
    finally:
        store.db.conn.set_progress_handler(None, 0)
    return count[0]


def test_a_heavy_labelers_check_of_a_small_routed_channel_reads_the_channel(store: Store):
    """One labeler with 20,000 answers, a routed channel of 20 posts they never answered
    in: the check walked all of the person's answers (26-49 ms at 60k, on the event loop,
    per routed channel at each App Home "Start labeling")."""
    db = store.db
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)"
        " INSERT INTO items (id, text, source, created_at, updated_at) SELECT 'it' || i,"
        " 'text ' || i, 'test', '2026-01-01T00:00:00', '2026-01-01T00:00:00' FROM n"
    )
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)"
        " INSERT INTO posts (item_id, channel, ts, reason, posted_at, closed_at, redraw_seq,"
        " drawn_seq) SELECT 'it' || i, CASE WHEN i < 20 THEN 'C0SMALL' ELSE 'C0MAIN' END,"
        " printf('1700000000.%06d', i), 'uncertain', '2026-01-01T00:00:00',"
        " '2026-01-02T00:00:00', 1, 1 FROM n"
    )
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 20 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)"
        " INSERT INTO answers (item_id, user_id, label, source, created_at, dedupe_key)"
        " SELECT 'it' || i, 'UHEAVY', 'bug', 'button', '2026-01-01T00:00:00', 'k' || i FROM n"
    )
    db.execute(
        "INSERT INTO answers (item_id, user_id, label, source, created_at, dedupe_key)"
        " VALUES ('it3', 'USMALL', 'bug', 'button', '2026-01-01T00:00:00', 'small')"
    )
    db.conn.commit()
    assert store.has_answered_in("UHEAVY", "C0MAIN")
    assert not store.has_answered_in("UHEAVY", "C0SMALL")
    assert store.has_answered_in("USMALL", "C0SMALL")
    assert not store.has_answered_in("USMALL", "C0MAIN")
    assert not store.has_answered_in("UNOBODY", "C0MAIN")
    heavy = steps(store, lambda: store.has_answered_in("UHEAVY", "C0SMALL"))
    walk = steps(  # what walking the person's answers costs
        store,
        lambda: db.execute(
            "SELECT count(*) FROM answers a INDEXED BY answers_user WHERE a.user_id = ?"
            " AND a.source != 'import' AND EXISTS (SELECT 1 FROM posts p INDEXED BY"
            " posts_item WHERE p.item_id = a.item_id AND p.channel = ?)",
            ["UHEAVY", "C0SMALL"],
        ).fetchone(),
    )
    assert walk >= 100, walk
    assert heavy * 4 < walk, (heavy, walk)
