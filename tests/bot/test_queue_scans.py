"""The queue's reads on the event loop cost what the open questions (or the person's answers)
cost, not every post ever made: `open_post_counts` (every dispatcher round), `open_posts`,
`requeue_posts_outside`'s look (every dispatcher round too; the open posts' partial index,
``posts_open_age``) and `has_answered_in` (App Home's "Start labeling", per routed channel:
the person's answers first, m035). And a round does not post an item decided while it waited
on Slack (`begin_post_attempt` refuses an item that no longer waits to be asked)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Item, make_settings, margin_scored, seed, start_bot
from tests.fake_slack import CHANNEL

OTHER = "C0BUGS"
T0 = "2026-01-01T00:00:00.000+00:00"
# Answered questions added to show a read's work does not grow with them: a read that walked
# them would run thousands more SQLite VM instructions (tens of ``steps``' hundreds) at 2,000
# as at 20,000, and inserting 20,000 (with their 40,000 answers) cost ~1 s of CPU a test.
MORE = 2_000


def add_history(store: Store, n: int, channel: str = CHANNEL, start: int = 0) -> None:
    """``n`` questions asked in ``channel`` and answered long ago (closed posts, two answers
    each by people other than those the tests ask about), as a busy deployment has."""
    ids = [f"h{start + k}" for k in range(n)]
    with store.db.conn:
        store.db.conn.executemany(
            "INSERT INTO items (id, text, source, status, created_at, updated_at)"
            " VALUES (?, ?, 'import', 'resolved', ?, ?)",
            [(i, f"old ticket {i}", T0, T0) for i in ids],
        )
        store.db.conn.executemany(
            "INSERT INTO posts (item_id, channel, ts, reason, posted_at, closed_at)"
            " VALUES (?, ?, ?, 'uncertain', ?, ?)",
            [(i, channel, f"1767225600.{start + k:06d}", T0, T0) for k, i in enumerate(ids)],
        )
        store.db.conn.executemany(
            "INSERT INTO answers (item_id, user_id, label, source, created_at, dedupe_key)"
            " VALUES (?, ?, 'bug', 'button', ?, ?)",
            [(i, user, T0, f"{i}:{user}") for i in ids for user in ("U0OLD1", "U0OLD2")],
        )


def open_some(store: Store, n: int, channel: str = CHANNEL) -> None:
    """``n`` open questions in ``channel``."""
    ids = [f"o{channel}{k}" for k in range(n)]
    with store.db.conn:
        store.db.conn.executemany(
            "INSERT INTO items (id, text, source, status, created_at, updated_at)"
            " VALUES (?, ?, 'import', 'posted', ?, ?)",
            [(i, f"open ticket {i}", T0, T0) for i in ids],
        )
        store.db.conn.executemany(
            "INSERT INTO posts (item_id, channel, ts, reason, posted_at)"
            " VALUES (?, ?, ?, 'uncertain', ?)",
            [(i, channel, f"1800000000.{k:06d}", T0) for k, i in enumerate(ids)],
        )


def steps(store: Store, read: Callable[[], Any]) -> tuple[Any, int]:
    """What ``read()`` returns and how many SQLite VM instructions it ran (counted in
    hundreds): a measure of the work that does not depend on the machine's load."""
    read()  # once first: the statements prepared and cached, as on a running server
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    store.db.conn.set_progress_handler(tick, 100)
    try:
        result = read()
    finally:
        store.db.conn.set_progress_handler(None, 0)
    return result, count


def plans(store: Store, read: Callable[[], Any]) -> list[tuple[str, list[str]]]:
    """Each SELECT ``read()`` runs (as SQLite ran it, values in place), with its query plan."""
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    try:
        read()
    finally:
        store.db.conn.set_trace_callback(None)
    selects = [sql for sql in dict.fromkeys(seen) if sql.lstrip().upper().startswith("SELECT")]
    assert selects, "no SELECT traced"
    return [
        (sql, [row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + sql)]) for sql in selects
    ]


def assert_open_posts_index(store: Store, read: Callable[[], Any]) -> None:
    """Every read of posts by ``read()`` goes through the open posts' partial index: no SCAN
    of posts (nor of an index of every post, such as ``posts_open``), only of that index."""
    for sql, plan in plans(store, read):
        if " posts" not in sql:
            continue
        scans = [step for step in plan if step.startswith("SCAN")]
        assert scans, (sql, plan)
        assert all(step.startswith("SCAN posts USING INDEX posts_open_age") for step in scans), (
            sql,
            plan,
        )


def history_db(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "hitl.db")
    open_some(store, 3)
    open_some(store, 2, OTHER)
    return store


# ---------------------------------------------------------------- open posts


def test_open_post_counts_reads_the_open_posts_index_not_every_post(tmp_path: Path):
    with history_db(tmp_path) as store:
        add_history(store, 50)
        assert_open_posts_index(store, store.open_post_counts)
        counts, few = steps(store, store.open_post_counts)
        assert counts == {CHANNEL: 3, OTHER: 2}
        add_history(store, MORE, start=50)
        counts, many = steps(store, store.open_post_counts)
        assert counts == {CHANNEL: 3, OTHER: 2}
        assert many == few  # the same work at 2,000 more answered questions


def test_open_posts_reads_the_open_posts_index_not_every_post(tmp_path: Path):
    with history_db(tmp_path) as store:
        add_history(store, 50)
        assert_open_posts_index(store, store.open_posts)
        rows, few = steps(store, store.open_posts)
        add_history(store, MORE, start=50)
        rows_then, many = steps(store, store.open_posts)
        assert [r["item_id"] for r in rows_then] == [r["item_id"] for r in rows]
        assert [r["item_id"] for r in rows] == [f"o{CHANNEL}{k}" for k in range(3)] + [
            f"o{OTHER}{k}" for k in range(2)
        ]  # by id, oldest first
        assert many == few


def test_requeue_posts_outside_looks_at_the_open_posts_alone(tmp_path: Path):
    with history_db(tmp_path) as store:
        add_history(store, 50, channel="C0GONE")  # closed posts of a channel no longer used
        look = lambda: store.requeue_posts_outside([CHANNEL, OTHER])  # noqa: E731
        assert_open_posts_index(store, look)
        moved, few = steps(store, look)
        assert moved == []
        add_history(store, MORE, channel="C0GONE", start=50)
        moved, many = steps(store, look)
        assert moved == []
        assert many == few
        # and it still moves the open posts of a channel no longer in use
        moved = store.requeue_posts_outside([CHANNEL])
        assert sorted(p["item_id"] for p in moved) == [f"o{OTHER}0", f"o{OTHER}1"]
        assert store.open_post_counts() == {CHANNEL: 3}


# ---------------------------------------------------------------- has_answered_in


def test_has_answered_in_starts_from_the_persons_answers_not_the_channels_posts(tmp_path: Path):
    with Store.open(tmp_path / "hitl.db") as store:
        add_history(store, 50)
        add_history(store, 3, channel=OTHER, start=100_000)
        ask = lambda: store.has_answered_in("U0NEW", CHANNEL)  # noqa: E731
        for sql, plan in plans(store, ask):
            assert not [step for step in plan if step.startswith("SCAN")], (sql, plan)
            assert any("answers_user" in step for step in plan), (sql, plan)
            assert any("COVERING INDEX posts_item" in step for step in plan), (sql, plan)
        answered, few = steps(store, ask)
        assert not answered
        add_history(store, MORE, start=50)
        answered, many = steps(store, ask)
        assert not answered
        assert many == few  # the channel's history is not walked
        # the answers still count as before: by button or modal, not an import's
        assert store.has_answered_in("U0OLD1", CHANNEL)
        assert store.has_answered_in("U0OLD2", OTHER)
        with store.db.conn:
            store.db.conn.execute(
                "INSERT INTO answers (item_id, user_id, label, source, created_at, dedupe_key)"
                " VALUES ('h100000', 'U0IMPORT', 'bug', 'import', ?, 'imp')",
                [T0],
            )
        assert not store.has_answered_in("U0IMPORT", OTHER)
        store.add_items([Item("fresh", "a fresh ticket")], "import")
        store.record_post("fresh", OTHER, "1900000000.000001", "cold_start", None, None, None)
        store.record_answer("fresh", "U0NEW", "bug", source="modal", dedupe_key="m:fresh")
        assert store.has_answered_in("U0NEW", OTHER)
        assert not store.has_answered_in("U0NEW", CHANNEL)


def test_m035_indexes_an_older_database(tmp_path: Path):
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        add_history(store, 5)
        # as the database was before m035
        store.db.execute("DROP INDEX answers_user")
        store.db.execute("DROP INDEX posts_item")
        store.db.execute("CREATE INDEX posts_item ON posts(item_id)")
        store.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm035_answers_user'")
    with Store.open(db) as store:
        columns = {
            name: [r[2] for r in store.db.execute(f"PRAGMA index_info({name})")]
            for name in ("answers_user", "posts_item")
        }
        assert columns == {
            "answers_user": ["user_id", "item_id"],
            "posts_item": ["item_id", "channel"],
        }
        assert store.has_answered_in("U0OLD1", CHANNEL)
        assert not store.has_answered_in("U0OLD1", OTHER)


# ---------------------------------------------------------------- begin_post_attempt


def test_a_post_attempt_is_refused_for_an_item_that_no_longer_waits(tmp_path: Path):
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_items([Item(i, f"ticket {i}") for i in "abcdefg"], "import")
        with store.db.conn:
            for item_id, status in (("b", "queued"), ("c", "auto"), ("d", "gold")):
                store.db.conn.execute("UPDATE items SET status = ? WHERE id = ?", [status, item_id])
        for item_id in "abcd":  # new, queued, auto, gold: what the dispatcher posts
            assert store.begin_post_attempt(item_id, CHANNEL, "uncertain", None, None, None)
        store.record_answer("e", "U0RAJ", "bug", source="modal", dedupe_key="m:e")  # decided
        store.set_aside("f", "msg_too_long")  # skipped
        store.record_post("g", CHANNEL, "1.000001", "cold_start", None, None, None)  # posted
        for item_id in "efg":
            assert not store.begin_post_attempt(item_id, OTHER, "uncertain", None, None, None)
        assert not store.begin_post_attempt("gone", CHANNEL, "uncertain", None, None, None)
        assert [a["item_id"] for a in store.post_attempts()] == ["a", "b", "c", "d"]


async def test_an_item_decided_while_the_round_waits_on_slack_is_not_posted(
    fake_slack: FakeSlack, tmp_path: Path
):
    """The round reads its items, then waits on Slack for its first channel's post; meanwhile
    someone labels the other channel's first pick in the labeling modal. That pick is not
    posted (it was: a new message already "Labeled billing"); the channel's next pick goes.
    (Channels are posted to in order of their ids: #bugs, C0BUGS, first.)"""
    fake_slack.add_channel(OTHER, "bugs")
    items = [Item(f"i{n}", f"ticket number {n} about something") for n in range(4)]
    seed(tmp_path / "hitl.db", items)
    settings = make_settings(fake_slack, tmp_path, max_open=2, routes={"bug": OTHER})
    async for bot in start_bot(fake_slack, settings, retries=0):
        bot.dispatcher.post_interval = 60.0  # one post per channel per round, as in production
        bot.store.set_predictions(
            margin_scored(
                [
                    ("i0", 1, "billing", 0.5, [["billing", 0.5], ["bug", 0.4]]),  # asked first
                    ("i1", 1, "billing", 0.7, [["billing", 0.7], ["bug", 0.1]]),
                    ("i2", 1, "bug", 0.5, [["bug", 0.5], ["billing", 0.3]]),
                    ("i3", 1, "bug", 0.5, [["bug", 0.5], ["billing", 0.3]]),
                ]
            ),
            threshold=0.8,
            strategy="margin",
        )
        fake_slack.fail("chat.postMessage", mode="timeout")  # Slack is slow with the first
        round_ = asyncio.create_task(bot.dispatcher.fill())
        # an upper bound, not a wait: the round's first read may be slow on a busy machine
        first = await fake_slack.next_call("chat.postMessage", timeout=30)
        assert first.params["channel"] == OTHER
        result = bot.store.record_answer(
            "i0", "U0RAJ", "billing", source="modal", dedupe_key="m:i0", votes_needed=1
        )
        assert result.status == "resolved"
        fake_slack.release_timeouts()
        assert await round_ == 2
        await bot.rt.redrawer.pending()
        posted: dict[str, list[str]] = {}
        for call in fake_slack.calls_to("chat.postMessage"):
            meta = call.params["metadata"]
            meta = json.loads(meta) if isinstance(meta, str) else meta
            posted.setdefault(call.params["channel"], []).append(meta["event_payload"]["item_id"])
        assert posted[CHANNEL] == ["i1"]  # i0, decided, was skipped without a word
        assert len(posted[OTHER]) == 1
        assert bot.store.post_for_item("i0") is None
        assert bot.store.post_attempts() == []
        assert [m["text"] for m in fake_slack.messages(CHANNEL) if "Labeled" in m["text"]] == []


def test_the_marked_gold_look_costs_the_same_however_much_gold_was_imported(tmp_path: Path):
    """With HITL_GOLD_RATE=0 the dispatcher looks, at each post on the event loop, for an item
    marked gold while it waited (``next_gold(marked=True)``). It read past every gold item
    imported as new (41 ms at 200k): m037's partial index holds the marked ones alone."""
    with Store.open(tmp_path / "hitl.db") as store:
        store.add_items([Item("q1", "a waiting ticket"), Item("q2", "another one")], "import")
        store.add_gold([Item("q1", "a waiting ticket", "bug")])  # marked while it waited

        def look() -> list[str]:
            return [row["id"] for row in store.next_gold(5, marked=True)]

        found, few = steps(store, look)
        store.add_gold([Item(f"g{k}", f"imported gold {k}", "bug") for k in range(5_000)])
        again, many = steps(store, look)
    assert found == again == ["q1"]
    assert many == few, (few, many)
