"""The running server's moving parts, from an outside review (reader3): the redrawer's loop
neither spins after a refused token nor dies of one refused database write, and a loop that
dies all the same is said and makes /healthz answer 503; backoffs do not overflow after
1,024 failures; a failed ``conversations.join`` is tried again and makes no item "unsure"; a
lost post is found however many messages came after it; a review decision, an Undo and an
API delete wake the dispatcher; "trying X again" is said once while a channel is stopped;
one cancelled /api/predict does not strand the rest of its batch.

Nothing here sleeps to wait: the loops are observed at their waits (``wait_until_woken`` is
replaced by one that records its timeout), and where a test stands for hours it sets the
backoff (``next_attempt``, ``post_settle``, the redrawer's clock) instead."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

import bot.slack.connect as connect
import bot.slack.redraw as redraw
from bot.api.intake import Intake
from bot.api.routes import ApiItem
from bot.sandbox import FakeSlack
from bot.server import init_app
from bot.slack import dispatch
from bot.slack.redraw import Redrawer
from tests.bot.harness import Item, make_settings, margin_scored, seed, start_bot
from tests.bot.test_review import decision
from tests.bot.test_undo_flows import click_undo, decide
from tests.fake_slack import CHANNEL, slack_client

ITEMS = [Item(f"i{n}", f"ticket number {n}") for n in range(3)]


class Clock:
    """The redrawer's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Waits:
    """Stands for ``wait_until_woken`` in the redrawer: records each wait's timeout, and the
    first one never ends (the test looks at the loop there)."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []
        self.reached = asyncio.Event()

    async def __call__(self, event: asyncio.Event, timeout: float | None) -> None:  # noqa: ASYNC109
        self.timeouts.append(timeout)
        self.reached.set()
        await asyncio.Future()  # stays here until the test cancels the loop


async def first_wait(redrawer: Redrawer, monkeypatch: pytest.MonkeyPatch) -> float | None:
    """Run the redrawer's loop up to its first wait; the wait's timeout."""
    waits = Waits()
    monkeypatch.setattr(redraw, "wait_until_woken", waits)
    loop_task = asyncio.create_task(redrawer.run(), name="hitl-redrawer")
    try:
        ended = asyncio.create_task(waits.reached.wait())
        await asyncio.wait({loop_task, ended}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        assert not loop_task.done(), f"the loop ended: {loop_task.exception()!r}"
    finally:
        loop_task.cancel()
    return waits.timeouts[0]


# -- 1. the redrawer's loop does not spin after a refused token -------------------------------


async def refused_then(fake_slack: FakeSlack, tmp_path: Path, then: str, times: int):
    """A posted question whose redraw Slack refuses for the token once, then answers
    ``then`` ``times`` times; the redrawer's clock is the test's."""
    seed(tmp_path / "hitl.db", ITEMS[:2])
    settings = make_settings(fake_slack, tmp_path, max_open=1, votes=3)
    async for bot in start_bot(fake_slack, settings, retries=0):
        assert await bot.dispatcher.fill() == 1
        [message] = bot.posted()
        redrawer = Redrawer.of(bot.rt)
        clock = redrawer.clock = Clock()
        fake_slack.fail("chat.update", "invalid_auth", times=1)
        fake_slack.fail("chat.update", then, times=times)
        payload = bot.button_payload(message, "U0ANA", bot.first_label(message))
        assert (await bot.action(payload)).status == 200
        await bot.rt.background.drain(10)
        assert redrawer.token_refused == "invalid_auth"
        yield bot, redrawer, clock


async def test_the_redrawer_waits_for_the_messages_backoff_after_a_refused_token(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Once the token's wait had passed, a 5xx left it in the past: every wait was 0 s (2,000
    passes in 0.2 s for 5 Slack calls, on the loop that serves clicks)."""
    async for _bot, redrawer, clock in refused_then(fake_slack, tmp_path, "internal_error", 99):
        clock.now = redrawer.next_due() or 0.0  # the token's wait is over
        timeout = await first_wait(redrawer, monkeypatch)  # its pass meets a 5xx
        assert len(fake_slack.calls_to("chat.update")) == 2
        assert timeout is not None and timeout > 0, f"the loop waits {timeout} s: it spins"
        assert timeout == pytest.approx(redrawer.retry_base)  # the message's own backoff


async def test_the_redrawer_idles_once_the_refused_tokens_message_is_given_up(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The message is gone (given up after three message_not_found): nothing is left to redraw,
    and no redraw that goes through could clear the token's wait, left in the past."""
    async for bot, redrawer, clock in refused_then(fake_slack, tmp_path, "message_not_found", 3):
        for _ in range(10):  # each attempt when its backoff ends
            if not bot.store.posts_to_redraw():
                break
            clock.now += redraw.MAX_BACKOFF  # past every backoff
            await redrawer.pending(due_only=True)
        assert len(fake_slack.calls_to("chat.update")) == 4
        assert await first_wait(redrawer, monkeypatch) == redrawer.idle_tick


# -- 2. the redrawer outlives a refused database write; a dead loop is said --------------------


async def test_the_redrawer_outlives_a_locked_database_and_says_it_once(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Another process held the write lock (a CLI command, a sqlite3 shell) while a message
    waited for its retry: ``mark_drawn`` raised, and the task ended for good, silently."""
    db = tmp_path / "hitl.db"
    seed(db, ITEMS)
    settings = make_settings(fake_slack, tmp_path, max_open=2)
    async for bot in start_bot(fake_slack, settings, retries=0):
        bot.store.set_busy_timeout(50)
        assert await bot.dispatcher.fill() == 2
        [message, *_] = bot.posted()
        fake_slack.fail("chat.update", "internal_error", times=1)
        payload = bot.button_payload(message, "U0ANA", bot.first_label(message))
        assert (await bot.action(payload)).status == 200
        await bot.rt.background.drain(10)
        redrawer = Redrawer.of(bot.rt)
        assert redrawer.backoff, "the failed redraw waits for its retry"
        for waiting in redrawer.backoff.values():
            waiting.due = 0.0  # its backoff is over

        said = asyncio.Event()

        class Said(logging.Handler):
            def emit(self, record: logging.LogRecord, said: asyncio.Event = said) -> None:
                if record.getMessage().startswith("redraws wait:"):
                    said.set()

        handler = Said()
        logging.getLogger("bot.slack.redraw").addHandler(handler)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        redrawer.idle_tick = 0.01
        loop_task = asyncio.create_task(redrawer.run(), name="hitl-redrawer")
        try:
            waiting = asyncio.create_task(said.wait())
            await asyncio.wait({loop_task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            assert not loop_task.done(), f"the redrawer's loop ended: {loop_task.exception()!r}"
            other.execute("ROLLBACK")  # the lock is released: the message is drawn
            async with asyncio.timeout(10):
                await redrawer.all_drawn()
            assert not loop_task.done()
        finally:
            loop_task.cancel()
            logging.getLogger("bot.slack.redraw").removeHandler(handler)
            other.close()
        lines = [r.getMessage() for r in caplog.records if "redraws " in r.getMessage()]
        assert len([line for line in lines if line.startswith("redraws wait:")]) == 1, lines
        assert "locked by another process" in lines[0]
        assert lines[-1] == "redraws go on: the database answers again"


async def test_a_background_loop_that_dies_is_said_and_healthz_answers_503(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    from bot.server import STOPPED, supervised

    seed(tmp_path / "hitl.db", ITEMS[:1])
    app = init_app(make_settings(fake_slack, tmp_path), run_background=False)
    async with TestServer(app, host="127.0.0.1") as server, TestClient(server) as http:
        assert (await http.get("/healthz")).status == 200

        async def dies() -> None:
            raise sqlite3.OperationalError("database is locked")

        task = supervised(app, asyncio.create_task(dies(), name="hitl-redrawer"))
        await asyncio.wait({task})
        response = await http.get("/healthz")
        body = await response.json()
        assert response.status == 503
        assert (body["ok"], body["stopped"]) == (False, ["hitl-redrawer"])
        assert app[STOPPED] == ["hitl-redrawer"]
    [line] = [r for r in caplog.records if "background task" in r.getMessage()]
    assert line.getMessage().startswith("background task hitl-redrawer stopped: database is")
    assert line.exc_info is not None or "Traceback" in (line.exc_text or "")  # redacted


# -- 3. no backoff overflows ---------------------------------------------------------------


async def test_the_channel_backoff_holds_after_1024_failures_in_a_row(
    fake_slack: FakeSlack, tmp_path: Path
):
    """``2 ** 1024`` times a float raised OverflowError in every round from the 1,025th
    failure on (85 hours of them at 5 minutes): no backoff, the other channels starved."""
    seed(tmp_path / "hitl.db", ITEMS)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        d = bot.dispatcher
        loop = asyncio.get_running_loop()
        state = d.channel_state(CHANNEL)
        state.failures = 1024  # the next one is the 1,025th
        d._back_off(CHANNEL, "service_unavailable")
        assert state.next_attempt - loop.time() == pytest.approx(dispatch.MAX_BACKOFF, abs=1)
        d.scoring_failures = 5000  # scoring out of memory for weeks
        d._scoring_backoff()
        assert d.scoring_retry_at - loop.time() == pytest.approx(dispatch.MAX_BACKOFF, abs=1)


async def test_start_up_keeps_trying_after_1024_attempts(monkeypatch: pytest.MonkeyPatch):
    """Slack unreachable at start for 17 hours: ``hitl serve`` stopped with OverflowError."""
    slept: list[float] = []

    async def instant(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(connect.asyncio, "sleep", instant)
    calls = 0

    async def unreachable() -> dict:
        nonlocal calls
        calls += 1
        if calls > 1100:
            return {"ok": True}
        raise OSError("Network is unreachable")

    logging.getLogger("bot.slack.connect").setLevel(logging.ERROR)
    try:
        assert await connect.retry_until_answered(unreachable, "cannot reach Slack", 1.0) == {
            "ok": True
        }
    finally:
        logging.getLogger("bot.slack.connect").setLevel(logging.NOTSET)
    assert max(slept) == connect.MAX_BACKOFF
    assert connect.backoff(10_000, 0.001) == connect.MAX_BACKOFF


# -- 4. a failed join --------------------------------------------------------------------------


async def test_a_join_that_failed_is_tried_again_and_leaves_no_item_unsure(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The bot was removed from the public channel, and its join met a Slack blip: the
    join-once flag stayed set (every later post said not_in_channel, never joined), and the
    item counted as "unsure" though nothing was posted, so the channel read its history first,
    which Slack refuses outside the channel: no question again until an invite by hand."""
    seed(tmp_path / "hitl.db", ITEMS)
    settings = make_settings(fake_slack, tmp_path, max_open=2)
    async for bot in start_bot(fake_slack, settings, retries=0):
        d = bot.dispatcher
        fake_slack.remove_bot(CHANNEL)
        fake_slack.fail("conversations.join", "service_unavailable", status=503, times=1)
        assert await d.fill() == 0  # the join fails
        state = d.channel_state(CHANNEL)
        assert state.unsure == set(), "a failed join made the item unsure"
        assert not bot.store.post_attempts()
        assert not state.joined
        assert (state.last_error or "").startswith("conversations.join: ")
        state.next_attempt = 0.0  # its backoff is over; Slack is well again
        assert await d.fill() == 2
        assert len(fake_slack.messages(CHANNEL)) == 2
        joins = fake_slack.calls_to("conversations.join")
        assert [c.faulted for c in joins] == [True, False]


async def test_a_lost_post_in_a_channel_the_bot_left_is_looked_for_after_joining(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A post's answer is lost, then the bot is removed: Slack refuses the history outside
    the channel (``not_in_channel``), and the channel backed off "history unavailable" for
    ever. It joins, reads, and finds the post."""
    seed(tmp_path / "hitl.db", ITEMS[:1])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path), retries=0):
        d = bot.dispatcher
        fake_slack.fail("chat.postMessage", mode="reset", after=True)  # posted, answer lost
        assert await d.fill() == 0
        state = d.channel_state(CHANNEL)
        assert state.unsure == {"i0"}
        fake_slack.remove_bot(CHANNEL)
        state.next_attempt = 0.0
        await d.fill()
        assert state.unsure == set() and state.last_error is None
        assert [p["item_id"] for p in bot.store.db["posts"].rows] == ["i0"]
        assert len(fake_slack.calls_to("conversations.join")) == 1
        assert len(fake_slack.messages(CHANNEL)) == 1


# -- 5. a lost post is found however far back ---------------------------------------------


def carrying(fake_slack: FakeSlack, item_id: str) -> list[str]:
    return [
        m["ts"]
        for m in fake_slack.messages(CHANNEL)
        if ((m.get("metadata") or {}).get("event_payload") or {}).get("item_id") == item_id
    ]


async def test_a_lost_post_more_than_200_messages_back_is_found_not_posted_twice(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", ITEMS[:1])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path), retries=0):
        d = bot.dispatcher
        fake_slack.fail("chat.postMessage", mode="reset", after=True)
        assert await d.fill() == 0
        state = d.channel_state(CHANNEL)
        chatter = slack_client(fake_slack)
        for n in range(250):  # 250 newer messages before the history is read
            await chatter.chat_postMessage(channel=CHANNEL, text=f"chatter {n}")
        d.post_settle = 0.0  # post_settle (60 s) has passed since the post
        state.next_attempt = 0.0
        await d.fill()
        assert len(carrying(fake_slack, "i0")) == 1, "posted twice"
        assert [p["item_id"] for p in bot.store.db["posts"].rows] == ["i0"]
        pages = fake_slack.calls_to("conversations.history")
        assert len(pages) == 2 and "cursor" in pages[1].params


async def test_the_history_is_read_from_the_last_post_before_the_lost_one(
    fake_slack: FakeSlack, tmp_path: Path
):
    """Only the messages after the newest post Slack gave a ts before the lost one are read
    (``oldest``), not the whole channel."""
    seed(tmp_path / "hitl.db", ITEMS[:2])
    settings = make_settings(fake_slack, tmp_path, max_open=1)
    async for bot in start_bot(fake_slack, settings, retries=0):
        d = bot.dispatcher
        assert await d.fill() == 1
        [first] = fake_slack.messages(CHANNEL)
        bot.store.db["posts"].update(1, {"closed_at": "2026-01-01T00:00:00.000+00:00"})
        fake_slack.fail("chat.postMessage", mode="reset", after=True)
        state = d.channel_state(CHANNEL)
        assert await d.fill() == 0 and len(state.unsure) == 1
        [lost] = state.unsure
        d.post_settle = 0.0
        state.next_attempt = 0.0
        await d.fill()
        [read] = fake_slack.calls_to("conversations.history")
        assert read.params["oldest"] == first["ts"]
        assert len(carrying(fake_slack, lost)) == 1


# -- 6. decisions outside a click wake the dispatcher --------------------------------------


async def test_a_review_decision_that_frees_a_place_wakes_the_dispatcher(
    fake_slack: FakeSlack, tmp_path: Path
):
    seed(tmp_path / "hitl.db", ITEMS)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        d = bot.dispatcher
        assert await d.fill() == 1
        [post] = list(bot.store.db["posts"].rows)
        d.woken.clear()  # the background loop went back to waiting (up to 30 s)
        woken: list[str] = []
        bot.rt.labels_changed = lambda woken=woken: woken.append("trainer")  # type: ignore[method-assign]
        assert (await bot.command(f"review {post['item_id']}", "U0ADMIN")).status == 200
        view = (await fake_slack.next_call("views.open")).reply["view"]
        assert (await bot.action(decision(view, "label:bug"))).status == 200
        await bot.settled()
        assert bot.store.open_post_counts().get(CHANNEL, 0) == 0
        assert d.woken.is_set(), "nothing woke the dispatcher: the free place waits 30 s"
        assert woken == ["trainer"]  # a resolution: a refresh may be due, as after a click


async def test_an_undo_wakes_the_dispatcher(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "charged twice, app crashes"), Item("b", "hello")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=1)):
        _item_id, message, _label = await decide(bot)
        bot.dispatcher.woken.clear()
        assert (await click_undo(bot, "U0ANA", message)).startswith("Undone:")
        assert bot.dispatcher.woken.is_set()


async def test_an_api_delete_of_an_open_question_wakes_the_dispatcher(
    fake_slack: FakeSlack, tmp_path: Path
):
    from tests.bot.test_api import AUTH, start_api

    async for api in start_api(fake_slack, tmp_path, max_open=1):
        sent = await api.http.post(
            "/api/items",
            json={"items": [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]},
            headers=AUTH,
        )
        assert sent.status == 200
        assert await api.dispatcher.fill() == 1
        [post] = list(api.store.db["posts"].rows)
        api.dispatcher.woken.clear()
        path = "/api/items/" + quote(post["item_id"], safe="")
        assert (await api.http.delete(path, headers=AUTH)).status == 200
        assert api.dispatcher.woken.is_set()


# -- 7. "trying X again" once while a channel is stopped -----------------------------------


async def test_trying_again_is_said_once_while_a_channel_is_stopped(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    fake_slack.add_channel("C0BILLING", "billing")
    seed(tmp_path / "hitl.db", [Item(f"i{n}", f"ticket number {n}") for n in range(12)])
    settings = make_settings(fake_slack, tmp_path, max_open=50, routes={"billing": "C0BILLING"})
    async for bot in start_bot(fake_slack, settings):
        rows = [(f"i{n}", 1, "bug", 0.5, [["bug", 0.5], ["billing", 0.3]]) for n in range(12)]
        bot.store.set_predictions(margin_scored(rows), threshold=0.8, strategy="margin")
        d = bot.dispatcher
        d.channel_archived("C0BILLING", "U0ADMIN")
        d.channel_state("C0BILLING").next_attempt = 0.0  # 15 minutes later
        caplog.set_level(logging.INFO, logger="bot.slack.dispatch")
        caplog.clear()
        for _ in range(10):  # ten rounds: ten clicks or API items wake the dispatcher
            await d.fill()
        lines = [r.getMessage() for r in caplog.records if "trying C0BILLING" in r.getMessage()]
        assert lines == ["trying C0BILLING again after is_archived"]


# -- 8. one cancelled /api/predict ------------------------------------------------------------


async def test_a_cancelled_request_does_not_strand_the_rest_of_its_batch(memory_store: Any):
    intake = Intake(lambda: memory_store, "api")
    first = asyncio.create_task(intake.add([ApiItem("a", "text a", {}, None)]))
    second = asyncio.create_task(intake.add([ApiItem("b", "text b", {}, None)]))
    await asyncio.sleep(0)  # both have queued their items; the writer has not run yet
    first.cancel()
    async with asyncio.timeout(10):
        assert await second == {"b"}
    assert intake.writer is not None and intake.writer.exception() is None
    assert memory_store.get_item("a") is not None  # stored all the same
