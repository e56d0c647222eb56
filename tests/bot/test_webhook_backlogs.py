"""Webhook backlogs (review of cf9c344, findings 1, 2 and 6).

1. Deliveries the sender ends without sending (refused: the receiver is no longer allowed by
   HITL_WEBHOOK_ALLOW; cancelled: nothing to tell) were recorded one transaction each and the
   worker claimed again without awaiting: 10,000 refused froze the event loop 4.8 s (no click
   answered). The worker yields to the loop after each pass (at most CONCURRENCY claimed),
   and records a pass's refusals and cancellations in one transaction.
2. An asked item a newer model is sure of, whose question is taken back (HITL_QUESTION_TTL,
   the question channels changed, its message gone), became ``auto`` and its producer heard
   nothing.
3. A threshold pass queues one notice (``auto``) per item it moves; every label's webhook
   queued after them waited behind all of them (100k: ~24 min at a receiver answering in
   50 ms). People's labels are claimed first; an item's deliveries keep their order.

Nothing here waits for a clock: the worker's turns are counted on the event loop itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.api.routes import ApiItem
from bot.api.webhooks import CONCURRENCY, PER_RECEIVER, run_deliveries
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.test_api import start_api

GUARD = 60.0  # seconds: only a failing test waits this long
URL = "https://hooks.example.com/h"
REFUSED = "https://10.1.2.3/hook"  # a private address, not in HITL_WEBHOOK_ALLOW


# -- 1. a backlog the sender ends without sending ------------------------------------------


def backlog(store: Store, refused: int, cancelled: int) -> None:
    """Pending deliveries due long ago: ``refused`` of resolved items to a private address,
    ``cancelled`` of items waiting for people that were never told anything (nothing to
    tell), interleaved."""
    past = "2000-01-01T00:00:00.000+00:00"
    rows = [(f"R-{n}", REFUSED, "resolved") for n in range(refused)]
    rows += [(f"C-{n}", URL, "queued") for n in range(cancelled)]
    rows.sort(key=lambda row: int(row[0].split("-")[1]))
    with store._immediate():
        store.db.conn.executemany(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at,"
            " callback_url) VALUES (?, 't', '{}', 'api', ?, ?, ?, ?)",
            [(item, status, past, past, url) for item, url, status in rows],
        )
        store.db.conn.executemany(
            "INSERT INTO labels (item_id, label, votes, agreement, resolved_at)"
            " VALUES (?, 'billing', 1, 1.0, ?)",
            [(item, past) for item, _, status in rows if status == "resolved"],
        )
        store.db.conn.executemany(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, receiver)"
            " VALUES (?, ?, ?, ?, ?)",
            [(item, url, past, past, url.split("/")[2]) for item, url, _ in rows],
        )


def ended(store: Store) -> int:
    return store.db.execute("SELECT count(*) FROM deliveries WHERE status != 'pending'").fetchone()[
        0
    ]


async def test_the_worker_yields_to_the_event_loop_between_small_batches_of_refusals(
    fake_slack: FakeSlack, tmp_path: Path
):
    refused, cancelled = 240, 160
    async for bot in start_api(fake_slack, tmp_path):  # HITL_WEBHOOK_ALLOW empty
        backlog(bot.store, refused, cancelled)
        await worked_through_in_small_batches(bot.rt, bot.store, refused + cancelled)


async def worked_through_in_small_batches(rt: Any, store: Store, total: int) -> None:
    begins: list[str] = []
    store.db.conn.set_trace_callback(
        lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None
    )
    # What the loop's other work (a click, /healthz) sees each time it gets a turn: how many
    # deliveries have ended by then.
    seen = [ended(store)]

    async def other_work() -> None:
        while True:
            seen.append(ended(store))
            if seen[-1] >= total:
                return
            await asyncio.sleep(0)  # one turn of the loop

    worker = asyncio.create_task(run_deliveries(rt))
    try:
        await asyncio.wait_for(other_work(), GUARD)
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
        store.db.conn.set_trace_callback(None)
    steps = [after - before for before, after in zip(seen, seen[1:], strict=False)]
    # The old worker recorded all of them before the loop's next turn.
    assert max(steps) <= CONCURRENCY, steps
    passes = len([s for s in steps if s])  # at most PER_RECEIVER each to one receiver
    assert passes >= total // CONCURRENCY
    # A pass's outcomes in one transaction (and its claim in one): not one each.
    assert len(begins) <= 2 * (passes + 1), (len(begins), passes)
    rows = store.deliveries()
    assert {d["status"] for d in rows if d["item_id"].startswith("R-")} == {"failed"}
    assert all(
        d["last_error"].startswith("refused: 10.1.2.3") and "HITL_WEBHOOK_ALLOW" in d["last_error"]
        for d in rows
        if d["item_id"].startswith("R-")
    )
    assert {(d["status"], d["last_error"]) for d in rows if d["item_id"].startswith("C-")} == {
        ("cancelled", "the item was reopened before delivery")
    }


# -- 2. an asked item left to the model when its question is taken back ----------------------


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)

    def __call__(self) -> str:
        return self.at.isoformat(timespec="milliseconds")


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[tuple[Store, Clock]]:
    clock = Clock()
    with Store.open(tmp_path / "hitl.db", clock) as store:
        yield store, clock


def scored(item: str, top: float, version: int) -> tuple[Any, ...]:
    ranked = [("billing", top), ("bug", round(1 - top, 2))]
    return (item, version, "billing", top, ranked, 1 - (ranked[0][1] - ranked[1][1]))


def asked_then_sure(store: Store, clock: Clock, items: dict[str, str | None]) -> None:
    """``items`` (id: callback_url) sent, scored unsure, asked in C0OLD, then a new model is
    sure of each (an asked item stays asked)."""
    store.add_api_items(
        [ApiItem(id=i, text=f"text {i}", meta={}, callback_url=u) for i, u in items.items()]
    )
    store.set_predictions([scored(i, 0.6, 1) for i in items], 0.9, "margin")
    for n, item in enumerate(items):
        store.record_post(item, "C0OLD", f"1700000000.{n:06d}", "uncertain", 1, "billing", 0.6)
    clock.at += timedelta(minutes=5)
    store.set_predictions([scored(i, 0.95, 2) for i in items], 0.9, "margin")
    assert {store.get_item(i)["status"] for i in items} == {"posted"}
    assert store.deliveries() == []


def told(store: Store, item: str) -> list[dict[str, Any] | None]:
    return [store.webhook_payload(item) for _ in store.deliveries(item)]


@pytest.mark.parametrize("how", ["expired", "channel changed", "message gone"])
def test_an_asked_item_left_to_the_model_when_its_question_is_taken_back_tells_its_producer(
    clocked: tuple[Store, Clock], how: str
):
    store, clock = clocked
    asked_then_sure(store, clock, {"A": URL, "N": None})
    clock.at += timedelta(hours=2)
    if how == "expired":  # nobody answered within HITL_QUESTION_TTL (1 h)
        assert len(store.expire_posts(1.0, 100, 0.9)) == 2
    elif how == "channel changed":
        assert len(store.requeue_posts_outside(["C0NEW"], 0.9)) == 2
    else:
        store.take_back_gone([p["id"] for p in store.open_posts()], 0.9)
    assert {store.get_item(i)["status"] for i in ("A", "N")} == {"auto"}
    # One webhook, for the item with a callback_url: left to the model, no label.
    assert [d["item_id"] for d in store.deliveries()] == ["A"]
    [payload] = told(store, "A")
    assert payload is not None
    assert (payload["label"], payload["status"], payload["model_label"]) == (
        None,
        "auto",
        "billing",
    )


def test_an_asked_item_taken_back_to_wait_for_people_queues_no_webhook(
    clocked: tuple[Store, Clock],
):
    store, clock = clocked
    asked_then_sure(store, clock, {"A": URL})
    store.record_answer("A", "U1", None, source="button", dedupe_key="skip-1")  # one Skip
    clock.at += timedelta(hours=2)
    store.expire_posts(1.0, 100, 0.9)  # without a threshold's say (answered): waits again
    assert store.get_item("A")["status"] in ("queued", "posted")
    assert store.deliveries() == []
    store.record_post("A", "C0OLD", "1700000001.000000", "uncertain", 2, "billing", 0.95)
    clock.at += timedelta(hours=2)
    store.requeue_posts_outside(["C0NEW"])  # no threshold: waits for people
    assert store.get_item("A")["status"] == "queued"
    assert store.deliveries() == []


# -- 3. people's labels before the notices of a threshold pass -------------------------------


NOW, LEASE = "2999-01-01T00:00:00.000+00:00", "2999-01-01T00:01:10.000+00:00"


def claim(store: Store, limit: int, busy_items: set[str] | None = None) -> list[str]:
    return [
        d["item_id"]
        for d in store.claim_due_deliveries(
            NOW, LEASE, limit, PER_RECEIVER, busy_items=busy_items or set()
        )
    ]


def delivered(store: Store, items: list[str]) -> None:
    for d in store.deliveries():
        if d["item_id"] in items and d["status"] == "pending" and d["attempts"]:
            store.finish_delivery(d["id"], "delivered")


def test_a_persons_label_is_sent_before_the_notices_queued_ahead_of_it(
    clocked: tuple[Store, Clock],
):
    store, clock = clocked
    waiting = [f"A-{n}" for n in range(20)]
    store.add_api_items(
        [ApiItem(id=i, text=f"t {i}", meta={}, callback_url=URL) for i in [*waiting, "L"]]
    )
    store.set_predictions([scored(i, 0.6, 1) for i in [*waiting, "L"]], 0.9, "margin")
    clock.at += timedelta(minutes=1)
    # A threshold pass leaves the 20 to the model: 20 notices, all to the same receiver.
    store.set_predictions([scored(i, 0.95, 2) for i in waiting], 0.9, "margin")
    assert len(store.deliveries()) == 20
    clock.at += timedelta(minutes=1)
    # Then a person decides L, and A-5 (the model's item: a label given after its notice).
    assert (
        store.record_answer("L", "U1", "bug", source="button", dedupe_key="k-L").status
        == "resolved"
    )
    assert (
        store.record_answer("A-5", "U1", "bug", source="button", dedupe_key="k-A5").status
        == "resolved"
    )
    ids = {d["item_id"]: d["id"] for d in store.deliveries() if d["item_id"] in ("L",)}
    assert ids["L"] > max(d["id"] for d in store.deliveries("A-0"))  # L's was queued after
    # A-5's notice, still unsent, tells its label when it goes (one delivery, not a second
    # telling the same): it is a label's now, in its place (brief "hooks", defect 3).
    [a5] = store.deliveries("A-5")
    assert a5["notice"] == 0
    # The labels first (A-5's, queued earlier, then L's), then the oldest notices,
    # PER_RECEIVER in all.
    first = store.claim_due_deliveries(NOW, LEASE, CONCURRENCY, PER_RECEIVER)
    assert [d["item_id"] for d in first] == ["A-5", "L", "A-0", "A-1"]
    assert first[0]["id"] == a5["id"]
    payloads = [store.webhook_payload("A-5")]
    assert payloads[0] is not None and payloads[0]["label"] == "bug"
    delivered(store, ["A-5", "L", "A-0", "A-1"])
    # Then the rest of the notices; nothing more of A-5's.
    assert claim(store, CONCURRENCY) == ["A-2", "A-3", "A-4", "A-6"]


def test_the_claim_reads_each_class_of_deliveries_from_an_index(store: Store):
    """Labels' deliveries and notices are found by index range, whatever the backlog of the
    other class: no scan of deliveries, no sort of the backlog."""
    with store._immediate():
        store.db.conn.executemany(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
            " VALUES (?, 't', '{}', 'api', 'auto', '2026', '2026')",
            [(f"i{n}",) for n in range(400)],
        )
        store.db.conn.executemany(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, receiver,"
            " notice) VALUES (?, ?, '2026-01-01', '2026', ?, ?)",
            [
                (f"i{n}", URL, "hooks.example.com" if n < 380 else f"h{n}.example", n % 2)
                for n in range(400)
            ],
        )
    seen: list[str] = []
    store.db.conn.set_trace_callback(
        lambda sql: seen.append(sql) if "FROM deliveries" in sql and "SELECT" in sql[:30] else None
    )
    for busy in (
        {"hooks.example.com": 4},
        {"hooks.example.com": 4, **{f"h{n}.example": 4 for n in range(380, 400, 2)}},
    ):
        store.claim_due_deliveries(NOW, LEASE, CONCURRENCY, PER_RECEIVER, busy=busy)
    store.db.conn.set_trace_callback(None)
    claims = [sql for sql in dict.fromkeys(seen) if "notice = " in sql]
    assert any("notice = 0" in sql for sql in claims) and any("notice = 1" in sql for sql in claims)
    for sql in claims:
        plan = " / ".join(row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "SCAN deliveries" not in plan, (sql, plan)
        # a class's range, or (an item's older notice) the item's few deliveries
        assert any(
            f"INDEX {name} " in plan
            for name in (
                "deliveries_notice_due",
                "deliveries_receiver_notice_due",
                "deliveries_item",
            )
        ), plan


@pytest.mark.parametrize("notices", [(1, 0, 0), (0, 1, 0)])
def test_a_label_and_a_notice_of_one_item_are_never_claimed_together(
    store: Store, notices: tuple[int, ...]
):
    """An item's notice and its label's delivery go one after the other, in the order they
    were queued: the notice first when it is the older (it tells the item as it is when it
    goes), and never in the same claim (they would be sent at once)."""
    with store._immediate():
        store.db.execute(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
            " VALUES ('X', 't', '{}', 'api', 'resolved', '2026', '2026')"
        )
        for notice in notices:
            store.db.execute(
                "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, receiver,"
                " notice) VALUES ('X', ?, '2026-01-01', '2026', 'hooks.example.com', ?)",
                [URL, notice],
            )
    ids = [d["id"] for d in store.deliveries("X")]
    claims = []
    while claimed := store.claim_due_deliveries(NOW, LEASE, 8, PER_RECEIVER):
        claims.append([d["id"] for d in claimed])
        for d in claimed:
            store.finish_delivery(d["id"], "delivered")
    # the notice, then the labels; or the label, the notice, the label: one a claim, as any
    # two of an item (README: "one at a time for an item", in the order they were queued)
    assert claims == [[ids[0]], [ids[1]], [ids[2]]]
