"""claim_due_deliveries(per_receiver=...): every receiver with due deliveries gets its share of a
round, whatever another receiver's backlog (it used to choose among the oldest limit*20 due
rows only, so 1,000 due to one receiver, down or hanging, left everyone else's waiting)."""

from __future__ import annotations

import random
from urllib.parse import urlsplit

from bot.store import Store

NOW, LEASE = "2026-01-02T00:00:00.000", "2026-01-02T00:01:10.000"


def add_deliveries(store: Store, rows: list[tuple[str, str, str]]) -> None:
    """Pending deliveries (url, next_attempt_at, status), each of a resolved item of its own
    (a claim takes one delivery of an item at most: README "one at a time for an item")."""
    with store._immediate():
        first = store.db.execute("SELECT count(*) FROM items").fetchone()[0]
        ids = [f"i{first + n}" for n in range(len(rows))]
        store.db.conn.executemany(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
            " VALUES (?, 't', '{}', 'api', 'resolved', '2026-01-01', '2026-01-01')",
            [(i,) for i in ids],
        )
        store.db.conn.executemany(
            "INSERT INTO deliveries (item_id, url, next_attempt_at, status, created_at)"
            " VALUES (?, ?, ?, ?, '2026-01-01')",
            [(i, *row) for i, row in zip(ids, rows, strict=True)],
        )


def at(n: int) -> str:
    hours, minutes, seconds = n // 3_600_000, n // 60_000 % 60, n // 1000 % 60
    return f"2026-01-01T{hours:02d}:{minutes:02d}:{seconds:02d}.{n % 1000:03d}"


def test_a_receivers_backlog_does_not_hold_back_the_others(store: Store) -> None:
    slow = [("https://slow.example/hook", at(n), "pending") for n in range(1000)]
    per_item = [(f"https://busy.example/items/{n}?x=1", at(n), "pending") for n in range(1000)]
    others = [
        ("https://fast.example/hook", at(2000), "pending"),
        ("https://other.example:8443/cb", at(2001), "pending"),
    ]
    add_deliveries(store, slow + per_item + others)
    expected = expected_claim(store, 50, 4)
    claimed = store.claim_due_deliveries(NOW, LEASE, 50, 4)
    hosts = [urlsplit(c["url"]).netloc for c in claimed]
    assert {h: hosts.count(h) for h in set(hosts)} == {
        "slow.example": 4,
        "busy.example": 4,
        "fast.example": 1,
        "other.example:8443": 1,
    }
    assert [c["id"] for c in claimed] == expected  # oldest first
    assert all(c["attempts"] == 1 for c in claimed)
    leased = {d["id"] for d in store.deliveries() if d["next_attempt_at"] == LEASE}
    assert leased == {c["id"] for c in claimed}
    # The next round: the backlogs' next oldest, nothing claimed twice.
    again = store.claim_due_deliveries(NOW, LEASE, 50, 4)
    assert [urlsplit(c["url"]).netloc for c in again] == ["slow.example", "busy.example"] * 4
    assert not {c["id"] for c in again} & leased


def expected_claim(store: Store, limit: int, per_receiver: int) -> list[int]:
    """What a round takes: the due deliveries oldest first, at most per_receiver to one host
    and port, at most limit."""
    due = sorted(
        (d["next_attempt_at"], d["id"], d["url"])
        for d in store.deliveries()
        if d["status"] == "pending" and d["next_attempt_at"] <= NOW
    )
    taken: list[int] = []
    per: dict[str, int] = {}
    for _, id_, url in due:
        receiver = urlsplit(url).netloc.rpartition("@")[2].lower()
        if per.get(receiver, 0) < per_receiver and len(taken) < limit:
            per[receiver] = per.get(receiver, 0) + 1
            taken.append(id_)
    return taken


def test_each_round_takes_the_oldest_due_of_each_receiver(store: Store) -> None:
    # URLs that share a prefix, a host in two cases, two schemes, a port, user info, a query
    # or fragment right after the host: the cap is by host and port, as before.
    urls = [
        "https://a.example/hook",
        "https://a.example/other?k=1",
        "https://A.example/hook",
        "http://a.example/hook",
        "https://a.example",
        "https://a.example?x=/y",
        "https://a.example#f",
        "https://a.example.evil/hook",
        "https://a.example:8443/hook",
        "https://user@a.example/hook",
        "https://b.example/hook",
        "https://b.example/x/y",
        "https://c.example:1/",
        "https://c.example:10/",
        "https://d.example/hook",
    ]
    rng = random.Random(7)
    rows = []
    for _ in range(3000):
        url = rng.choice(urls[:3]) if rng.random() < 0.6 else rng.choice(urls)
        status = "pending" if rng.random() < 0.9 else "delivered"
        when = at(rng.randrange(5000)) if rng.random() < 0.9 else "2026-01-03T00:00:00.000"
        rows.append((url, when, status))
    add_deliveries(store, rows)
    for limit, per_receiver in [(50, 4), (7, 2), (50, 1), (200, 30)] * 3:
        expected = expected_claim(store, limit, per_receiver)
        assert [c["id"] for c in store.claim_due_deliveries(NOW, LEASE, limit, per_receiver)] == (
            expected
        )


def test_a_round_over_many_receivers_each_with_a_backlog(store: Store) -> None:
    # Receivers that each have their share in the oldest due rows, and the last due behind all
    # their backlogs: the round goes on past those rows.
    add_deliveries(
        store,
        [(f"https://r{n % 150}.example/hook", at(n), "pending") for n in range(3200)]
        + [("https://late.example/hook", at(9000), "pending")],
    )
    expected = expected_claim(store, 151, 1)
    claimed = store.claim_due_deliveries(NOW, LEASE, 151, 1)
    assert [c["id"] for c in claimed] == expected
    assert claimed[-1]["url"] == "https://late.example/hook"


def test_urls_that_differ_only_in_their_user_and_password_are_one_receiver(store: Store) -> None:
    """A producer that puts a tenant's credentials in each callback_url: one host and port is one
    receiver, whose share is PER_RECEIVER, not that many for each set of credentials (one that
    hangs would hold every slot, and everyone else's webhooks would wait)."""
    urls = [f"https://tenant{n % 3}:token{n % 3}@hooks.example/cb" for n in range(12)]
    add_deliveries(store, [(url, at(n), "pending") for n, url in enumerate(urls)])
    add_deliveries(store, [("https://other.example/cb", at(100), "pending")])
    claimed = store.claim_due_deliveries(NOW, LEASE, 50, 4)
    hosts = [urlsplit(c["url"]).hostname for c in claimed]
    assert {h: hosts.count(h) for h in set(hosts)} == {"hooks.example": 4, "other.example": 1}
    assert [c["receiver"] for c in claimed] == ["hooks.example"] * 4 + ["other.example"]
