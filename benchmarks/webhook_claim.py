"""What one round of webhook deliveries costs to claim, and whom it serves, as one backlog grows.

Every delivery round (``bot/api/webhooks.py`` ``deliver_due``, on the server's event loop)
claims up to ``BATCH`` (50) due deliveries, at most ``PER_RECEIVER`` (4) to one receiver (host
and port), oldest first: ``Store.claim_due_deliveries``. This times that claim through the real
``Store`` on a database of

- one receiver's backlog of N due deliveries (one URL), or one of the variants below, of N rows;
- beside it, always: 5 other receivers with one delivery due each (due later than the
  backlog), 20,000 deliveries not due yet, 50,000 delivered (``--not-due``, ``--delivered``);

and, as the baseline in the same run on the same database, **old**: the claim before m031
(644339b), reimplemented below (``old_claim``): the oldest ``limit * 20`` (1,000) due rows,
then at most 4 a receiver among those, in Python. It is cheap, but one receiver with 1,000
due fills all 1,000 rows and every round, and no other receiver is served. **Now** (m031) each
delivery's ``receiver`` is stored and indexed: the oldest 200 due rows serve the round when
they fill it, else the claim walks the receivers with deliveries pending through the index,
each with its oldest 4 due.

Variants (N rows each): a different URL per item on one host (the receiver is the host, not
the URL); N distinct hosts, one row each (the oldest rows fill the round); N/100 hosts × 100
rows, interleaved in time; one receiver's N then N/10 hosts with one each, newer (the walk
visits every one of those receivers: the claim's cost grows with the receivers, not with
their backlogs).

Each round claims at ``now``, inside a SAVEPOINT rolled back after it, so every round sees
the same backlog (the claim then runs in a savepoint of its own, without the idle look and
the commit a claim outside a transaction has; both ways alike). The ways alternate round by
round. Cells: a round's milliseconds (median and longest of the rounds), now ÷ old (medians),
the receivers with a delivery due, and the receivers one round serves, now and old.

    python benchmarks/webhook_claim.py            # 1,000 / 100,000 / 1,000,000; variants 100,000
    python benchmarks/webhook_claim.py --sizes 1000 100000 --variant-size 10000
    python benchmarks/webhook_claim.py --quick    # 1,000 and 10,000, 5 rounds, 1,000 not due
    #                                                and 1,000 delivered: a few s
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import machine, markdown_table

from bot.api.webhooks import BATCH, PER_RECEIVER
from bot.store import Store
from bot.store.migrations import DELIVERY_KEY_SQL, RECEIVER_SQL
from bot.store.producer import _receiver

START = datetime(2026, 1, 1, tzinfo=UTC)  # the backlog's oldest row; one row a millisecond
NOW = START + timedelta(days=1)  # every round claims at this time: the backlog is all due
LEASE = NOW + timedelta(seconds=70)
OTHERS = 5  # receivers with one delivery due each, beside the backlog
NOT_DUE = 20_000
DELIVERED = 50_000


def iso(moment: datetime) -> str:
    """The store's time format (``webhooks._iso``)."""
    return moment.isoformat(timespec="milliseconds")


def one_receiver(n: int) -> list[str]:
    return ["https://slow.example/hook"] * n


def url_per_item(n: int) -> list[str]:
    return [f"https://slow.example/items/{i}?x={i}" for i in range(n)]


def distinct_hosts(n: int) -> list[str]:
    return [f"https://h{i}.example/hook" for i in range(n)]


def hosts_x100(n: int) -> list[str]:
    hosts = max(1, n // 100)
    return [f"https://h{i % hosts}.example/hook" for i in range(n)]


def one_receiver_then_hosts(n: int) -> list[str]:
    return one_receiver(n) + distinct_hosts(n // 10)


def cases(sizes: Sequence[int], variant: int) -> list[tuple[str, int, Callable[[int], list[str]]]]:
    """(name, N, the backlog's URLs in time order) of each case."""
    out = [("one receiver", n, one_receiver) for n in sizes]
    out += [
        ("a URL per item, one host", variant, url_per_item),
        (f"{variant:,} hosts × 1", variant, distinct_hosts),
        (f"{max(1, variant // 100):,} hosts × 100, interleaved", variant, hosts_x100),
        (f"one receiver, then {variant // 10:,} hosts × 1", variant, one_receiver_then_hosts),
    ]
    return out


def build(db: Path, backlog: list[str], not_due: int = NOT_DUE, delivered: int = DELIVERED) -> int:
    """The database: ``backlog`` due one row a millisecond from ``START``, the other receivers,
    ``not_due`` rows not due and ``delivered`` delivered ones; each row's ``receiver`` by the
    product's own SQL expression and its ``key`` (``DELIVERY_KEY_SQL``), as every INSERT INTO
    deliveries writes them. One transaction. Rows written."""
    receiver = RECEIVER_SQL.format(url=":url")
    insert = (
        "INSERT INTO deliveries (item_id, url, next_attempt_at, created_at, status, receiver,"
        f" key) VALUES (:item, :url, :at, :at, :status, {receiver}, {DELIVERY_KEY_SQL})"
    )
    tail = START + timedelta(milliseconds=len(backlog))
    later = iso(NOW + timedelta(days=30))
    rows = [
        {"url": url, "at": iso(START + timedelta(milliseconds=i)), "status": "pending"}
        for i, url in enumerate(backlog)
    ]
    rows += [
        {"url": f"https://r{k}.example/hook", "at": iso(tail + timedelta(minutes=k + 1)),
         "status": "pending"}
        for k in range(OTHERS)
    ]  # fmt: skip
    # an item each, as webhooks come: the claim takes one of an item's deliveries at a time
    # (the rows not due and the delivered ones, never claimed, share one item each)
    rows = [{**row, "item": f"i{n}"} for n, row in enumerate(rows)]
    rows += [{"url": "https://later.example/hook", "at": later, "status": "pending",
              "item": "later"}] * not_due  # fmt: skip
    rows += [{"url": "https://done.example/hook", "at": iso(START), "status": "delivered",
              "item": "done"}] * delivered  # fmt: skip
    with Store.open(db) as store, store._immediate():
        conn = store.db.conn
        conn.executemany(
            "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
            " VALUES (:item, 't', '{}', 'api', 'resolved', :at, :at)",
            ({"item": item, "at": iso(START)} for item in dict.fromkeys(r["item"] for r in rows)),
        )
        conn.executemany(insert, rows)
    return len(backlog) + OTHERS + not_due + delivered


def old_fair_share(rows: list[tuple], limit: int, per_receiver: int) -> list[tuple]:
    """``_fair_share`` of 644339b: up to ``limit`` of ``rows`` (oldest first), at most
    ``per_receiver`` to one receiver."""
    taken: list[tuple] = []
    per: dict[str, int] = {}
    for row in rows:
        receiver = urlsplit(row[2]).netloc.lower()
        if per.get(receiver, 0) < per_receiver:
            per[receiver] = per.get(receiver, 0) + 1
            taken.append(row)
            if len(taken) == limit:
                break
    return taken


def old_claim(
    store: Store, now: str, lease_until: str, limit: int, per_receiver: int
) -> list[dict[str, Any]]:
    """``claim_due_deliveries`` of 644339b, with ``per_receiver``: the oldest ``limit * 20``
    due rows, capped per receiver in Python, each claimed row's attempt counted and leased."""
    due = (
        "SELECT id, item_id, url, attempts FROM deliveries"
        " WHERE status = 'pending' AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at, id LIMIT ?"
    )
    args = [now, limit * 20]
    if not store.db.conn.in_transaction and not store.db.execute(due, args).fetchone():
        return []
    with store._immediate():
        rows = old_fair_share(store.db.execute(due, args).fetchall(), limit, per_receiver)
        for row in rows:
            store.db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
                [lease_until, row[0]],
            )
    return [
        {"id": row[0], "item_id": row[1], "url": row[2], "attempts": row[3] + 1} for row in rows
    ]


def new_claim(
    store: Store, now: str, lease_until: str, limit: int, per_receiver: int
) -> list[dict[str, Any]]:
    return store.claim_due_deliveries(now, lease_until, limit, per_receiver)


WAYS = {"now": new_claim, "old": old_claim}


def measure(db: Path, rounds: int) -> dict[str, Any]:
    """Per way, each round's seconds and the receivers it served (the same every round); and
    the receivers with a delivery due."""
    now, lease = iso(NOW), iso(LEASE)
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    served: dict[str, Counter] = {}
    with Store.open(db) as store:
        due = store.db.execute(
            "SELECT count(DISTINCT receiver) FROM deliveries"
            " WHERE status = 'pending' AND next_attempt_at <= ?",
            [now],
        ).fetchone()[0]
        for _ in range(rounds):
            for way, claim in WAYS.items():
                store.db.execute("SAVEPOINT round")
                try:
                    began = time.perf_counter()
                    claimed = claim(store, now, lease, BATCH, PER_RECEIVER)
                    seconds[way].append(time.perf_counter() - began)
                finally:
                    store.db.execute("ROLLBACK TO round")
                    store.db.execute("RELEASE round")
                counts = Counter(_receiver(c["url"]) for c in claimed)
                if served.setdefault(way, counts) != counts:
                    raise SystemExit(f"{way}: rounds on the same backlog served different rows")
    for way, counts in served.items():
        if counts and max(counts.values()) > PER_RECEIVER:
            raise SystemExit(f"{way}: a round gave one receiver {max(counts.values())}")
    return {"seconds": seconds, "served": served, "due": due}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run for the test suite")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000],
        help="one receiver's backlogs, in due deliveries",
    )  # fmt: skip
    parser.add_argument(
        "--variant-size", type=int, default=100_000, help="rows of each variant's backlog"
    )
    parser.add_argument("--rounds", type=int, default=20, help="rounds timed each way per case")
    parser.add_argument(
        "--not-due",
        type=int,
        default=NOT_DUE,
        help=f"deliveries not due yet beside each backlog (default {NOT_DUE:,}; --quick: 1,000)",
    )
    parser.add_argument(
        "--delivered",
        type=int,
        default=DELIVERED,
        help=f"delivered rows beside each backlog (default {DELIVERED:,}; --quick: 1,000)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.variant_size, args.rounds = [1_000, 10_000], 10_000, 5
        # the claim must pass over both kinds, not wade through many: whom a round serves
        # does not depend on how many there are (building 70,000 of them cost ~2 s a case)
        args.not_due, args.delivered = 1_000, 1_000
    if min(args.sizes) < 1 or args.variant_size < 100 or args.rounds < 1:
        parser.error("--sizes must be at least 1, --variant-size 100, --rounds 1")
    if args.not_due < 0 or args.delivered < 0:
        parser.error("--not-due and --delivered must be at least 0")
    print(machine())
    print(
        f"a round: {BATCH} deliveries, at most {PER_RECEIVER} a receiver; beside each backlog "
        f"{OTHERS} receivers with 1 due, {args.not_due:,} not due, {args.delivered:,} delivered; "
        f"{args.rounds} rounds each way"
    )
    rows = []
    for name, n, urls in cases(args.sizes, args.variant_size):
        with tempfile.TemporaryDirectory(prefix="hitl-webhooks-") as folder:
            db = Path(folder) / "hooks.db"
            began = time.perf_counter()
            backlog = urls(n)
            written = build(db, backlog, args.not_due, args.delivered)
            print(
                f"{name}, {len(backlog):,}: {written:,} deliveries in "
                f"{time.perf_counter() - began:.0f} s",
                flush=True,
            )
            found = measure(db, args.rounds)
        ms = {way: [1000 * s for s in v] for way, v in found["seconds"].items()}
        median = {way: statistics.median(v) for way, v in ms.items()}
        served = found["served"]
        rows.append([
            name, f"{len(backlog):,}", f"{found['due']:,}",
            f"{median['now']:.2f}", f"{max(ms['now']):.2f}",
            f"{median['old']:.2f}", f"{max(ms['old']):.2f}",
            f"{median['now'] / median['old']:.2f}",
            f"{len(served['now'])} ({sum(served['now'].values())})",
            f"{len(served['old'])} ({sum(served['old'].values())})",
        ])  # fmt: skip
    print()
    print(markdown_table(
        ["backlog", "rows", "receivers due", "now median ms", "now max ms", "old median ms",
         "old max ms", "now ÷ old", "served now (deliveries)", "served old (deliveries)"],
        rows, "lrrrrrrrrr",
    ))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
