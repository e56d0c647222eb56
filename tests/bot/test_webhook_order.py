"""An item's webhooks go in the order they were queued, and one X-HITL-Delivery key carries one
body (outside test of the producer API, finding 3; README "Webhooks").

A receiver failed an item's label webhook once (HTTP 500, or no answer in time) and someone
clicked Undo in Slack. The take-back (``"label": null``, ``"status": "posted"``) went at once
under a new key: the claim passed over an older delivery of the item only when it was due,
and the label's was waiting out its backoff. The label delivery's retry went after it, under
its first key, its body read again as it went: the take-back's. So the deliveries went out of
order, the take-back was told twice under two keys (a receiver deduping on X-HITL-Delivery, as
README says to, kept both), and one key carried a label on its first attempt and no label on
its retry. Now a delivery waits while an older one of its item is pending (due, backing off or
under way) and goes once that one is delivered or given up; a retry sends the bytes its first
attempt sent (m048).

Everything runs through the real app on loopback (fake Slack, clicks and Undo signed as Slack
signs them) and a webhook receiver on 127.0.0.1. Time is driven by passing ``now`` to
``deliver_due`` with the runtime's and the store's clocks held still (as test_webhooks does),
or, for the server's own worker, by a hand-moved clock.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.api.webhooks import DELIVERY_HEADER, deliver_due, run_deliveries
from bot.sandbox import FakeSlack
from bot.slack import blocks
from bot.store import Store
from tests import signing
from tests.bot.harness import Bot, has_buttons, item_of
from tests.bot.test_api import T0, start_api
from tests.bot.test_delivery_key import ask
from tests.bot.test_webhooks import BASE, LOOPBACK, Receiver, at, freeze, serve_receiver
from tests.fake_slack import CHANNEL
from tests.query_plans import query_plans

ANA = "U0ANA"
GUARD = 30.0  # seconds: only a failing test waits this long


async def decide(bot: Bot, *item_ids: str) -> None:
    """Ana clicks the first label of each item's question (posted now), as Slack sends it."""
    await bot.dispatcher.fill()
    await bot.settled()
    questions = {item_of(m): m for m in bot.posted() if has_buttons(m)}
    for item_id in item_ids:
        message = questions[item_id]
        payload = bot.button_payload(message, ANA, bot.first_label(message))
        assert (await bot.action(payload)).status == 200
        await bot.settled()
        assert bot.store.resolution(item_id) is not None


async def undo(bot: Bot, item_id: str) -> None:
    """Ana clicks Undo under her label of ``item_id``."""
    label = bot.store.resolution(item_id)["label"]
    payload = signing.block_actions_payload(
        ANA,
        blocks.UNDO_ACTION,
        blocks.encode_value(item_id, label),
        response_url=bot.fake.response_url(CHANNEL),
    )
    payload["actions"][0]["action_ts"] = bot.next_action_ts()
    assert (await bot.action(payload)).status == 200
    await bot.settled()
    assert bot.store.resolution(item_id) is None


@dataclass
class Told:
    key: str
    body: bytes

    @property
    def said(self) -> tuple[str, str | None, str]:
        payload = json.loads(self.body)
        return payload["id"], payload["label"], payload["status"]


def arrivals(receiver: Receiver) -> list[Told]:
    """Every request the receiver got, in order (answered or not)."""
    return [Told(r.headers[DELIVERY_HEADER], r.body) for r in receiver.received]


def one_body_a_key(told: list[Told]) -> None:
    bodies: dict[str, set[bytes]] = {}
    for t in told:
        bodies.setdefault(t.key, set()).add(t.body)
    assert all(len(b) == 1 for b in bodies.values()), {
        key[:8]: [json.loads(b)["status"] for b in b_] for key, b_ in bodies.items()
    }


def taken_back_once(receiver: Receiver, item_id: str) -> None:
    """The take-back reached the receiver once, and a receiver deduping on X-HITL-Delivery (as
    README says to) ends with no label for the item."""
    delivered = [Told(r.headers[DELIVERY_HEADER], r.body) for r in receiver.delivered]
    nulls = [t for t in delivered if t.said[0] == item_id and t.said[1] is None]
    assert [t.said for t in nulls] == [(item_id, None, "posted")]
    seen: dict[str, tuple[str, str | None, str]] = {}
    for t in delivered:
        seen.setdefault(t.key, t.said)
    last = [said for said in seen.values() if said[0] == item_id][-1]
    assert last == (item_id, None, "posted")


def rows(store: Store, item_id: str) -> list[dict[str, Any]]:
    return store.deliveries(item_id)


@pytest.mark.parametrize("first", ["fail", "hang"])
async def test_a_label_webhook_retried_after_an_undo_goes_before_the_take_back_with_its_body(
    fake_slack: FakeSlack, tmp_path: Path, first: str
):
    """The tester's case: the label's first attempt gets a 500 (or no answer in time: the
    receiver may have taken it), Ana clicks Undo, then the retry falls due."""
    async for receiver in serve_receiver([first, "ok"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            freeze(bot)
            await ask(bot, "A", receiver.url)
            await decide(bot, "A")
            failed = await deliver_due(bot.rt, now=at(0), base=BASE, answer_within=0.2)
            assert len(failed.retrying) == 1  # due again at(BASE)
            await undo(bot, "A")
            label, take_back = rows(bot.store, "A")
            assert (label["attempts"], take_back["attempts"]) == (1, 0)

            # the take-back waits while the label's delivery waits out its backoff
            assert (await deliver_due(bot.rt, now=at(1), base=BASE)).attempted == 0
            assert (await deliver_due(bot.rt, now=at(BASE - 1), base=BASE)).attempted == 0
            retried = await deliver_due(bot.rt, now=at(BASE), base=BASE)
            assert retried.delivered == [label["id"]] and retried.attempted == 1
            told = await deliver_due(bot.rt, now=at(BASE), base=BASE)
            assert told.delivered == [take_back["id"]] and told.attempted == 1
            assert (await deliver_due(bot.rt, now=at(86_400), base=BASE)).attempted == 0

    got = arrivals(receiver)
    # in the order queued: the label's two attempts under its key, then the take-back's
    assert [t.key for t in got] == [label["key"], label["key"], take_back["key"]]
    one_body_a_key(got)
    assert got[0].body == got[1].body  # the retry sent the bytes the first attempt sent
    assert got[1].said[1] is not None and got[1].said[2] == "resolved"
    assert got[2].said == ("A", None, "posted")
    taken_back_once(receiver, "A")


async def test_when_the_label_webhook_is_given_up_the_take_back_goes_next(
    fake_slack: FakeSlack, tmp_path: Path
):
    """An older delivery given up (its attempts spent) no longer holds the item's next one."""
    async for receiver in serve_receiver(["fail", "fail", "ok"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            freeze(bot)
            await ask(bot, "A", receiver.url)
            await decide(bot, "A")
            assert len((await deliver_due(bot.rt, now=at(0), base=BASE)).retrying) == 1
            await undo(bot, "A")
            label, take_back = rows(bot.store, "A")

            assert (await deliver_due(bot.rt, now=at(1), base=BASE, max_attempts=2)).attempted == 0
            gave_up = await deliver_due(bot.rt, now=at(BASE), base=BASE, max_attempts=2)
            assert gave_up.failed == [label["id"]]
            # due since the Undo: it goes in the next round, without waiting for anything
            told = await deliver_due(bot.rt, now=at(BASE), base=BASE, max_attempts=2)
            assert told.delivered == [take_back["id"]]
            statuses = [(d["status"], d["attempts"]) for d in rows(bot.store, "A")]
            assert statuses == [("failed", 2), ("delivered", 1)]

    got = arrivals(receiver)
    assert [t.key for t in got] == [label["key"], label["key"], take_back["key"]]
    one_body_a_key(got)
    assert [t.said[1] is None for t in got] == [False, False, True]
    taken_back_once(receiver, "A")


async def test_an_items_waiting_take_back_holds_up_none_of_the_other_items(
    fake_slack: FakeSlack, tmp_path: Path
):
    """While A's take-back waits for A's label webhook, B's and C's (same receiver) go."""
    async for receiver in serve_receiver(["fail", "ok"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            freeze(bot)
            for item_id in "ABC":
                await ask(bot, item_id, receiver.url)
            await decide(bot, "A")
            assert len((await deliver_due(bot.rt, now=at(0), base=BASE)).retrying) == 1
            await undo(bot, "A")
            await decide(bot, "B", "C")
            others = await deliver_due(bot.rt, now=at(1), base=BASE)
            b, c = rows(bot.store, "B")[0], rows(bot.store, "C")[0]
            assert sorted(others.delivered) == sorted([b["id"], c["id"]])
            assert others.attempted == 2  # A's take-back waits
            label, take_back = rows(bot.store, "A")
            assert (take_back["status"], take_back["attempts"]) == ("pending", 0)
            assert (await deliver_due(bot.rt, now=at(BASE), base=BASE)).delivered == [label["id"]]
            assert (await deliver_due(bot.rt, now=at(BASE), base=BASE)).delivered == [
                take_back["id"]
            ]
    got = arrivals(receiver)
    items = [t.said[0] for t in got]
    assert items[0] == "A" and sorted(items[1:3]) == ["B", "C"] and items[3:] == ["A", "A"]
    assert [t.key for t in got if t.said[0] == "A"] == [label["key"]] * 2 + [take_back["key"]]
    one_body_a_key(got)
    taken_back_once(receiver, "A")


# -- the server's worker --------------------------------------------------------------------


@dataclass
class Clock:
    """The runtime's and the store's clock, moved by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


async def arrived(receiver: Receiver, n: int) -> None:
    async with asyncio.timeout(GUARD):
        while len(receiver.received) < n:
            await receiver.arrived.get()


@dataclass
class Outcomes:
    """The outcomes the store records of attempts (the real ``finish_delivery`` runs), as
    (delivery id, status), each time with ``changed`` set."""

    seen: list[tuple[int, str]]
    changed: asyncio.Event

    async def of(self, delivery_id: int, status: str) -> None:
        async with asyncio.timeout(GUARD):
            while (delivery_id, status) not in self.seen:
                self.changed.clear()
                await self.changed.wait()


def watch_outcomes(store: Store, monkeypatch: pytest.MonkeyPatch) -> Outcomes:
    outcomes = Outcomes([], asyncio.Event())
    finish = store.finish_delivery

    def finished(delivery_id: int, status: str, **kwargs: Any) -> None:
        finish(delivery_id, status, **kwargs)
        outcomes.seen.append((delivery_id, status))
        outcomes.changed.set()

    monkeypatch.setattr(store, "finish_delivery", finished)
    return outcomes


async def test_the_servers_worker_sends_an_items_webhooks_in_order_with_one_body_a_key(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    clock = Clock()
    async for receiver in serve_receiver(["fail", "ok"]):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            bot.rt.clock = clock
            bot.store.now = lambda: clock.now.isoformat(timespec="milliseconds")
            await ask(bot, "A", receiver.url)
            await ask(bot, "B", receiver.url)
            outcomes = watch_outcomes(bot.store, monkeypatch)
            worker = asyncio.create_task(run_deliveries(bot.rt, base=BASE, tick=0.05))
            try:
                await decide(bot, "A")
                await arrived(receiver, 1)  # the label's first attempt: 500
                [label] = rows(bot.store, "A")
                await outcomes.of(label["id"], "pending")
                await undo(bot, "A")
                await decide(bot, "B")
                await arrived(receiver, 2)  # B's goes; A's take-back waits
                [b] = rows(bot.store, "B")
                await outcomes.of(b["id"], "delivered")
                _, take_back = rows(bot.store, "A")
                assert (take_back["status"], take_back["attempts"]) == ("pending", 0)
                assert bot.store.next_delivery_at() == (T0 + timedelta(seconds=BASE)).isoformat(
                    timespec="milliseconds"
                )  # the worker's next look: the label's retry, not the take-back waiting
                clock.now = T0 + timedelta(seconds=BASE)
                await arrived(receiver, 4)  # the label's retry, then the take-back
                await outcomes.of(take_back["id"], "delivered")
            finally:
                worker.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await worker
            assert [d["status"] for d in rows(bot.store, "A")] == ["delivered", "delivered"]
    got = arrivals(receiver)
    assert [t.key for t in got] == [label["key"], b["key"], label["key"], take_back["key"]]
    one_body_a_key(got)
    assert got[3].said == ("A", None, "posted")
    taken_back_once(receiver, "A")


# -- the store's reads ----------------------------------------------------------------------

NOW, LEASE = "2026-01-01T00:00:05.000+00:00", "2026-01-01T00:01:15.000+00:00"
URL = "https://hooks.example.com/h"


def waiting_behind(store: Store, others: int = 0) -> None:
    """Item A: its label's delivery attempted once, due again at 00:00:10; its take-back queued
    at 00:00:01 (due since). ``others`` items resolved, one delivery each, due at 00:00:20."""
    with store._immediate():
        store.db.conn.executemany(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
            " VALUES (?, 't', '{}', 'api', 'resolved', '2026', '2026')",
            [("A",), *[(f"o{n}",) for n in range(others)]],
        )
        store.db.conn.executemany(
            "INSERT INTO deliveries (item_id, url, attempts, next_attempt_at, created_at,"
            " receiver, key) VALUES (?, ?, ?, ?, '2026', 'hooks.example.com', ?)",
            [
                ("A", URL, 1, "2026-01-01T00:00:10.000+00:00", "ka"),
                ("A", URL, 0, "2026-01-01T00:00:01.000+00:00", "kb"),
                *[
                    (f"o{n}", URL, 0, "2026-01-01T00:00:20.000+00:00", f"k{n}")
                    for n in range(others)
                ],
            ],
        )


def test_a_delivery_waiting_behind_its_items_backoff_is_not_due_nor_claimed(store: Store):
    """The idle worker neither claims it (nor takes the write lock to look) nor wakes for it:
    its next look is when the older delivery is due."""
    waiting_behind(store)
    begins: list[str] = []
    store.db.conn.set_trace_callback(lambda sql: begins.append(sql) if "BEGIN" in sql else None)
    try:
        assert store.claim_due_deliveries(NOW, LEASE, 8, 4) == []
        assert store.claim_due_deliveries(NOW, LEASE, 8) == []
    finally:
        store.db.conn.set_trace_callback(None)
    assert begins == []
    assert store.next_delivery_at() == "2026-01-01T00:00:10.000+00:00"
    later = "2026-01-01T00:00:10.000+00:00"
    [first] = store.claim_due_deliveries(later, LEASE, 8, 4)
    assert first["key"] == "ka" and first["body"] is None  # attempted before m048: none kept
    store.finish_delivery(first["id"], "delivered")
    [second] = store.claim_due_deliveries(later, LEASE, 8, 4)
    assert second["key"] == "kb"


def test_the_claim_and_the_next_look_read_indexes(store: Store):
    waiting_behind(store, others=30)
    plans = query_plans(
        store,
        lambda: (
            store.claim_due_deliveries("2026-01-01T00:00:30.000+00:00", LEASE, 8, 4),
            store.next_delivery_at(),
        ),
    )
    reads = [(sql, plan) for sql, plan in plans if "FROM deliveries" in sql]
    assert any("NOT EXISTS" in sql for sql, _ in reads)
    for sql, plan in reads:
        steps = " / ".join(plan)
        # the due range (or an item's rows) by index, each row's item probed by its index
        assert "SCAN deliveries" not in steps and "SCAN older" not in steps, (sql, plan)
        if "older" in sql:
            assert "SEARCH older USING INDEX deliveries_item" in steps, (sql, plan)
    [(_, next_look)] = [
        (sql, plan) for sql, plan in reads if "ORDER BY next_attempt_at LIMIT 1" in sql
    ]
    assert "USING INDEX deliveries_due" in " / ".join(next_look)
    assert "TEMP B-TREE" not in " / ".join(next_look)  # read in order: no sort of the backlog
