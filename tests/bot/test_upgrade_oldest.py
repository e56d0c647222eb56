"""The oldest upgrade path, from a database the real old code wrote: tests/data/upgrade_e538492.sql
(its header says how it was made) opens with today's code as a new database does, with every
item, label and answer kept and counted as they are counted now, and a second open runs
nothing again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from bot.store import KNOWN_MIGRATIONS, Store
from tests.bot.test_upgrade_repairs import counts_hold, kept, run, upgraded_as_new

FIXTURE = Path(__file__).parents[1] / "data" / "upgrade_e538492.sql"


def migrations_recorded(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT name, applied_at FROM _sqlite_migrations ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_a_database_the_oldest_store_wrote_opens_as_a_new_one(tmp_path: Path):
    db = tmp_path / "hitl.db"
    conn = sqlite3.connect(db)
    conn.executescript(FIXTURE.read_text())
    conn.close()
    before = kept(db)
    assert len(migrations_recorded(db)) == 6

    Store.open(db).close()
    recorded = migrations_recorded(db)
    assert sorted(name for name, _ in recorded) == sorted(KNOWN_MIGRATIONS)
    upgraded_as_new(db, tmp_path, old_item_triggers=False)  # opens it again
    assert migrations_recorded(db) == recorded  # nothing run or recorded twice
    assert kept(db) == before
    counts_hold(db)

    exported = run(db, "export")
    assert exported.exit_code == 0, exported.output
    labels = {row["id"]: row["label"] for row in map(json.loads, exported.output.splitlines())}
    assert labels == {item_id: label for item_id, label, *_ in before["labels"]}
    answers = run(db, "export", "--answers")
    assert answers.exit_code == 0, answers.output
    rows = [json.loads(line) for line in answers.output.splitlines()]
    late = {(row["item_id"], row["user_id"]): row["late"] for row in rows}
    assert len(late) == len(before["answers"]) == 6
    # U0RAJ clicked after U0ANA's click had decided demo-0438: kept, marked late, counted nowhere
    assert [key for key, is_late in late.items() if is_late] == [("demo-0438", "U0RAJ")]
    conn = sqlite3.connect(db)
    try:
        by_person = conn.execute("SELECT user_id, n FROM answered_by_user ORDER BY 1").fetchall()
    finally:
        conn.close()
    assert by_person == [("U0ANA", 1), ("U0SIMKIM", 1), ("U0SIMSAM", 1)]
    stats = run(db, "stats")
    assert stats.exit_code == 0, stats.output
    assert (
        "Items: 2 waiting · 1 posted · 5 resolved · 2 decided by the model · 0 skipped"
        in stats.output
    )
