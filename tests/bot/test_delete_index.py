"""`hitl delete` held the write lock for tens of seconds once `reviews` was large (a `hitl
labels retire` of a big label writes one review per item): with foreign keys on, deleting an
item makes SQLite look for rows that still name it in every table that references items, and
reviews.item_id (its only index partial) and stop_set.item_id had no index that check can use,
so each deleted item read all of them: 5,000 items at 40k reviews took 10-16 s, and every
click on the running server got 503 meanwhile. m044 adds the indexes."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from click.testing import CliRunner
from sqlite_utils import Database

from bot.cli import cli
from bot.store import Store, migrations


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args])


def referencing_columns(conn: sqlite3.Connection) -> dict[str, list[tuple[str, str]]]:
    """Each parent table a foreign key names, and the (table, column) pairs that reference it."""
    tables = [
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]
    found: dict[str, list[tuple[str, str]]] = {}
    for table in tables:
        for row in conn.execute(f"PRAGMA foreign_key_list('{table}')"):
            found.setdefault(row[2], []).append((table, row[3]))
    return found


def unindexed_checks(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Per parent table, the plan lines of the foreign-key checks of deleting one of its rows
    that read a whole table instead of searching an index."""
    conn.execute("PRAGMA foreign_keys = ON")
    scans = {}
    for parent, children in referencing_columns(conn).items():
        [key] = [r[1] for r in conn.execute(f"PRAGMA table_info('{parent}')") if r[5]]
        plan = [
            r[3]
            for r in conn.execute(f"EXPLAIN QUERY PLAN DELETE FROM {parent} WHERE {key} = ?", ["x"])
        ]
        # each child table's check is in the plan, as a search of an index or as a scan
        assert all(any(f" {table} " in f"{line} " for line in plan) for table, _ in children)
        scans[parent] = [line for line in plan if not line.startswith("SEARCH")]
    return scans


def test_every_column_that_references_an_item_has_an_index_the_delete_searches(db_path: Path):
    with Store.open(db_path) as store:
        conn = store.db.conn
        children = referencing_columns(conn)
        assert set(children) == {"items"}  # the only parent: what a delete of items checks
        assert {"reviews", "stop_set", "answers", "labels"} <= {t for t, _ in children["items"]}
        assert unindexed_checks(conn) == {"items": []}
        for table, column in children["items"]:
            [(_, _, _, line)] = conn.execute(
                f"EXPLAIN QUERY PLAN SELECT 1 FROM {table} WHERE {column} = ?", ["x"]
            ).fetchall()
            assert line.startswith(f"SEARCH {table} USING") and "INDEX" in line, line


def test_a_database_from_before_gets_the_indexes_when_upgraded(db_path: Path):
    with contextlib.closing(Database(db_path)) as old:
        migrations.apply(old, stop_before="m044_item_child_indexes")
        assert sorted(unindexed_checks(old.conn)["items"]) == ["SCAN reviews", "SCAN stop_set"]
    with Store.open(db_path) as store:
        assert unindexed_checks(store.db.conn) == {"items": []}


def add_reviews(store: Store, n: int) -> None:
    """``n`` items (not deleted below), each with a decided review: a retire's kind."""
    rows = [(f"r{k}", "some text", "import", "2026-01-01T00:00:00") for k in range(n)]
    with store.db.conn:
        store.db.conn.executemany(
            "INSERT INTO items (id, text, source, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            [(i, text, source, at, at) for i, text, source, at in rows],
        )
        store.db.conn.executemany(
            "INSERT INTO reviews (item_id, reason, detail, created_at, decided_at)"
            " VALUES (?, 'retired', '', ?, ?)",
            [(i, at, at) for i, _, _, at in rows],
        )


def steps_to_delete(tmp_path: Path, reviews: int) -> int:
    """The SQLite steps (in thousands: a progress handler's calls) of deleting the same 300
    items from a database holding ``reviews`` reviews of other items."""
    with Store.open(tmp_path / f"reviews-{reviews}.db") as store:
        at = "2026-01-01T00:00:00"
        with store.db.conn:
            store.db.conn.executemany(
                "INSERT INTO items (id, text, source, created_at, updated_at)"
                " VALUES (?, 'text', 'import', ?, ?)",
                [(f"d{k}", at, at) for k in range(300)],
            )
        add_reviews(store, reviews)
        calls = 0

        def count() -> int:
            nonlocal calls
            calls += 1
            return 0

        store.db.conn.set_progress_handler(count, 1000)
        done = store.delete_items([f"d{k}" for k in range(300)], user_id="dpo")
        store.db.conn.set_progress_handler(None, 0)
        assert done.rows["items"] == 300
        return calls


def test_the_work_of_a_delete_does_not_grow_with_the_reviews_of_other_items(tmp_path: Path):
    few, many = steps_to_delete(tmp_path, 200), steps_to_delete(tmp_path, 6_000)
    # without an index each of the 300 items read all 6,000 reviews: 1.8M rows: ~20 times the steps
    assert many < few * 1.5, (few, many)


def test_hitl_delete_after_a_retire_of_a_big_label_deletes_the_right_rows(tmp_path: Path):
    db = tmp_path / "hitl.db"
    labels = ["billing", "bug", "praise"]
    rows = "".join(
        f"L{n},ticket number {n} about {labels[n % 3]},{labels[n % 3]}\n" for n in range(3_000)
    )
    (tmp_path / "labelled.csv").write_text("id,text,label\n" + rows)
    imported = run(db, "import", str(tmp_path / "labelled.csv"))
    assert imported.exit_code == 0, imported.output
    retired = run(db, "labels", "retire", "praise")
    assert retired.exit_code == 0, retired.output
    with Store.open(db) as store:
        reviewed = {r[0] for r in store.db.execute("SELECT item_id FROM reviews")}
    assert reviewed == {f"L{n}" for n in range(2, 3_000, 3)}

    gone = [f"L{n}" for n in range(0, 3_000, 2)]  # 1,500: every other one, 500 of them reviewed
    (tmp_path / "ids.txt").write_text("\n".join(gone) + "\n")
    done = run(db, "delete", "--ids-from", str(tmp_path / "ids.txt"), "--yes", "--reason", "gdpr")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[0] == (
        "Deleted 1,500 items: 1,500 answers, 1,500 labels, 500 reviews."
    ), done.stdout

    with Store.open(db) as store:
        conn = store.db.conn
        left = {r[0] for r in conn.execute("SELECT id FROM items")}
        assert left == {f"L{n}" for n in range(1, 3_000, 2)}
        assert {r[0] for r in conn.execute("SELECT item_id FROM reviews")} == reviewed - set(gone)
        assert {r[0] for r in conn.execute("SELECT item_id FROM deleted_items")} == set(gone)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # the database the CLI deleted in searches an index for every check
        assert unindexed_checks(conn) == {"items": []}
