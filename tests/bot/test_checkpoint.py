"""The write-ahead log goes back into the database file in a worker thread, never inside a
commit on the server's event loop (bot/store/core.py: Checkpointer)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.store import Checkpointer, Store

SQLITE_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default threshold


@dataclass
class Row:
    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    label: str | None = None


def write_pages(store: Store, commits: int, start: int = 0) -> None:
    """``commits`` commits of 10 items, each text about two pages long."""
    for c in range(start, start + commits):
        rows = [Row(f"i{c}-{k}", f"ticket {c} {k} " + "word " * 1600) for k in range(10)]
        store.add_items(rows, source="import")


def in_a_thread(checkpointer: Checkpointer) -> tuple[tuple[int, int, int], str]:
    result: list = []

    def run() -> None:
        result.append((checkpointer.run(), threading.current_thread().name))

    thread = threading.Thread(target=run, name="worker")
    thread.start()
    thread.join()
    return result[0]


def test_the_loops_commits_leave_the_log_to_the_checkpointer_in_a_worker_thread(tmp_path: Path):
    store = Store.open(tmp_path / "hitl.db")
    checkpointer = Checkpointer(store.db)
    checkpointer.take_over()
    wal = tmp_path / "hitl.db-wal"
    write_pages(store, 150)  # ~3,000 pages of log
    # No commit copied the log back: SQLite's own checkpoint would have, in the commit that
    # passed 1,000 pages, and the log would have started again from its beginning.
    page_size = store.db.execute("PRAGMA page_size").fetchone()[0]
    assert wal.stat().st_size > 2.5 * SQLITE_AUTOCHECKPOINT_PAGES * page_size
    (busy, log, copied), where = in_a_thread(checkpointer)
    assert (busy, where) == (0, "worker") and copied == log > 2.5 * SQLITE_AUTOCHECKPOINT_PAGES
    write_pages(store, 1, start=150)  # the next commit starts the log afresh
    (busy, log, copied), _ = in_a_thread(checkpointer)
    assert busy == 0 and copied == log < 50
    assert in_a_thread(checkpointer)[0] == (0, log, log)  # nothing new: nothing copied again
    assert store.count_items()["new"] == 1510  # every item is there, read back
    store.close()
    with Store.open(tmp_path / "hitl.db") as again:
        assert again.count_items()["new"] == 1510 and again.integrity_check() == "ok"


def test_an_in_memory_store_has_no_log_to_checkpoint():
    with Store.memory() as store:
        checkpointer = Checkpointer(store.db)
        checkpointer.take_over()
        write_pages(store, 2)
        assert checkpointer.run() == (0, 0, 0)
