"""What SQLite plans for the queries a piece of code runs: how tests and benchmarks check that
a query reads an index instead of every row. It reaches the store's connection from outside,
which only a check may do: the product never needs it."""

from __future__ import annotations

from collections.abc import Callable

from bot.store import Store


def query_plans(
    store: Store, call: Callable[[], object], kinds: tuple[str, ...] = ("SELECT",)
) -> list[tuple[str, list[str]]]:
    """(SQL, EXPLAIN QUERY PLAN lines) of every statement of ``kinds`` (SELECT by default;
    an UPDATE's plan is read as well) that ``call`` runs on ``store``."""
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        store.db.conn.set_trace_callback(None)
    selects = dict.fromkeys(s for s in seen if s.lstrip().upper().startswith(kinds))
    return [
        (sql, [row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + sql)]) for sql in selects
    ]
