from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlite_utils import Database

from bot.config import Settings
from bot.errors import StoreError
from bot.learning.reports import stats_text
from bot.store import KNOWN_MIGRATIONS, Checkpointer, Store, migrations
from bot.store.core import JOURNAL_SIZE_LIMIT
from bot.store.lock import lock_path
from bot.store.migrations import recorded_names
from tests.bot.harness import margin_scored
from tests.query_plans import query_plans

TABLES = {"items", "posts", "answers", "labels", "models", "runs", "deliveries"}


@dataclass
class R:
    id: str
    text: str
    label: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


def test_fresh_database_gets_every_table_wal_and_foreign_keys(db_path: Path):
    with Store.open(db_path) as store:
        assert TABLES <= set(store.db.table_names())
        assert store.schema_version() == list(KNOWN_MIGRATIONS)
        assert store.journal_mode() == "wal"
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_version_1_database_is_upgraded_and_keeps_its_rows(db_path: Path):
    db = Database(db_path)
    migrations.apply(db, stop_before="m002_runs_deliveries")
    db["items"].insert(
        {"id": "a", "text": "old", "source": "import", "created_at": "t", "updated_at": "t"}
    )
    assert "runs" not in db.table_names()
    db.close()

    with Store.open(db_path) as store:
        assert store.schema_version() == list(KNOWN_MIGRATIONS)
        assert store.schema_version()[:2] == ["m001_core", "m002_runs_deliveries"]
        assert {"runs", "deliveries"} <= set(store.db.table_names())
        assert store.get_item("a")["text"] == "old"


def test_the_recorded_migrations_are_read_as_sqlite_utils_reads_them(db_path: Path):
    """``recorded_names`` reads the migrations table in one query: the same names, in the same
    order, as sqlite-utils' ``Migrations.applied`` (another set's rows beside ours, a name
    recorded out of the shipped order), and none for a file without the table."""
    bare = Database(db_path.with_name("bare.db"))
    assert recorded_names(bare) == [] == [m.name for m in migrations.applied(bare)]
    bare.close()
    Store.open(db_path).close()
    db = Database(db_path)
    table = db[migrations.migrations_table]
    table.insert({"migration_set": "other", "name": "o1", "applied_at": "2030-01-01"})
    table.insert({"migration_set": migrations.name, "name": "m000_late", "applied_at": "x"})
    expected = [m.name for m in migrations.applied(db)]
    assert expected[-1] == "m000_late" and "o1" not in expected
    assert recorded_names(db) == expected
    db.close()


def test_newer_database_is_refused_with_a_clear_message(db_path: Path):
    Store.open(db_path).close()
    db = Database(db_path)
    db["_sqlite_migrations"].insert(
        {"migration_set": "hitl", "name": "m999_future", "applied_at": "2030-01-01"}
    )
    db.close()
    with pytest.raises(StoreError, match=r"written by a newer slack-hitl \(schema m999_future\)"):
        Store.open(db_path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path):
    path = tmp_path / "notes.db"
    path.write_text("hello, this is not sqlite " * 100)
    with pytest.raises(StoreError, match="not a slack-hitl database"):
        Store.open(path)


def test_missing_folder_is_refused(tmp_path: Path):
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "nope" / "hitl.db")


def test_add_items_skips_ids_already_stored_or_repeated(memory_store: Store):
    first = memory_store.add_items([R("1", "a"), R("2", "b"), R("1", "a")], "import")
    assert (first.imported, first.duplicates, first.conflicts) == (2, 1, ())
    second = memory_store.add_items([R("2", "b"), R("3", "c")], "import")
    assert (second.imported, second.duplicates) == (1, 1)
    assert memory_store.count_items()["new"] == 3


def test_add_items_tells_an_id_stored_or_repeated_with_another_text_apart(memory_store: Store):
    first = memory_store.add_items([R("1", "a"), R("1", "a again", "bug")], "import")
    assert (first.imported, first.duplicates, first.conflicts) == (1, 0, (1,))
    second = memory_store.add_items([R("2", "b"), R("1", "another a")], "import")
    assert (second.imported, second.duplicates, second.conflicts) == (1, 0, (1,))
    assert memory_store.get_item("1")["text"] == "a" and memory_store.count_items()["new"] == 2


def test_labeled_rows_become_import_answers_and_resolved_labels(memory_store: Store):
    result = memory_store.add_items(
        [R("1", "refund me", "billing", {"k": 1}), R("2", "hi")], "import"
    )
    assert result.labeled == 1
    [label] = list(memory_store.iter_export())
    assert label["id"] == "1" and label["label"] == "billing" and label["votes"] == 1
    assert label["annotators"] == ["import"] and label["meta"] == {"k": 1}
    [answer] = list(memory_store.iter_answers())
    assert answer["source"] == "import" and answer["user_id"] == "import"
    assert memory_store.count_items() == {**memory_store.count_items(), "resolved": 1, "new": 1}
    assert memory_store.label_set() == ["billing"]


def test_export_reads_the_labels_and_looks_their_items_up_not_every_item(memory_store: Store):
    """`hitl export` at a million items with 26,000 labels walked every item by its id for the
    join (2.8 s; read from the labels, 1.1 s): the items are looked up by the labels."""
    rows = [R(f"i{n}", f"text {n}", "billing" if n % 50 == 0 else None) for n in range(2_000)]
    memory_store.add_items(rows, "import")
    plans = query_plans(memory_store, lambda: list(memory_store.iter_export()))
    [plan] = [lines for sql, lines in plans if "FROM labels l" in sql]
    assert plan[0] == "SCAN l" and plan[1].startswith("SEARCH i USING INDEX"), plan
    exported = [row["id"] for row in memory_store.iter_export()]
    assert exported == [f"i{n}" for n in range(0, 2_000, 50)]  # oldest resolution first


def test_add_items_is_one_transaction(memory_store: Store):
    unstorable = object()  # fails when the answers are inserted, after the items
    with pytest.raises(sqlite3.Error):
        memory_store.add_items([R("1", "fine", "ok"), R("2", "bad", unstorable)], "import")
    assert memory_store.db["items"].count == 0
    assert memory_store.db["answers"].count == 0


def test_foreign_keys_are_enforced(memory_store: Store):
    with pytest.raises(sqlite3.IntegrityError):
        memory_store.db["answers"].insert(
            {
                "item_id": "ghost",
                "user_id": "U1",
                "label": "x",
                "source": "button",
                "created_at": "t",
                "dedupe_key": "k",
            }
        )


def test_runs_are_recorded_with_their_outcome(memory_store: Store):
    run_id = memory_store.start_run("import", triggered_by="cli")
    memory_store.finish_run(run_id, "ok", {"imported": 3})
    [run] = memory_store.runs("import")
    assert run["status"] == "ok" and run["detail"] == {"imported": 3} and run["finished_at"]


def test_the_queue_is_read_from_the_priority_index_most_uncertain_first(memory_store: Store):
    memory_store.add_items([R(f"i{n}", f"text {n}") for n in range(6)], "import")
    memory_store.set_predictions(
        margin_scored(
            [
                (f"i{n}", 1, "a", 0.5 + n / 20, [["a", 0.5 + n / 20], ["b", 0.5 - n / 20]])
                for n in range(6)
            ]
        ),
        threshold=0.7,
        strategy="margin",
    )
    window = memory_store.most_uncertain(3)
    order = [it["id"] for it in window]
    assert order == ["i0", "i1", "i2"]  # margins 0.0, 0.1, 0.2; i4, i5 are auto (≥ 0.7)
    # the window's rows leave the guesses (JSON) out; the question posted reads its own
    assert "ranked" not in window[0]
    assert memory_store.prediction("i1") == {
        "model_version": 1, "predicted_label": "a", "ranked": [["a", 0.55], ["b", 0.45]]
    }  # fmt: skip
    assert memory_store.prediction("unknown")["ranked"] is None
    plan = " ".join(
        row[3]
        for row in memory_store.db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM items INDEXED BY items_status_priority"
            " WHERE status = 'queued' ORDER BY priority DESC, rowid LIMIT 3"
        )
    )
    assert "USING INDEX items_status_priority" in plan and "TEMP B-TREE" not in plan


def test_a_random_sample_covers_only_unlabeled_items_uniformly(memory_store: Store):
    import random

    memory_store.add_items([R(f"i{n}", f"text {n}") for n in range(3000)], "import")
    memory_store.db.execute("UPDATE items SET status = 'resolved' WHERE rowid % 3 = 0")
    memory_store.db.conn.commit()
    rng = random.Random(0)
    seen: dict[str, int] = {}
    for _ in range(40):
        sample = memory_store.sample_unlabeled(100, rng)  # 2,000 unlabeled: the rowid path
        assert len(sample) == 100 == len({it["id"] for it in sample})
        for it in sample:
            assert it["status"] == "new"
            seen[it["id"]] = seen.get(it["id"], 0) + 1
    assert len(seen) > 1500  # 4,000 draws reach most of the 2,000 unlabeled items
    assert max(seen.values()) <= 10


def test_a_random_rowid_sample_reads_the_text_of_only_the_rows_it_returns(memory_store: Store):
    """Most items unlabeled: about twice the sample's random rowids hit an unlabeled item, and
    only the rows kept are read (text and all): the draws read rowids and ids. Reading every
    row hit, then dropping half, was a sixth of the dispatcher's pick, before every post."""
    import random

    memory_store.add_items([R(f"i{n}", f"text {n}") for n in range(3000)], "import")
    statements: list[str] = []
    memory_store.db.conn.set_trace_callback(statements.append)
    try:
        sample = memory_store.sample_unlabeled(100, random.Random(0))
    finally:
        memory_store.db.conn.set_trace_callback(None)
    assert len(sample) == 100
    reads = [sql for sql in statements if "text" in sql]
    assert len(reads) == 1 and reads[0].count(",") <= 100 + 6, statements


def test_a_sample_from_few_unlabeled_items_reads_only_the_rows_it_returns(memory_store: Store):
    """1 in 50 items unlabeled: too few for the random rowids, so the sample comes from the
    unlabeled rowids in their index; only the chosen rows (text, JSON) are read. It used to read
    every unlabeled row: 234 ms a post at 1M items with 2 % unlabeled, on the event loop."""
    import random

    memory_store.add_items([R(f"i{n}", f"text {n}") for n in range(10_000)], "import")
    memory_store.db.execute("UPDATE items SET status = 'resolved' WHERE rowid % 50 != 0")
    memory_store.db.conn.commit()
    rng = random.Random(0)
    plans = query_plans(memory_store, lambda: memory_store.sample_unlabeled(100, rng))
    reads = [(sql, lines) for sql, lines in plans if "text" in sql]
    assert reads and all(
        all("USING INTEGER PRIMARY KEY (rowid=?)" in line for line in lines) for _, lines in reads
    ), plans
    seen: dict[str, int] = {}
    for _ in range(200):
        sample = memory_store.sample_unlabeled(100, rng)
        assert len(sample) == 100 == len({it["id"] for it in sample})
        for it in sample:
            assert it["status"] == "new"
            seen[it["id"]] = seen.get(it["id"], 0) + 1
    # 200 unlabeled items, each in half of the samples: 100 ± 7 times (sd), uniformly
    assert len(seen) == 200 and 65 <= min(seen.values()) and max(seen.values()) <= 135


def test_the_label_set_follows_every_label_and_reads_only_its_counts(memory_store: Store):
    store = memory_store
    store.add_items(
        [R(f"i{n}", f"text {n}", ["bug", "billing", "account"][n % 3]) for n in range(30)],
        "import",
    )
    store.add_items([R("new1", "a question")], "import")
    assert store.label_set() == ["account", "billing", "bug"]
    store.record_answer("new1", "U1", "refund", source="button", dedupe_key="k1")
    assert store.label_set() == ["account", "billing", "bug", "refund"]
    assert store.undo_resolution("new1", "U1", since="")  # its only example is gone again
    assert store.label_set() == ["account", "billing", "bug"]
    plan = _plans_of(store, store.label_set)
    assert "label_counts" in plan and "SCAN labels" not in plan and "SEARCH labels" not in plan


def _counted(store: Store) -> dict[str, int]:
    counts = {status: 0 for status in store.count_items()}
    for status, n in store.db.execute("SELECT status, count(*) FROM items GROUP BY status"):
        counts[status] = n
    return counts


def test_item_counts_follow_every_status_change(memory_store: Store):
    store = memory_store
    store.add_items([R(f"i{n}", f"text {n}", "a" if n < 2 else None) for n in range(8)], "import")
    assert store.count_items() == _counted(store)
    assert (store.count_items()["resolved"], store.count_items()["new"]) == (2, 6)
    sent = [SimpleNamespace(id=i, text="from a producer", meta={}, callback_url=None)
            for i in ("p1", "i3", "p1")]  # fmt: skip
    assert store.add_api_items(sent) == ["p1"]  # a known id and a repeat are not counted
    assert store.count_items() == {**_counted(store), "new": 7}
    store.db.execute("DELETE FROM items WHERE id = 'p1'")
    store.set_predictions(
        margin_scored(
            [(f"i{n}", 1, "a", c, [["a", c], ["b", 1 - c]]) for n, c in ((2, 0.55), (3, 0.95))]
        ),
        threshold=0.9,
        strategy="margin",
    )
    store.set_aside("i4", "invalid_blocks")
    store.record_post("i2", "C1", "1.1", "uncertain", 1, "a", 0.55)
    store.record_answer("i2", "U1", "b", source="button", dedupe_key="k1")
    store.record_answer("i5", "U1", "a", source="button", dedupe_key="k2")
    assert store.undo_resolution("i5", "U1", since="")
    with pytest.raises(sqlite3.Error):  # a failed import rolls its counts back too
        store.add_items([R("j1", "fine"), R("j2", "bad", object())], "import")
    store.db.execute("DELETE FROM items WHERE id = 'i7'")
    store.db.conn.commit()

    counts = store.count_items()
    assert counts == _counted(store)
    assert [counts[s] for s in ("new", "queued", "auto", "posted", "resolved", "skipped")] == [
        2, 0, 1, 0, 3, 1,  # i5 (undone, never posted: back) i6 · – · i3 · – · i0 i1 i2 · i4
    ]  # fmt: skip
    assert store.waiting_count() == counts["new"] + counts["queued"]


def _plans_of(store: Store, call) -> str:
    plans = query_plans(store, call)
    assert plans  # the call ran at least one SELECT
    return " | ".join(line for _, lines in plans for line in lines)


def test_stats_queries_read_indexes_not_every_row(memory_store: Store):
    counts = _plans_of(memory_store, memory_store.count_items)
    waiting = _plans_of(memory_store, memory_store.waiting_count)
    assert "item_counts" in counts + waiting and " items" not in counts + waiting
    since = _plans_of(memory_store, lambda: memory_store.answers_by_user("2026-11-24"))
    assert "SEARCH answers USING COVERING INDEX answers_by_people (created_at>?)" in since
    total = _plans_of(memory_store, lambda: memory_store.answers_since("2026-11-24"))
    assert "SEARCH answers USING COVERING INDEX answers_by_people (created_at>?)" in total
    voted = _plans_of(memory_store, memory_store.mean_agreement)
    assert "SEARCH labels USING COVERING INDEX labels_votes (votes>?)" in voted
    # all time (the leaderboard, App Home): a row per person, not every answer ever given
    ever = _plans_of(memory_store, memory_store.answers_by_user)
    ever += " | " + _plans_of(memory_store, lambda: memory_store.answers_of("U1"))
    assert "answered_by_user" in ever and " answers " not in ever + " ", ever


def test_the_all_time_counts_count_each_persons_items_once_as_the_period_counts_do(
    db_path: Path,
):
    clicks = [  # (item, user, label, source): double clicks, a change of mind, skips, undo
        ("i0", "U1", "bug", "button"), ("i0", "U1", "bug", "button"),
        ("i1", "U1", "bug", "button"), ("i1", "U1", "billing", "button"),
        ("i2", "U1", "bug", "modal"), ("i5", "U2", "bug", "button"),
        ("i3", "U2", None, "button"), ("i4", "U3", "bug", "button"), ("i4", "U3", None, "undo"),
        ("imp", "U3", "bug", "import"),
    ]  # fmt: skip
    with Store.open(db_path) as store:
        store.add_items([R(f"i{n}", f"text {n}") for n in range(6)] + [R("imp", "x")], "api")
        for n, (item, user, label, source) in enumerate(clicks[:5]):
            store.record_answer(item, user, label, source=source, dedupe_key=f"k{n}")
        # the first answers were given before m020: it counts them when it comes
        store.db.execute("DROP TRIGGER answered_by_user_insert")
        store.db.execute("DROP TABLE answered_by_user")
        store.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm020_answered_by_user'")
        for later in ("labeled_by_user_answer", "labeled_by_user_undo"):  # m023, after m020
            store.db.execute(f"DROP TRIGGER {later}")
        store.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm023_labeled_by_user'")
    with Store.open(db_path) as store:
        for n, (item, user, label, source) in enumerate(clicks[5:], start=5):
            store.record_answer(item, user, label, source=source, dedupe_key=f"k{n}")
        ever = store.answers_by_user()
        assert ever == store.answers_by_user("2000-01-01") == [("U1", 3), ("U2", 2), ("U3", 1)]
        assert [store.answers_of(u) for u in ("U1", "U2", "U3", "U9")] == [3, 2, 1, 0]
        assert [store.answers_of(u, "2000-01-01") for u in ("U1", "U2", "U3")] == [3, 2, 1]


def test_the_all_time_labels_and_skips_are_kept_as_the_period_counts_them(db_path: Path):
    # the all-time board ranked by answers, skips included: one who only skipped climbed it
    clicks = [  # (item, user, label, source): changes of mind both ways, skips, undos
        ("i0", "U1", "bug", "button"), ("i0", "U1", None, "button"),
        ("i1", "U1", None, "button"), ("i1", "U1", "bug", "button"),
        ("i2", "U1", "bug", "modal"), ("i3", "U2", None, "button"),
        ("i5", "U2", "bug", "button"), ("i4", "U3", "bug", "button"), ("i4", "U3", None, "undo"),
        ("i6", "U3", None, "button"), ("i6", "U3", None, "undo"),
        ("i7", "U3", "bug", "button"), ("i7", "U3", None, "undo"), ("i7", "U3", "bug", "modal"),
        ("i8", "U4", None, "button"), ("imp", "U3", "bug", "import"),
    ]  # fmt: skip
    since = "2000-01-01"
    with Store.open(db_path) as store:
        store.add_items([R(f"i{n}", f"text {n}") for n in range(9)] + [R("imp", "x")], "api")
        for n, (item, user, label, source) in enumerate(clicks[:7]):
            store.record_answer(
                item, user, label, source=source, dedupe_key=f"k{n}", votes_needed=3
            )
        # the first answers were given before m023: it counts them when it comes
        for trigger in ("labeled_by_user_answer", "labeled_by_user_undo"):
            store.db.execute(f"DROP TRIGGER {trigger}")
        store.db.execute("ALTER TABLE answered_by_user DROP COLUMN labeled")
        store.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm023_labeled_by_user'")
    with Store.open(db_path) as store:
        assert store.labels_by_user() == store.labels_by_user(since)
        for n, (item, user, label, source) in enumerate(clicks[7:], start=7):
            store.record_answer(
                item, user, label, source=source, dedupe_key=f"k{n}", votes_needed=3
            )
        ever = store.labels_by_user()
        assert ever == store.labels_by_user(since)
        assert ever == [("U1", 2, 1), ("U2", 1, 1), ("U3", 1, 0), ("U4", 0, 1)]
        for user in ("U1", "U2", "U3", "U4", "U9", None):
            assert store.labels_since(None, user) == store.labels_since(since, user)
        assert store.labels_since(None) == (4, 3)


def test_items_asked_for_by_id_are_found_by_id_not_by_reading_every_queued_one(
    memory_store: Store,
):
    """From 10 ids on SQLite chose the status index for `id IN (...) AND status ...`: every
    queued item read (2 s at a million, on the event loop, for POST /api/items of 10 items)."""
    store = memory_store
    store.add_items([R(f"i{n}", f"text {n}") for n in range(600)], "import")
    ids = [f"i{n}" for n in range(0, 600, 2)]
    for call in (lambda: store.unscored_of(ids, 1, "margin"), lambda: store.queued_of(ids)):
        plans = _plans_of(store, call)
        assert "SEARCH items USING INDEX sqlite_autoindex_items_1 (id=?)" in plans
        assert "status" not in plans, plans
    assert len(store.unscored_of(ids, 1, "margin")) == 300


def test_a_redraw_pass_reads_only_the_posts_behind_their_message(memory_store: Store):
    """Every click asks for a redraw pass on the event loop: it must not read every post ever
    made, only those whose message is behind (a partial index of them)."""
    store = memory_store
    store.add_items([R(f"i{n}", f"text {n}") for n in range(3)], "import")
    for n in range(3):
        store.record_post(f"i{n}", "C1", f"1.{n}", "uncertain", 1, "a", 0.5)
    store.record_answer("i1", "U1", "a", source="button", dedupe_key="k1")
    behind = store.posts_to_redraw()
    assert [p["item_id"] for p in behind] == ["i1"]
    store.mark_drawn(behind[0]["id"], behind[0]["redraw_seq"])
    assert store.posts_to_redraw() == []
    plan = _plans_of(store, store.posts_to_redraw)
    assert plan == "SCAN posts USING INDEX posts_behind", plan


def test_a_version_7_database_gets_the_counts_of_its_rows(db_path: Path):
    db = Database(db_path)
    migrations.apply(db, stop_before="m008_flat_stats")
    for n, status in enumerate(["new", "new", "queued", "resolved", "skipped"]):
        db["items"].insert(
            {"id": f"i{n}", "text": "t", "source": "import", "status": status,
             "created_at": "t", "updated_at": "t"}
        )  # fmt: skip
    db["labels"].insert(
        {"item_id": "i3", "label": "bug", "votes": 1, "agreement": 1.0, "annotators": "[]",
         "resolved_at": "t"}
    )  # fmt: skip
    db.close()
    with Store.open(db_path) as store:
        assert store.label_set() == ["bug"]
        counts = store.count_items()
        assert (counts["new"], counts["queued"], counts["resolved"], counts["skipped"]) == (
            2, 1, 1, 1,
        )  # fmt: skip
        assert counts == _counted(store)


def test_only_redraw_bookkeeping_skips_the_fsync(db_path: Path):
    with Store.open(db_path) as store:
        store.add_items([R("i1", "text")], "import")
        post_id = store.record_post("i1", "C1", "1.1", "uncertain", None, None, None)
        seen: list[str] = []
        store.db.conn.set_trace_callback(seen.append)
        store.mark_drawn(post_id, 3)
        store.record_answer("i1", "U1", "bug", source="button", dedupe_key="k1")
        store.db.conn.set_trace_callback(None)
        assert store.post(post_id)["drawn_seq"] == 3
        pragmas = [s for s in seen if s.startswith("PRAGMA synchronous =")]
        assert pragmas == ["PRAGMA synchronous = NORMAL", "PRAGMA synchronous = 2"]
        assert seen.index("PRAGMA synchronous = 2") < next(
            n for n, s in enumerate(seen) if "INSERT INTO" in s and "answers" in s
        )  # the answer is committed with synchronous=FULL again
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_the_modal_walks_the_queue_by_priority_then_unscored_items_from_an_index(
    memory_store: Store,
):
    store = memory_store
    store.add_items([R(f"i{n}", f"text {n}") for n in range(6)], "import")
    store.set_predictions(  # margins 0.9, 0.1, 0.5 and one confident item (auto, not asked)
        margin_scored(
            [
                (f"i{n}", 1, "a", c, [["a", c], ["b", 1 - c]])
                for n, c in ((0, 0.95), (1, 0.55), (2, 0.75), (3, 0.99))
            ]
        ),
        threshold=0.98,
        strategy="margin",
    )
    store.record_answer("i1", "U1", "a", source="button", dedupe_key="k1")  # U1 answered i1
    walked, seen = [], []
    while (item := store.next_for_user("U1", exclude=seen)) is not None:
        walked.append(item)
        seen.append(item)
    assert walked == ["i2", "i0", "i4", "i5"]  # queued by margin, then new in import order
    assert store.get_item("i1")["status"] == "resolved" and store.next_for_user("U2") == "i2"
    plans = query_plans(store, lambda: store.next_for_user("U1", exclude=["i2", "i0"]))
    queue = [" | ".join(lines) for sql, lines in plans if "FROM items INDEXED BY" in sql]
    assert len(queue) == 2  # the queued walk found nothing left, the new walk did
    assert all("items_status_priority" in plan and "TEMP B-TREE" not in plan for plan in queue)


def test_the_modal_keeps_each_channels_items_in_that_channel_from_an_index(memory_store: Store):
    store = memory_store
    store.add_items([R(f"i{n}", f"text {n}") for n in range(6)], "import")
    store.set_predictions(  # i0, i1 go to CBILL (billing is routed); i2, i3 to CMAIN; i4, i5 new
        margin_scored(
            [
                (f"i{n}", 1, label, 0.5 + n / 100, [[label, 0.6], ["x", 0.4]])
                for n, label in ((0, "billing"), (1, "billing"), (2, "bug"), (3, "praise"))
            ]
        ),
        threshold=0.9,
        strategy="margin",
    )
    store.record_post("i1", "CBILL", "1.1", "uncertain", 1, "billing", 0.51)
    routes = {"billing": "CBILL"}

    def walk(user: str, channels: list[str]) -> list[str]:
        seen: list[str] = []
        while (item := store.next_in_channels(user, channels, routes, "CMAIN", seen)) is not None:
            seen.append(item)
        return seen

    assert walk("U1", ["CMAIN"]) == ["i2", "i3", "i4", "i5"]  # queued by margin, then new
    assert walk("U1", ["CBILL"]) == ["i1", "i0"]  # the open post first
    assert walk("U1", ["CMAIN", "CBILL"]) == ["i1", "i0", "i2", "i3", "i4", "i5"]
    assert walk("U1", ["COTHER"]) == [] and walk("U1", []) == []
    assert not store.has_answered_in("U1", "CBILL")
    store.record_answer("i1", "U1", "billing", source="button", dedupe_key="k1")
    assert store.has_answered_in("U1", "CBILL") and not store.has_answered_in("U2", "CBILL")
    assert walk("U1", ["CBILL"]) == ["i0"]
    plans = query_plans(store, lambda: store.next_in_channels("U1", ["CMAIN"], routes, "CMAIN"))
    queue = [" | ".join(lines) for sql, lines in plans if "FROM items INDEXED BY" in sql]
    assert queue and all("items_status_priority" in p and "TEMP B-TREE" not in p for p in queue)


def _tables_and_journal(path: Path) -> tuple[list[str], str]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]
        return names, conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def test_another_programs_database_is_refused_before_anything_is_written(tmp_path: Path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); CREATE TABLE orders (id);"
        "INSERT INTO users (name) VALUES ('ana');"
    )
    conn.close()
    before = _tables_and_journal(path)
    with pytest.raises(StoreError) as caught:
        Store.open(path)
    assert str(caught.value) == (
        f"{path} is not a slack-hitl database (it has tables orders, users); "
        "point --db/HITL_DB at another file"
    )
    assert _tables_and_journal(path) == before == (["orders", "users"], "delete")


def test_a_table_name_both_use_is_refused_without_adding_the_migrations_table(tmp_path: Path):
    path = tmp_path / "clash.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (sku TEXT, price REAL)")
    conn.close()
    with pytest.raises(StoreError, match=r"is not a slack-hitl database \(it has table items\)"):
        Store.open(path)
    assert _tables_and_journal(path) == (["items"], "delete")


def test_an_empty_file_or_one_left_by_a_failed_first_open_becomes_a_database(tmp_path: Path):
    empty = tmp_path / "empty.db"
    empty.touch()
    left = tmp_path / "left.db"
    conn = sqlite3.connect(left)  # what a first open that failed in m001 leaves: the table only
    conn.execute("CREATE TABLE _sqlite_migrations (migration_set TEXT, name TEXT, applied_at TEXT)")
    conn.close()
    for path in (empty, left):
        with Store.open(path) as store:
            assert store.schema_version() == list(KNOWN_MIGRATIONS)


def test_a_database_another_process_writes_to_is_reported_as_locked_not_as_foreign(
    db_path: Path,
):
    Store.open(db_path).close()
    other = sqlite3.connect(db_path, isolation_level=None)  # the other process's connection
    # Out of WAL mode (as a tool may leave it), SQLite reports the lock at once instead of
    # after the 10 s busy timeout: opening must turn WAL back on, which the writer blocks.
    other.execute("PRAGMA journal_mode = DELETE")
    other.execute("BEGIN IMMEDIATE")
    other.execute(
        "INSERT INTO runs (kind, started_at, status, detail) VALUES ('x', 't', 'r', '{}')"
    )
    try:
        with pytest.raises(StoreError) as caught:
            Store.open(db_path)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert str(caught.value) == (
        f"{db_path} is locked by another process writing to it (a hitl import or serve?); "
        "try again when it is done"
    )


def test_a_folder_given_as_the_database_is_not_called_a_foreign_database(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(StoreError) as caught:
        Store.open(folder)
    assert "not a slack-hitl database" not in str(caught.value)
    assert str(caught.value).startswith(f"{folder}: cannot open it (unable to open database file)")


def test_the_stats_count_every_answer_not_only_the_50_most_active_peoples(db_path: Path):
    # answers_by_user keeps the 50 most active people (for the list); the totals of
    # /hitl stats and hitl stats added up that list: 60 people answering said 50.
    with Store.open(db_path) as store:
        store.add_items([R(f"i{n}", f"text {n}") for n in range(60)], "api")
        for n in range(60):
            store.record_answer(f"i{n}", f"U{n:03d}", "bug", source="button", dedupe_key=f"k{n}")
        assert len(store.answers_by_user("2000-01-01")) == 50
        text = stats_text(store, Settings(), datetime.now(UTC))
    assert "*Answers today:* 60 (" in text and "*Answers this week:* 60 (" in text
    assert text.count("1 label and 10 others\n") == 2


def test_the_stats_say_how_many_others_answered_and_none_when_fifty_did(db_path: Path):
    # "and others" was said whenever the list held 50 people: also when they were everyone
    with Store.open(db_path) as store:
        store.add_items([R(f"i{n}", f"text {n}") for n in range(51)], "api")
        for n in range(50):
            store.record_answer(f"i{n}", f"U{n:03d}", "bug", source="button", dedupe_key=f"k{n}")
        fifty = stats_text(store, Settings(), datetime.now(UTC))
        store.record_answer("i50", "U050", None, source="button", dedupe_key="k50")
        more = stats_text(store, Settings(), datetime.now(UTC))
    assert "other" not in fifty and fifty.count("<@U049> 1 label\n") == 2
    assert more.count("<@U049> 1 label and 1 other\n") == 2


def test_the_stats_write_a_thousand_items_decided_by_vote_with_a_separator(db_path: Path):
    # "Votes for the winner: 100% on 1000 items" where every other count read "1,000"
    with Store.open(db_path) as store:
        store.add_items([R(f"i{n}", f"text {n}") for n in range(1000)], "api")
        for n in range(1000):
            for user in ("U0A", "U0B"):
                key = f"{user}{n}"
                store.record_answer(
                    f"i{n}", user, "bug", source="button", dedupe_key=key, votes_needed=2
                )
        text = stats_text(store, Settings(votes=2), datetime.now(UTC))
    assert text.endswith("*Votes for the winner:* 100% on 1,000 items decided by vote")


def test_two_processes_upgrading_one_database_at_once_both_open_it(db_path: Path):
    """A second opener that read the pending migrations before the first applied them failed
    half way ("duplicate column name: priority"). The first opener here holds the write lock;
    the second starts its upgrade (its first write waits for the lock), the first applies every
    migration and commits, and the second must then open the database, not fail."""
    import threading

    old = Database(db_path)
    migrations.apply(old, stop_before="m009_lighter_inserts")
    old.execute("PRAGMA journal_mode=WAL")  # as Store.open leaves every database
    old.conn.close()
    first = Store(Database(sqlite3.connect(str(db_path), timeout=10, check_same_thread=False)))
    second_conn = sqlite3.connect(str(db_path), timeout=10, check_same_thread=False)
    writing = threading.Event()

    def trace(statement: str) -> None:  # in the second's thread, as each statement starts
        if statement.lstrip().upper().startswith(("BEGIN", "ALTER", "CREATE", "DROP", "INSERT")):
            writing.set()

    second_conn.set_trace_callback(trace)
    outcome: list[BaseException | None] = []

    def second_opens() -> None:
        try:
            Store(Database(second_conn)).migrate()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            outcome.append(exc)

    with first._immediate():
        opener = threading.Thread(target=second_opens)
        opener.start()
        assert writing.wait(30), "the second opener never began to write"
        first.migrate()  # inside the held transaction: every migration, then one commit
    opener.join(30)
    assert outcome == [None], outcome
    with Store.open(db_path) as store:
        assert store.schema_version() == list(KNOWN_MIGRATIONS)
        assert store.integrity_check() == "ok"
    first.db.conn.close()
    second_conn.close()


@contextmanager
def another_server(db_path: Path) -> Iterator[subprocess.Popen]:
    """Another process holding ``db_path``'s server lock, as a running `hitl serve` does (its
    pid and host written in the lock file), until the block ends."""
    holds = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(lock_path(db_path.resolve()))!r}, os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.pwrite(fd, f'pid {os.getpid()} on testhost'.encode(), 0)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", holds], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout.readline() == "held\n"
        yield server
    finally:
        server.communicate("")


def test_an_upgrade_waits_until_no_server_runs_on_the_database(db_path: Path):
    """A new `hitl stats` upgraded the database under a running older server: the server's
    queries then failed on a dropped index, and items it stored went uncounted for good. While
    another process holds the server lock, opening a database that needs migrations is refused
    in one line, and nothing is changed; once that server is gone the upgrade runs."""
    old = Database(db_path)
    migrations.apply(old, stop_before="m019_post_attempts")
    old.conn.close()
    with another_server(db_path) as server:
        pending = len(KNOWN_MIGRATIONS) - KNOWN_MIGRATIONS.index("m019_post_attempts")
        with pytest.raises(StoreError) as refused:
            Store.open(db_path)
        assert str(refused.value) == (
            f"{db_path} needs an upgrade to this slack-hitl ({pending} migrations), but a hitl"
            " server or"
            f" demo runs on it (pid {server.pid} on testhost): stop it first, then run the new"
            " version"
        )
        with contextlib.closing(Database(db_path)) as old:
            applied = [m.name for m in migrations.applied(old)]
        assert applied[-1] == "m018_stop_changed"
    with Store.open(db_path) as store:
        assert store.schema_version() == list(KNOWN_MIGRATIONS)


def write_a_burst(store: Store, commits: int, start: int = 0) -> None:
    """``commits`` commits of 10 items, each text about two pages long."""
    for c in range(start, start + commits):
        rows = [R(f"b{c}-{k}", f"burst {c} {k} " + "word " * 1600) for k in range(10)]
        store.add_items(rows, source="api")


def burst_past_the_limit(db_path: Path) -> tuple[Store, Checkpointer, Path]:
    """A server's store whose log a burst of writes took past JOURNAL_SIZE_LIMIT, none of it
    copied back yet (the server's commits leave the log to its Checkpointer)."""
    store = Store.open(db_path)
    checkpointer = Checkpointer(store.db)
    checkpointer.take_over()
    page_size = store.db.execute("PRAGMA page_size").fetchone()[0]
    write_a_burst(store, JOURNAL_SIZE_LIMIT // page_size // 20 + 20)
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.stat().st_size > JOURNAL_SIZE_LIMIT
    return store, checkpointer, wal


def test_after_a_burst_the_next_commit_cuts_the_log_back_to_the_limit(db_path: Path):
    """The log kept its largest size until the server stopped (114 MB after 9,000 predicts on
    a 3.7 MB database): once a checkpoint copied all of it, the next commit starts it afresh
    and cuts the file back to JOURNAL_SIZE_LIMIT."""
    store, checkpointer, wal = burst_past_the_limit(db_path)
    busy, log, copied = checkpointer.run()
    assert busy == 0 and copied == log > 0
    write_a_burst(store, 1, start=10_000)
    assert wal.stat().st_size <= JOURNAL_SIZE_LIMIT
    assert store.count_items()["new"] > 0 and store.integrity_check() == "ok"
    store.close()


def test_an_idle_servers_checkpointer_truncates_a_grown_log(db_path: Path):
    """No write comes after the burst: the checkpoint that finds nothing new since the last
    one (all copied) truncates the log's file."""
    store, checkpointer, wal = burst_past_the_limit(db_path)
    checkpointer.run()  # copies the burst back
    assert wal.stat().st_size > JOURNAL_SIZE_LIMIT  # the log is reused, not shrunk
    assert checkpointer.run()[0] == 0  # nothing new since: the log is truncated
    assert wal.stat().st_size == 0
    n_items = store.count_items()["new"]
    store.close()
    with Store.open(db_path) as again:
        assert again.count_items()["new"] == n_items and again.integrity_check() == "ok"


def test_the_checkpointer_does_not_create_a_deleted_database(db_path: Path):
    """The server's checkpointer re-created an empty file at the path of a deleted database
    (every second, on a connection of its own)."""
    store = Store.open(db_path)
    checkpointer = Checkpointer(store.db)
    for name in (db_path.name, db_path.name + "-wal", db_path.name + "-shm"):
        db_path.with_name(name).unlink()
    with pytest.raises(sqlite3.OperationalError):
        checkpointer.run()
    assert not db_path.exists()
    store.close()


def test_an_empty_database_a_server_runs_on_is_not_said_to_need_an_upgrade(db_path: Path):
    """The database was deleted under a running server and an empty file appeared at its path:
    the CLI said it "needs an upgrade to this slack-hitl (20 migrations)"."""
    db_path.touch()
    with another_server(db_path) as server:
        with pytest.raises(StoreError) as refused:
            Store.open(db_path)
        assert str(refused.value) == (
            f"{db_path} is empty (a new database), but a hitl server or demo runs on it (pid"
            f" {server.pid} on testhost): was its database deleted or replaced while it ran?"
            " Stop it, put the database back, and start it again"
        )
