"""Two connections that write: the server's event loop, and the worker threads that draw a
stop set, take a retrain's lock or store a run, each on a connection of its own. A write
that begins as a read (sqlite-utils reads the table's columns before it inserts) must not
fail with "database is locked" when the other connection commits in between: in WAL mode
SQLite refuses that upgrade at once, without waiting (SQLITE_BUSY_SNAPSHOT), so every write
transaction of the store takes the write lock when it begins."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.store import Store
from tests.bot.harness import Item, seed


@contextmanager
def commit_from_another_connection_before(
    store: Store, path: Path, statement: str
) -> Iterator[list[str]]:
    """When ``store``'s connection first runs a statement starting ``statement``, another
    connection commits a write first (or is told the store holds the write lock)."""
    events: list[str] = []
    other = sqlite3.connect(path, isolation_level=None, timeout=0)

    def trace(sql: str) -> None:
        if events or not sql.lstrip().upper().startswith(statement):
            return
        try:
            other.execute(
                "INSERT INTO locks (name, owner, acquired_at, expires_at)"
                " VALUES ('other', 'other', '', '')"
            )
            events.append("the other connection committed")
        except sqlite3.OperationalError:
            events.append("the other connection waited: the store held the write lock")

    store.db.conn.set_trace_callback(trace)
    try:
        yield events
    finally:
        store.db.conn.set_trace_callback(None)
        other.close()


WRITES: dict[str, tuple[str, Callable[[Store], object]]] = {
    "start_run": ("INSERT", lambda store: store.start_run("retrain", "test")),
    "record_post": (
        "INSERT",
        lambda store: store.record_post("i1", "C1", "1.000", "uncertain", None, None, None),
    ),
    "set_aside": ("UPDATE", lambda store: store.set_aside("i2", "channel_not_found")),
    "finish_run": ("UPDATE", lambda store: store.finish_run(1, "promoted", {})),
}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_write_is_not_refused_when_another_connection_commits_during_it(
    tmp_path: Path, name: str
):
    path = tmp_path / "hitl.db"
    seed(path, [Item("i1", "first"), Item("i2", "second")])
    statement, write = WRITES[name]
    with Store.open(path) as store:
        store.start_run("retrain", "earlier")  # run 1, for finish_run
        with commit_from_another_connection_before(store, path, statement) as events:
            write(store)  # raised "database is locked" when each began as a read
        assert events == ["the other connection waited: the store held the write lock"]
