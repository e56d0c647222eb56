"""`hitl delete` takes an item out of the predictions "when to stop" keeps by item (since
07f30c8 a check's predictions are a JSON object by item id): the label a model gave an erased
item stayed in the database under its id (outside review)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from tests.bot.test_stopping_arrivals import import_rows, run_cli, tickets


def test_delete_leaves_no_prediction_of_the_item(tmp_path: Path):
    db = tmp_path / "hitl.db"
    pool = tickets("u", 60, seed=4)
    victim = pool[7]["id"] = "ticket-ana.lopez@example.com-closure"  # ids carry customers
    import_rows(db, tmp_path / "u.jsonl", pool, labeled=False)
    import_rows(db, tmp_path / "l.jsonl", tickets("l", 40, seed=3), labeled=True)
    run_cli(db, "retrain")

    def predictions() -> list[dict[str, str]]:
        with closing(sqlite3.connect(db)) as conn:
            rows = conn.execute("SELECT predictions FROM stop_checks WHERE predictions LIKE '{%'")
            return [json.loads(p) for (p,) in rows]

    before = predictions()
    assert before and all(victim in kept for kept in before)  # the item was in the sample
    run_cli(db, "delete", "--yes", "--reason", "erasure request", victim)
    after = predictions()
    assert len(after) == len(before)
    for was, now in zip(before, after, strict=True):
        assert victim not in now
        assert now == {item: label for item, label in was.items() if item != victim}
    with closing(sqlite3.connect(db)) as conn:  # nowhere but in the record that it was deleted
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        holding = {
            table
            for table in tables
            for (column,) in conn.execute(f"SELECT name FROM pragma_table_info('{table}')")
            if conn.execute(
                f'SELECT 1 FROM "{table}" WHERE CAST("{column}" AS TEXT) LIKE ? LIMIT 1',
                [f"%{victim}%"],
            ).fetchone()
        }
    assert holding == {"deleted_items"}
