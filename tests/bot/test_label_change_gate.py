"""This server's own `/hitl labels` change and the writes on the event loop, through the real
endpoint; and the old messages of questions moved out of a channel no longer asked in.

A merge writes in a worker thread, in one transaction that grows with the label's items (2.3 s
at 250,000): a click's write on the loop meanwhile waited for its lock inside SQLite, the loop
held for up to 2 s (LOOP_BUSY_TIMEOUT_MS), then was refused (503, lost), the log blaming
"another process". Here the change is held *inside* its transaction (its ``_relabel_all``, after
BEGIN IMMEDIATE, on the store ``Store.apart`` opens), so "slow" is deterministic."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.slack import app as slack_app
from tests.bot.harness import Bot, Item, make_settings, seed, start_bot
from tests.bot.test_command_acks import Held, command, item_of
from tests.bot.test_slack_bot import buttons
from tests.fake_slack import CHANNEL

ITEMS = [Item(f"i{n}", f"ticket number {n} about something") for n in range(6)]


def listener_started(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set when the next Slack listener starts in the server (``track_listener`` tracks it
    first thing; a click's then runs to its write, and to any wait, in the same step)."""
    started = asyncio.Event()
    track = bot.rt.background.track

    def tracked(task: asyncio.Task) -> None:
        track(task)
        started.set()

    monkeypatch.setattr(bot.rt.background, "track", tracked)
    return started


async def either(click: asyncio.Task, started: asyncio.Event) -> None:
    """Until the click's listener started, or the click was answered."""
    waiting = asyncio.ensure_future(started.wait())
    await asyncio.wait({click, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()


async def test_a_click_during_a_label_change_waits_for_it_off_the_loop_and_is_stored(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    seed(tmp_path / "hitl.db", ITEMS[:4])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        await bot.dispatcher.fill()
        second = bot.posted()[1]
        old, into = buttons(second)[:2]
        held = Held(monkeypatch, bot.store, "_relabel_all")  # inside the write transaction
        merge = asyncio.create_task(command(bot, f"labels merge {old} {into}"))
        try:
            async with asyncio.timeout(30):
                await asyncio.to_thread(held.entered.wait, 30)
            # a click on the label being merged away, while the merge holds the write lock
            started = listener_started(bot, monkeypatch)
            click = asyncio.create_task(bot.action(bot.button_payload(second, "U0ANA", old)))
            await either(click, started)
            assert started.is_set()
            assert not click.done(), f"answered {click.result().status} while the change wrote"
            # the loop is free: a request is answered while the click waits for the change
            health = await bot.http.get("/healthz")
            assert health.status == 200, await health.text()
            assert not click.done()
            assert bot.store.resolution(item_of(bot, second)) is None
        finally:
            held.release()
        response = await click
        assert response.status == 200, await response.text()
        # stored after the merge: the click on the old label counts for its successor
        assert bot.store.resolution(item_of(bot, second))["label"] == into
        status, _, _ = await merge
        assert status == 200
        await bot.rt.background.drain(timeout=30)  # the merge's listener, after its ack
        assert [c["action"] for c in bot.store.label_set_changes()] == ["merge"]
        await bot.settled()


async def test_a_click_refused_after_waiting_names_the_label_change(
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    seed(tmp_path / "hitl.db", ITEMS[:4])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        await bot.dispatcher.fill()
        second = bot.posted()[1]
        old, into = buttons(second)[:2]
        # the wait Slack's 3 s leave, made short (raising=False: the old code had none)
        monkeypatch.setattr(slack_app, "CLICK_WAITS", 0.05, raising=False)
        held = Held(monkeypatch, bot.store, "_relabel_all")
        merge = asyncio.create_task(command(bot, f"labels merge {old} {into}"))
        try:
            async with asyncio.timeout(30):
                await asyncio.to_thread(held.entered.wait, 30)
            with caplog.at_level(logging.ERROR, logger="bot"):
                response = await bot.action(bot.button_payload(second, "U0ANA", into))
        finally:
            held.release()
        assert response.status == 503  # not stored: Slack shows the person the click failed
        [line] = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
        assert "a label change in this server (/hitl labels) holds" in line, line
        assert "another process" not in line
        await merge
        await bot.rt.background.drain(timeout=30)
        assert bot.store.resolution(item_of(bot, second)) is None
        assert bot.store.write_problem is None  # its own lock is no problem of the database


async def test_the_dispatcher_skips_its_rounds_while_a_label_change_writes(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    seed(tmp_path / "hitl.db", ITEMS)
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=3)):
        assert await bot.dispatcher.fill() == 3
        first = bot.posted()[0]
        old, into = buttons(first)[:2]
        # an answer frees a place: the next round has an item to post, and its post to record
        assert (await bot.action(bot.button_payload(first, "U0ANA", into))).status == 200
        await bot.settled()
        held = Held(monkeypatch, bot.store, "_relabel_all")
        merge = asyncio.create_task(command(bot, f"labels merge {old} {into}"))
        try:
            async with asyncio.timeout(30):
                await asyncio.to_thread(held.entered.wait, 30)
            bot.dispatcher.woken.clear()
            # a round now would wait for the lock with the loop held, then fail
            assert await bot.dispatcher.fill() == 0
            assert len(bot.posted()) == 3
        finally:
            held.release()
        await merge
        await bot.rt.background.drain(timeout=30)
        assert bot.dispatcher.woken.is_set()  # the change's end wakes it
        assert await bot.dispatcher.fill() == 1


async def test_an_old_message_says_the_question_went_back_to_the_queue_until_it_is_asked(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_CHANNEL changed between two runs with more questions open than the new channel
    has places: every old message said "now asked in <#new>: answer it there", though most
    waited in the queue."""
    fake_slack.add_channel("C0OLD", "old-labeling")
    seed(tmp_path / "hitl.db", ITEMS[:4])
    old_settings = make_settings(fake_slack, tmp_path, channel="C0OLD", max_open=4)
    async for bot in start_bot(fake_slack, old_settings):
        assert await bot.dispatcher.fill() == 4
    old = fake_slack.messages("C0OLD")
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, max_open=2)):
        assert await bot.dispatcher.fill() == 2
        assert len(asked(bot)) == 2 and all(p["channel"] == CHANNEL for p in bot.store.open_posts())
        for item_id, text in said(bot, old).items():
            if item_id in asked(bot):
                assert text.startswith(f"This question is now asked in <#{CHANNEL}>"), text
            else:  # not asked there: it waits in the queue, and says so
                assert "now asked in" not in text, (item_id, text)
                assert "went back to the queue" in text and f"<#{CHANNEL}>" in text, text
        for message in old:
            drawn = bot.fake.message("C0OLD", message["ts"])
            assert "actions" not in json.dumps(drawn["blocks"])  # no buttons on any
        # an answer frees a place: the next item asked says so on its old message
        [answered, *_] = [m for m in bot.posted() if item_of_message(m) in asked(bot)]
        payload = bot.button_payload(answered, "U0ANA", bot.first_label(answered))
        assert (await bot.action(payload)).status == 200
        await bot.settled()
        waiting = {i for i, text in said(bot, old).items() if "went back to the queue" in text}
        assert await bot.dispatcher.fill() == 1
        [again] = waiting & asked(bot)
        assert said(bot, old)[again].startswith(f"This question is now asked in <#{CHANNEL}>")


def item_of_message(message: dict) -> str:
    return message["metadata"]["event_payload"]["item_id"]


def said(bot: Bot, old: list[dict]) -> dict[str, str]:
    """Each old message's item, and the text it shows now."""
    return {item_of_message(m): bot.fake.message("C0OLD", m["ts"])["text"] for m in old}


def asked(bot: Bot) -> set[str]:
    """The items asked now."""
    return {p["item_id"] for p in bot.store.open_posts()}


async def test_a_click_waits_for_a_second_change_that_starts_as_the_first_ends():
    # review: ``ended`` returned False at once when another admin's change started in the
    # same loop turn as the first ended: the click was refused with most of its 2.5 s left
    from bot.runtime import LabelChange

    gate = LabelChange()
    first = gate.holding()
    first.__enter__()
    waiter = asyncio.create_task(gate.ended(30))
    await asyncio.sleep(0)  # it waits on the first change
    assert not waiter.done()
    first.__exit__(None, None, None)
    second = gate.holding()
    second.__enter__()  # the second starts in the same turn
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiter.done()  # it waits on the second, in the time left
    second.__exit__(None, None, None)
    assert await waiter is True
