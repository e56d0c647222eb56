"""The server's webhook worker beside a receiver that does not answer (README "Webhooks": "a
receiver that does not answer holds up its own deliveries, not other receivers'").

It sent a round at a time and waited for the whole round before it claimed the next, so a
receiver that held its requests held every round for the 10 s timeout: another receiver got
4 webhooks per 10 s (20 took 52.6 s instead of 2.4 s in the outside test). The worker keeps up
to 8 sends under way, at most 4 to one receiver, and gives each slot that frees to the next
delivery due.

The receivers are aiohttp apps on loopback; the one that hangs holds each request until the
test releases it, and the sender's timeout is set far beyond the test, so nothing here waits
for a clock: a wait's timeout only bounds a test that would fail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.api import webhooks
from bot.api.webhooks import CONCURRENCY, PER_RECEIVER, run_deliveries
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot
from tests.bot.test_api import post_json, start_api

LOOPBACK = {"webhook_allow": ("127.0.0.1",)}
GUARD = 60.0  # seconds: only a failing test waits this long


@dataclass
class Sends:
    """What every receiver of a test sees: requests under way, at most, by receiver."""

    under_way: dict[str, int] = field(default_factory=dict)
    most: dict[str, int] = field(default_factory=dict)
    most_at_once: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def begin(self, name: str) -> None:
        self.under_way[name] = self.under_way.get(name, 0) + 1
        self.most[name] = max(self.most.get(name, 0), self.under_way[name])
        self.most_at_once = max(self.most_at_once, sum(self.under_way.values()))
        self.changed.set()

    def end(self, name: str) -> None:
        self.under_way[name] -= 1
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition`` holds (checked whenever a request comes or ends, or the
        store records an outcome)."""

        async def wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), GUARD)


@dataclass
class Receiver:
    """A webhook endpoint; with ``hold``, each request waits until the test releases it."""

    name: str
    sends: Sends
    hold: bool = False
    url: str = ""
    arrived: list[str] = field(default_factory=list)  # the items of the requests, as they came
    ids: list[str] = field(default_factory=list)  # the items told (answered), in that order
    held: list[asyncio.Event] = field(default_factory=list)
    release_all: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.arrived.append(body["id"])
        self.sends.begin(self.name)
        try:
            if self.hold:
                mine = asyncio.Event()
                self.held.append(mine)
                self.sends.changed.set()
                waits = [asyncio.ensure_future(e.wait()) for e in (mine, self.release_all)]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
            self.ids.append(body["id"])
            return web.Response(status=204)
        finally:
            self.sends.end(self.name)


async def serve(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        receiver.url = str(server.make_url("/hook"))
        try:
            yield receiver
        finally:
            receiver.release_all.set()


async def decided(bot: Bot, item_id: str, url: str) -> None:
    """An item sent with ``url`` as its callback_url, then decided by a person."""
    response = await post_json(
        bot, "/api/predict", {"text": f"refund {item_id}", "id": item_id, "callback_url": url}
    )
    assert response.status == 200
    assert (await response.json())["callback"] == "registered"
    result = bot.store.record_answer(
        item_id, "U1", "billing", source="button", dedupe_key=f"k-{item_id}"
    )
    assert result.status == "resolved"


def by_item(store: Store, prefix: str) -> list[dict]:
    return [d for d in store.deliveries() if d["item_id"].startswith(prefix)]


HUNG_ITEMS, HEALTHY_ITEMS = 10, 3 * PER_RECEIVER  # the healthy backlog: three "rounds"


async def test_a_receiver_that_holds_its_requests_does_not_hold_up_another_receivers_webhooks(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # The sender's own timeout beyond the test: a held request ends only when it is released.
    monkeypatch.setattr(webhooks, "TIMEOUT", 3600.0)
    sends = Sends()
    async for hung in serve(Receiver("hung", sends, hold=True)):
        async for healthy in serve(Receiver("healthy", sends)):
            async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
                # The hung receiver's deliveries first: they are the oldest due.
                for n in range(HUNG_ITEMS):
                    await decided(bot, f"H-{n}", hung.url)
                for n in range(HEALTHY_ITEMS):
                    await decided(bot, f"G-{n}", healthy.url)
                watch_outcomes(bot.store, sends, monkeypatch)
                worker = asyncio.create_task(run_deliveries(bot.rt))
                try:
                    await beside_a_hung_receiver(bot.store, sends, hung, healthy)
                finally:
                    worker.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await worker
    assert sends.most["hung"] == PER_RECEIVER and sends.most["healthy"] <= PER_RECEIVER
    assert sends.most_at_once <= CONCURRENCY


def watch_outcomes(store: Store, sends: Sends, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's ``finish_delivery`` (the real one runs) wakes ``sends.until``."""
    recorded = store.finish_delivery

    def finish(*args: Any, **kwargs: Any) -> None:
        recorded(*args, **kwargs)
        sends.changed.set()

    monkeypatch.setattr(store, "finish_delivery", finish)


async def beside_a_hung_receiver(
    store: Store, sends: Sends, hung: Receiver, healthy: Receiver
) -> None:
    def hung_answered() -> bool:  # an outcome stored for a held delivery
        return any(d["last_error"] or d["status"] != "pending" for d in by_item(store, "H-"))

    # Every webhook of the healthy receiver arrives while the hung one holds its first
    # requests (the old worker waited for them to time out before its next round).
    def healthy_stored() -> bool:  # each told, and its outcome stored (after the answer came)
        delivered = all(d["status"] == "delivered" for d in by_item(store, "G-"))
        return len(healthy.ids) == HEALTHY_ITEMS and delivered

    await sends.until(lambda: healthy_stored() or hung_answered())
    assert sorted(healthy.ids) == sorted(f"G-{n}" for n in range(HEALTHY_ITEMS))
    assert not hung_answered()
    assert all(d["status"] == "delivered" for d in by_item(store, "G-"))
    # The hung receiver has its share under way, and no more.
    await sends.until(lambda: len(hung.held) == PER_RECEIVER)
    assert sorted(d["attempts"] for d in by_item(store, "H-")) == (
        [0] * (HUNG_ITEMS - PER_RECEIVER) + [1] * PER_RECEIVER
    )
    # One held request answers: its slot goes to the receiver's next delivery at once, while
    # the other three are still held (not a round later).
    hung.held[0].set()
    await sends.until(lambda: len(hung.held) == PER_RECEIVER + 1)
    assert sends.under_way["hung"] == PER_RECEIVER
    assert len(hung.ids) == 1 and hung.arrived[PER_RECEIVER] == f"H-{PER_RECEIVER}"  # the oldest
    # Released, it gets the rest, each once.
    hung.release_all.set()
    await sends.until(lambda: len(hung.ids) == HUNG_ITEMS)
    assert sorted(hung.ids) == sorted(f"H-{n}" for n in range(HUNG_ITEMS))
    await sends.until(lambda: all(d["status"] == "delivered" for d in by_item(store, "H-")))


NOW, LEASE = "2026-01-02T00:00:00.000", "2026-01-02T00:01:10.000"


def add(store: Store, rows: list[tuple[str, str, str]]) -> None:
    """Pending deliveries (item, url, next_attempt_at) of resolved items."""
    with store._immediate():
        store.db.conn.executemany(
            "INSERT OR IGNORE INTO items (id, text, meta, source, status, created_at,"
            " updated_at) VALUES (?, 't', '{}', 'api', 'resolved', '2026-01-01', '2026-01-01')",
            [(item,) for item in {row[0] for row in rows}],
        )
        store.db.conn.executemany(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, status, created_at)"
            " VALUES (?, ?, ?, 'pending', '2026-01-01')",
            rows,
        )


def at(n: int) -> str:
    return f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}.000"


def test_a_claim_counts_the_sends_under_way_and_skips_their_items(store: Store) -> None:
    """What the worker claims as a slot frees: a receiver's share less its sends under way,
    and nothing for an item whose webhook is being sent (its next one goes after it)."""
    add(
        store,
        [("a", "https://busy.example/hook", at(2 * n)) for n in range(6)]
        + [("b", "https://other.example/hook", at(20))]
        + [("c", "https://full.example/hook", at(3))],
    )
    claimed = store.claim_due_deliveries(
        NOW, LEASE, 8, PER_RECEIVER, busy={"busy.example": 3, "full.example": PER_RECEIVER}
    )
    assert [(c["item_id"], c["receiver"]) for c in claimed] == [
        ("a", "busy.example"),  # one more to busy.example; none to full.example
        ("b", "other.example"),
    ]
    # Item a's webhook under way: its other deliveries wait; b's is leased (not claimed twice).
    assert store.claim_due_deliveries(NOW, LEASE, 8, PER_RECEIVER, busy_items={"a", "c"}) == []
    # Without busy_items (another sender): a's next still waits while a's first is claimed
    # (pending, leased); it goes once that one is delivered.
    rest = store.claim_due_deliveries(NOW, LEASE, 8, PER_RECEIVER)
    assert [c["receiver"] for c in rest] == ["full.example"]
    store.finish_delivery(claimed[0]["id"], "delivered")
    [after] = store.claim_due_deliveries(NOW, LEASE, 8, PER_RECEIVER)
    assert after["item_id"] == "a" and after["id"] > claimed[0]["id"]


def test_a_busy_receivers_backlog_does_not_hide_the_others_from_a_slot(store: Store) -> None:
    # The hung receiver's 500 are the oldest due: a freed slot still goes to the others, read
    # through the receivers' index (the oldest few are all the hung one's).
    add(
        store,
        [(f"h{n}", "https://hung.example/hook", at(n)) for n in range(500)]
        + [(f"o{n}", f"https://o{n % 3}.example/hook", at(600 + n)) for n in range(9)],
    )
    for free, expected in [(1, ["o0"]), (2, ["o1", "o2"]), (5, ["o3", "o4", "o5", "o6", "o7"])]:
        claimed = store.claim_due_deliveries(
            NOW, LEASE, free, PER_RECEIVER, busy={"hung.example": PER_RECEIVER}
        )
        assert [c["item_id"] for c in claimed] == expected
    assert not any(d["attempts"] for d in store.deliveries() if d["item_id"].startswith("h"))
