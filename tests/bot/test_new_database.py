"""A new database gets what every migration leaves in an empty one, replayed in one go
(``migrations.create_new``), not the migrations one after another: the two must not differ."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from bot.store import Store
from bot.store.migrations import KNOWN_MIGRATIONS, migrations
from tests.bot.harness import Item


def contents(conn: sqlite3.Connection) -> dict[str, Any]:
    """Everything in the database but the time each migration was applied: its schema, every
    table's rows (AUTOINCREMENT's counters among them), and each table's indexes in the order
    SQLite's planner meets them."""
    schema = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    ).fetchall()
    tables = [name for kind, name, _, _ in schema if kind == "table"]
    rows = {
        table: sorted(conn.execute(f"SELECT * FROM [{table}]").fetchall(), key=repr)
        for table in tables
        if table != migrations.migrations_table
    }
    indexes = {table: conn.execute(f"PRAGMA index_list([{table}])").fetchall() for table in tables}
    columns = {table: conn.execute(f"PRAGMA table_xinfo([{table}])").fetchall() for table in tables}
    applied = conn.execute(
        f"SELECT migration_set, name FROM {migrations.migrations_table} ORDER BY rowid"
    ).fetchall()
    return {
        "schema": schema,
        "rows": rows,
        "indexes": indexes,
        "columns": columns,
        "applied": applied,
    }


def upgraded_one_at_a_time(path: Path) -> dict[str, Any]:
    """The database an older file becomes: the first migration recorded, then ``Store.open``
    applies the others one at a time, each in a transaction of the store's (the path every
    upgrade takes)."""
    first = migrations._migrations[0]  # noqa: SLF001 - sqlite-utils' own list
    with Database(path) as db:
        migrations.ensure_migrations_table(db)
        first.fn(db)
        db[migrations.migrations_table].insert(
            {"migration_set": migrations.name, "name": first.name, "applied_at": "2026-01-01"}
        )
    Store.open(path).close()
    conn = sqlite3.connect(path)
    try:
        return contents(conn)
    finally:
        conn.close()


def test_a_new_database_holds_what_an_upgrade_one_migration_at_a_time_leaves(tmp_path: Path):
    expected = upgraded_one_at_a_time(tmp_path / "upgraded.db")
    assert [name for _, name in expected["applied"]] == list(KNOWN_MIGRATIONS)
    assert expected["rows"]["label_clock"], "a table the migrations put a row in"
    Store.open(tmp_path / "new.db").close()
    conn = sqlite3.connect(tmp_path / "new.db")
    try:
        assert contents(conn) == expected
    finally:
        conn.close()
    with Store.memory() as memory:
        assert contents(memory.db.conn) == expected


def test_a_new_database_records_when_its_migrations_were_applied(tmp_path: Path):
    with Store.open(tmp_path / "new.db", clock=lambda: "unused") as store:
        applied = store.db.execute(
            f"SELECT name, applied_at FROM {migrations.migrations_table}"
        ).fetchall()
    assert [name for name, _ in applied] == list(KNOWN_MIGRATIONS)
    assert all(at.startswith("20") and at.endswith("+00:00") for _, at in applied), applied


def test_a_new_database_works_as_one_the_migrations_made(tmp_path: Path):
    """Its triggers came after the rows it starts with (they count labels and items): the
    counters start where the migrations left them and follow what is written."""
    with Store.open(tmp_path / "new.db") as store:
        clock = store.db.execute("SELECT n, start FROM label_clock").fetchall()
        assert clock == [(0, 0)]
        store.add_items([Item("a", "refund please", "billing"), Item("b", "app crashes")], "import")
        assert dict(store.db.execute("SELECT status, n FROM item_counts").fetchall()) == {
            "resolved": 1,
            "new": 1,
        }
        assert store.db.execute("SELECT n FROM label_clock").fetchall() == [(1,)]
