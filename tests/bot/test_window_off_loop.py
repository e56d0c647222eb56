"""The labeling window's next item, and a gold turn's page, are read in a worker thread on a
connection of their own: under HITL_VOTES > 1 the items a person answered wait for the others
first in line, and the lookup steps past each (50-90 ms at 10,000, 35-47 ms for a gold turn,
``benchmarks/window_scale.py``). The event loop's connection only looks the item found up again
by its key; an item another window was shown, or one decided, meanwhile is read again. The
loop's connection is traced by SQLite itself; the reads are held in their thread by a probe
that passes through to the store, through signed requests to the real server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.store import Store
from tests import signing
from tests.bot.harness import Bot, one_posted, open_window
from tests.bot.harness import click_in_window as click
from tests.bot.harness import window_item as shown
from tests.bot.harness import window_labels as labels_shown
from tests.bot.test_window_gold import label_in_window
from tests.bot.test_window_gold import started as with_gold
from tests.fake_slack import CHANNEL

ITEMS = tuple(f"i{n}" for n in range(1, 9))


@contextmanager
def on_the_loop(bot: Bot) -> Iterator[list[str]]:
    """The statements the event loop's connection runs inside."""
    seen: list[str] = []
    bot.store.db.conn.set_trace_callback(seen.append)
    try:
        yield seen
        bot.store.db.execute("SELECT 1").fetchone()  # the trace works on this connection
    finally:
        bot.store.db.conn.set_trace_callback(None)
    assert seen


def walks(statements: list[str]) -> list[str]:
    """The next-item reads that walk an index past the items the person answered: a window's
    lookup, or a page of gold, not pinned to one item's key."""
    reads = [
        sql
        for sql in statements
        if "NOT EXISTS (SELECT 1 FROM answers a WHERE a.item_id =" in sql
        and ("ORDER BY p.id LIMIT 1" in sql or "ORDER BY priority DESC, rowid LIMIT" in sql)
    ]
    return [sql for sql in reads if not any(f"{k}id = '" in sql for k in (" i.", "items.", " "))]


async def test_the_windows_next_item_is_read_off_the_event_loops_connection(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_VOTES=3: Ana's answers wait for two more people, first in line. Her window's
    drawings (opened, then after each click) look the item up in a worker thread; the
    loop's connection only checks it by its key (old code: the lookup ran there)."""
    async for bot in one_posted(fake_slack, tmp_path, ITEMS, votes=3):
        first = await label_in_window(bot, "U0ANA", 3)  # i1 (posted), then the queue
        with on_the_loop(bot) as statements:
            window = await open_window(bot, "U0ANA")
            item = shown(bot, window)
            await click(bot, "U0ANA", window, labels_shown(bot, window)[0])
        assert item not in (None, *(i for i, _ in first))
        assert shown(bot, window) not in (None, item, *(i for i, _ in first))
        assert walks(statements) == [], walks(statements)[0]
        assert any(f"items.id = '{item}'" in sql for sql in statements)  # checked by key


async def test_a_gold_turns_pages_are_read_off_the_event_loops_connection(
    fake_slack: FakeSlack, tmp_path: Path
):
    """At HITL_GOLD_RATE=0.5 every second item is gold; Ana answered some: the next gold
    turn's page is read past them in the worker thread (old code: on the loop)."""
    async for bot in with_gold(fake_slack, tmp_path, gold_rate=0.5, max_open=0):
        seen = await label_in_window(bot, "U0ANA", 4)
        assert [item.startswith("g") for item, _ in seen] == [False, True, False, True]
        window = await open_window(bot, "U0ANA")
        with on_the_loop(bot) as statements:
            await click(bot, "U0ANA", window, labels_shown(bot, window)[0])
        gold = shown(bot, window)
        assert gold is not None and gold.startswith("g") and gold not in dict(seen)
        assert walks(statements) == [], walks(statements)[0]
        assert any("status = 'gold'" in sql and f"id = '{gold}'" in sql for sql in statements)


class Gate:
    """Holds ``user``'s first ``Store`` read ``method`` (``next_in_channels``, or ``gold_page``
    for a window's gold) in its worker thread, once it has read, until ``go``; a read on the
    event loop's thread is never held (it would stop the loop)."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, user: str, method: str = "next_in_channels"
    ) -> None:
        self.loop_thread = threading.get_ident()
        self.read, self.go = threading.Event(), threading.Event()
        self.found: list[object] = []
        self.threads: list[int] = []
        real = getattr(Store, method)

        def held(store: Store, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            found = real(store, *args, **kwargs)
            if kwargs.get("unanswered_by", args[0]) != user:
                return found
            self.threads.append(threading.get_ident())
            if not self.read.is_set() and not self.on_the_loop():
                self.found.append(found)
                self.read.set()
                assert self.go.wait(10)
            return found

        monkeypatch.setattr(Store, method, held)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.go.set()  # a test that failed before letting the read go does not hold it

    def on_the_loop(self) -> bool:
        return threading.get_ident() == self.loop_thread

    async def reached(self) -> bool:
        """Whether the read got to the gate (in a worker thread) within a generous bound."""
        return await asyncio.to_thread(self.read.wait, 5)


async def click_unsettled(bot: Bot, user: str, view_id: str, label: str) -> None:
    """``click_in_window`` without waiting for the work after the ack (``Bot.settled`` would
    wait for Ana's window too, held at the gate)."""
    view = bot.fake.views[view_id]
    [button] = [
        e
        for b in view["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button" and f'"l":"{label}"' in e.get("value", "")
    ]
    payload = signing.block_actions_payload(user, button["action_id"], button["value"], view=view)
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    assert (await bot.action(payload)).status == 200


async def ana_opens(bot: Bot) -> asyncio.Task:
    """Ana runs `/hitl label`; the task of its ack."""
    trigger = f"1.{bot.next_action_ts()}"
    return asyncio.create_task(
        bot.command("label", "U0ANA", channel_id=CHANNEL, trigger_id=trigger)
    )


async def test_an_item_another_window_was_shown_during_the_read_is_read_again(
    fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """HITL_VOTES=1. Ana's read finds the open question; before her window is drawn, Raj's
    window is shown it (and holds it). Ana's is shown another item, not the one Raj holds."""
    async for bot in one_posted(fake_slack, tmp_path, ITEMS):
        [posted] = [m["metadata"]["event_payload"]["item_id"] for m in bot.posted()]
        with Gate(monkeypatch, "U0ANA") as gate:
            acked = await ana_opens(bot)
            assert await gate.reached(), "Ana's next item was not read in a worker thread"
            raj = await open_window(bot, "U0RAJ")  # views.open #1: Ana's waits at the gate
            gate.go.set()
            assert (await acked).status == 200
            ana = (await bot.fake.next_call("views.open")).reply["view"]["id"]
        assert gate.found == [shown(bot, raj)] == [posted]  # the open question, for both
        assert shown(bot, ana) not in (None, posted)
        assert gate.loop_thread not in gate.threads


async def test_an_item_decided_during_the_read_is_read_again(
    fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """Ana's read finds the open question; Raj decides it in the channel before her window is
    drawn: her window shows the next item, not one already decided."""
    async for bot in one_posted(fake_slack, tmp_path, ITEMS):
        [message] = bot.posted()
        posted = message["metadata"]["event_payload"]["item_id"]
        with Gate(monkeypatch, "U0ANA") as gate:
            acked = await ana_opens(bot)
            assert await gate.reached(), "Ana's next item was not read in a worker thread"
            assert (await bot.action(bot.button_payload(message, "U0RAJ", "bug"))).status == 200
            assert bot.store.resolution(posted) is not None
            gate.go.set()
            assert (await acked).status == 200
            ana = (await bot.fake.next_call("views.open")).reply["view"]["id"]
        assert gate.found == [posted]
        assert shown(bot, ana) not in (None, posted)
        await bot.settled()


async def test_a_gold_question_decided_during_the_read_is_not_shown(
    fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """Every item a gold turn (HITL_GOLD_RATE=1). Ana's read finds the first gold question;
    Raj is shown it and decides it (HITL_VOTES=1) before her window is drawn: Ana's window
    does not show a question already decided."""
    async for bot in with_gold(fake_slack, tmp_path, gold_rate=1.0, max_open=0):
        with Gate(monkeypatch, "U0ANA", "gold_page") as gate:
            acked = await ana_opens(bot)
            assert await gate.reached(), "Ana's gold was not read in a worker thread"
            raj = await open_window(bot, "U0RAJ")
            gold = shown(bot, raj)
            await click_unsettled(bot, "U0RAJ", raj, labels_shown(bot, raj)[0])
            assert bot.store.resolution(gold) is not None
            gate.go.set()
            assert (await acked).status == 200
            ana = (await bot.fake.next_call("views.open")).reply["view"]["id"]
        [(page, _)] = gate.found
        assert [g["id"] for g in page] == [gold]
        assert shown(bot, ana) not in (None, gold)
