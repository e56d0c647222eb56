"""One item's backlog of deliveries does not hold back the other items of its receiver
(review4, finding 1).

A claim takes one delivery of an item (its oldest due), but it read a fixed number of rows
before keeping one of each item: an item with 40 deliveries due to a receiver filled those
rows, the claim took its oldest and, with that send under way, nothing for that receiver, so
the receiver's 10 other items waited until the 40 had gone one at a time, its other 3 slots
idle. Each read now gives one row of an item, its oldest due.

The sends are driven by hand (claim, finish the oldest under way, claim again): no clock.
"""

from __future__ import annotations

from bot.api.webhooks import CONCURRENCY, PER_RECEIVER
from bot.store import Store

NOW, LEASE = "2999-01-01T00:00:00.000+00:00", "2999-01-01T00:01:10.000+00:00"
URL = "https://hooks.example.com/h"
RECEIVER = "hooks.example.com"
OTHERS = [f"y{n}" for n in range(10)]


def at(n: int) -> str:
    return f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}.000+00:00"


def backlog(store: Store) -> None:
    """Item x: 40 deliveries due (its receiver was down a while), the oldest; then y0..y9, one
    each, all to the same receiver."""
    with store._immediate():
        store.db.conn.executemany(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
            " VALUES (?, 't', '{}', 'api', 'resolved', '2026', '2026')",
            [(item,) for item in ["x", *OTHERS]],
        )
        rows = [("x", at(n)) for n in range(40)]
        rows += [(item, at(100 + n)) for n, item in enumerate(OTHERS)]
        store.db.conn.executemany(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, receiver)"
            " VALUES (?, ?, ?, '2026', ?)",
            [(item, URL, when, RECEIVER) for item, when in rows],
        )


def test_the_receivers_free_slots_go_to_other_items_than_the_one_with_a_backlog(store: Store):
    backlog(store)
    queued = {item: [d["id"] for d in store.deliveries(item)] for item in ["x", *OTHERS]}
    in_flight: list[dict] = []  # sends under way, oldest first
    claimed: list[dict] = []
    while True:
        got = store.claim_due_deliveries(
            NOW,
            LEASE,
            CONCURRENCY - len(in_flight),
            PER_RECEIVER,
            busy={RECEIVER: len(in_flight)} if in_flight else {},
            busy_items={d["item_id"] for d in in_flight},
        )
        in_flight += got
        claimed += got
        items = [d["item_id"] for d in in_flight]
        assert len(items) == len(set(items)), items  # one send of an item at once
        waiting = {
            item for item in queued if any(d["status"] == "pending" for d in store.deliveries(item))
        }
        # the receiver's 4 slots are full while 4 items have deliveries to go
        assert len(in_flight) == min(PER_RECEIVER, len(waiting)), (items, sorted(waiting))
        if not in_flight:
            break
        store.finish_delivery(in_flight.pop(0)["id"], "delivered")
    # every delivery went once, each item's in the order queued
    for item, ids in queued.items():
        assert [d["id"] for d in claimed if d["item_id"] == item] == ids
    # the others went alongside x's backlog, not after it: all before x's 5th delivery
    order = [d["item_id"] for d in claimed]
    fifth_of_x = [n for n, item in enumerate(order) if item == "x"][4]
    assert all(order.index(item) < fifth_of_x for item in OTHERS), order


def test_a_claim_without_a_cap_per_receiver_passes_over_a_busy_items_backlog(store: Store):
    """Without ``per_receiver``: x's send under way, the claim takes the other items'."""
    backlog(store)
    first = store.claim_due_deliveries(NOW, LEASE, 1)
    assert [d["item_id"] for d in first] == ["x"]
    got = store.claim_due_deliveries(NOW, LEASE, 4, busy_items={"x"})
    assert [d["item_id"] for d in got] == OTHERS[:4]
