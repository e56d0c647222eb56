"""The receiver of each webhook delivery is stored (m031; ``DELIVERY_RECEIVER_SQL``, without a
URL's user and password, since m050) and indexed, so a delivery round reads each receiver's
oldest few due instead of passing over one receiver's backlog: its cost does not grow with the
backlog (it used to: 0.5 µs a row of it, on the event loop, every round)."""

from __future__ import annotations

import contextlib
import sqlite3
import string
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

from bot.store import Store, migrations, producer
from tests.bot.test_webhook_fairness import LEASE, NOW, add_deliveries, at, expected_claim


def receiver_in_sql(url: str) -> str:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        return conn.execute(
            f"SELECT {producer.DELIVERY_RECEIVER_SQL.format(url='u')} FROM (SELECT ? AS u)", [url]
        ).fetchone()[0]


HOST_CHARS = string.ascii_letters + string.digits + ".-_:@[]%!$&'()*+,;=~" + "\t\r\n" + "éÉßİKſ"
URLS = st.one_of(
    st.builds(
        "".join,
        st.tuples(
            st.sampled_from(
                ["http://", "https://", "HTTP://", "hTtPs://", "ftp://", "http:/", "", "mailto:"]
            ),
            st.text(alphabet=HOST_CHARS, max_size=12),
            st.text(alphabet=HOST_CHARS + "/?#", max_size=12),
        ),
    ),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(url=URLS)
@example(url="https://A.Example:8443/hook?x=1#f")
@example(url="https://user@a.example?x=/y")
@example(url="https://u:p@w@a.example:8443/x")
@example(url="https://@/x")
@example(url="https://a.example#f/g")
@example(url="http://")
@example(url="https://a\tb.Example\n/x")
@example(url="ftp://Host/x")
@example(url="HTTPS://Host.example/x")
@example(url="https://[::1]:80/x")
def test_the_receiver_sqlite_stores_is_urlsplits_host_and_port(url: str) -> None:
    try:
        expected = producer._receiver(url)
    except ValueError:  # urlsplit refuses it (a bad IPv6 host): SQLite stores something
        assert isinstance(receiver_in_sql(url), str)
        return
    stored = receiver_in_sql(url)
    # SQLite's lower() folds ASCII only: a host in upper case other than ASCII keeps its case.
    assert stored == expected or (not stored.isascii() and stored.lower() == expected)
    if url.lower().startswith(("http://", "https://")):
        assert stored.lower() == urlsplit(url).netloc.rpartition("@")[2].lower()
    else:
        assert stored == url


def test_every_delivery_written_knows_its_receiver(store: Store) -> None:
    url = "https://Hooks.Example:8443/cb?x=1"
    item = SimpleNamespace(id="p1", text="Refund me", meta={}, callback_url=url)
    assert store.add_api_items([item]) == ["p1"]
    result = store.record_answer("p1", "U1", "billing", source="button", dedupe_key="k1")
    assert result.status == "resolved"  # a resolution's delivery (queue)
    # each sent before the next change (one waiting unsent would tell the change itself)
    for delivery in store.deliveries("p1"):
        store.finish_delivery(delivery["id"], "delivered")
    store.set_label("p1", "refund", user_id="UADMIN")  # a changed label's (labels)
    for delivery in store.deliveries("p1"):
        store.finish_delivery(delivery["id"], "delivered")
    store.remove_label("p1", user_id="UADMIN")  # a label taken back (producer)
    deliveries = store.deliveries("p1")
    assert len(deliveries) == 3
    assert [d["receiver"] for d in deliveries] == ["hooks.example:8443"] * 3


def test_the_upgrade_stores_the_receiver_of_each_pending_delivery(tmp_path: Path) -> None:
    db_path = tmp_path / "hitl.db"
    old = Database(db_path)
    migrations.apply(old, stop_before="m031_delivery_receiver")
    urls = ["https://Slow.example/hook", "https://fast.example:8443/cb?x=1", "http://u@b.example"]
    rows = [("https://slow.example/hook", at(n), "pending") for n in range(20)]
    rows += [(url, at(100 + n), "pending") for n, url in enumerate(urls)]
    rows += [("https://done.example/hook", at(0), "delivered")]
    # an item each: one of an item's deliveries is claimed at a time
    old["items"].insert_all(
        [{"id": f"i{n}", "text": "t", "source": "api", "status": "resolved",
          "created_at": "t", "updated_at": "t"} for n in range(len(rows))]
    )  # fmt: skip
    old["deliveries"].insert_all(
        [
            {
                "item_id": f"i{n}",
                "url": url,
                "next_attempt_at": when,
                "status": status,
                "created_at": "t",
            }  # fmt: skip
            for n, (url, when, status) in enumerate(rows)
        ]
    )
    old.conn.commit()
    old.conn.close()
    with Store.open(db_path) as store:
        assert "m031_delivery_receiver" in store.schema_version()
        stored = {d["url"]: d["receiver"] for d in store.deliveries() if d["status"] == "pending"}
        assert stored == {
            "https://slow.example/hook": "slow.example",
            "https://Slow.example/hook": "slow.example",
            "https://fast.example:8443/cb?x=1": "fast.example:8443",
            "http://u@b.example": "b.example",  # its user is no part of who receives
        }
        assert "deliveries_receiver_due" in {i.name for i in store.db["deliveries"].indexes}
        expected = expected_claim(store, 10, 2)
        claimed = store.claim_due_deliveries(NOW, LEASE, 10, 2)
        assert [c["id"] for c in claimed] == expected
        # Slow.example is slow.example: it waits behind that one's first two.
        assert [urlsplit(c["url"]).netloc for c in claimed] == [
            "slow.example",
            "slow.example",
            "fast.example:8443",
            "u@b.example",
        ]


def test_the_upgrade_takes_the_user_and_password_out_of_the_pending_receivers(
    tmp_path: Path,
) -> None:
    """m050: a database whose pending deliveries were written with the user and password in
    their receiver (m031's form, and the writes before m050) gets their host and port; the
    rows already sent keep what they have (no round claims them)."""
    db_path = tmp_path / "hitl.db"
    old = Database(db_path)
    migrations.apply(old, stop_before="m050_delivery_receiver_hosts")
    old["items"].insert_all(
        [{"id": f"i{n}", "text": "t", "source": "api", "status": "resolved",
          "created_at": "t", "updated_at": "t"} for n in range(3)]
    )  # fmt: skip
    rows = [
        ("https://t1:tok@Hooks.example/a", "t1:tok@hooks.example", "pending"),
        ("https://hooks.example/b", "hooks.example", "pending"),
        ("https://t2:tok@hooks.example/c", "t2:tok@hooks.example", "delivered"),
    ]
    old["deliveries"].insert_all(
        [{"item_id": f"i{n}", "url": url, "receiver": receiver, "status": status,
          "next_attempt_at": at(n), "created_at": "t"}
         for n, (url, receiver, status) in enumerate(rows)]
    )  # fmt: skip
    old.conn.commit()
    old.conn.close()
    with Store.open(db_path) as store:
        assert store.schema_version()[-1] == "m050_delivery_receiver_hosts"
        assert [(d["url"], d["receiver"]) for d in store.deliveries()] == [
            ("https://t1:tok@Hooks.example/a", "hooks.example"),
            ("https://hooks.example/b", "hooks.example"),
            ("https://t2:tok@hooks.example/c", "t2:tok@hooks.example"),
        ]


def test_a_pending_delivery_written_without_its_receiver_gets_it_at_the_next_round(
    store: Store,
) -> None:
    # A process older than m031 writes no receiver: the next round fills it and counts it.
    add_deliveries(store, [("https://a.example/hook", at(n), "pending") for n in range(10)])
    assert {d["receiver"] for d in store.deliveries()} == {None}
    expected = expected_claim(store, 5, 2)
    assert [c["id"] for c in store.claim_due_deliveries(NOW, LEASE, 5, 2)] == expected
    assert {d["receiver"] for d in store.deliveries()} == {"a.example"}
    add_deliveries(store, [("https://B.example/x", at(5), "pending")])
    expected = expected_claim(store, 5, 2)
    assert [c["id"] for c in store.claim_due_deliveries(NOW, LEASE, 5, 2)] == expected
    assert [d["receiver"] for d in store.deliveries()][-1] == "b.example"


def claim_cost(store: Store) -> tuple[int, list[tuple[str, list[str]]]]:
    """SQLite's work (virtual machine steps, in hundreds) for one round, and the plan of each
    statement it ran (in a savepoint, rolled back)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    seen: list[str] = []
    conn = store.db.conn
    conn.execute("SAVEPOINT cost")
    conn.set_progress_handler(count, 100)
    conn.set_trace_callback(seen.append)
    try:
        store.claim_due_deliveries(NOW, LEASE, 50, 4)
    finally:
        conn.set_progress_handler(None, 0)
        conn.set_trace_callback(None)
        conn.execute("ROLLBACK TO cost")
        conn.execute("RELEASE cost")
    plans = [
        (sql, [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)])
        for sql in dict.fromkeys(seen)
        if sql.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE"))
    ]
    return steps[0], plans


def test_a_rounds_cost_does_not_grow_with_a_receivers_backlog(tmp_path: Path) -> None:
    costs = {}
    for backlog in (1000, 30_000):
        with Store.open(tmp_path / f"{backlog}.db") as store:
            add_deliveries(
                store,
                [("https://slow.example/hook", at(n), "pending") for n in range(backlog)]
                + [(f"https://r{k}.example/hook", at(backlog + k), "pending") for k in range(5)]
                + [("https://later.example/hook", "2026-02-01", "pending")] * 100,
            )
            store.claim_due_deliveries(NOW, LEASE, 50, 4)  # fills the receivers
            costs[backlog], plans = claim_cost(store)
            for sql, plan in plans:
                steps = " ".join(plan)
                assert "SCAN deliveries" not in steps and "SCAN d " not in steps + " ", (sql, plan)
                # the only sort: of each receiver's few oldest, at the end
                assert "TEMP B-TREE" not in steps or sql.startswith("WITH"), (sql, plan)
    assert costs[30_000] < costs[1000] * 1.5, costs
