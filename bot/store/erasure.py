"""Deleting items and everything stored about them (`hitl delete`): an erasure request, a
ticket where a customer pasted a card number, an import of the wrong file.

One transaction removes the item and every row that names it (answers, label, label history,
reviews, gold, posts, webhook deliveries, the stop set it was in), with SQLite's
``secure_delete`` on, so the freed pages are overwritten rather than left to be read from the
file. What stays: that the item was deleted, by whom, when and why (``deleted_items``: its id,
no text), and the Slack messages that showed it (``erased_posts``: channel and ts) until
``hitl serve`` has deleted them (``bot.slack.redraw``).

The people's answer counts (``answered_by_user``, which triggers keep as answers arrive) lose
what the deleted items gave them, so `hitl stats` adds up to the answers that remain.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from bot.errors import StoreError

# Every table whose rows name an item (their column), in an order the foreign keys allow.
ITEM_TABLES = (
    ("answers", "item_id"),
    ("labels", "item_id"),
    ("label_history", "item_id"),
    ("reviews", "item_id"),
    ("gold", "item_id"),
    ("posts", "item_id"),
    ("post_attempts", "item_id"),
    ("deliveries", "item_id"),
    ("legacy_text_ids", "id"),
)
CHUNK = 500  # ids per statement: far below SQLite's limit of bound parameters
REASON_CHARS = 500  # of a deletion's reason, as kept
_UNSHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]+")


def one_line(text: str) -> str:
    """A reason as kept: control characters, line breaks and direction overrides (which a
    terminal would obey when it is shown back) become one space."""
    return _UNSHOWN.sub(" ", text).strip()


@dataclass
class Deleted:
    """What ``delete_items`` removed: rows per table, the Slack messages left for the server
    to delete, whether the stop set was dropped (it is drawn again), and the model versions
    recorded since the first of the items was labeled (they may have trained on its text)."""

    item_ids: list[str]
    rows: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    stop_set_dropped: bool = False
    models: list[int] = field(default_factory=list)


class ErasureMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now`` and ``self._immediate``."""

    db: Database
    now: Callable[[], str]
    _immediate: Callable[[], AbstractContextManager[None]]

    def delete_items(self, item_ids: Sequence[str], *, user_id: str, reason: str = "") -> Deleted:
        """Delete each of ``item_ids`` and every row about it, in one transaction: all, or
        (an unknown id) none, with the ``StoreError`` naming the ids."""
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            raise StoreError("no item id given")
        reason = one_line(reason)[:REASON_CHARS]
        now = self.now()
        done = Deleted(ids)
        conn = self.db.conn
        conn.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed, not left readable
        try:
            with self._immediate():
                chunks = [ids[n : n + CHUNK] for n in range(0, len(ids), CHUNK)]
                found: set[str] = set()
                for chunk in chunks:
                    found.update(
                        r[0] for r in conn.execute(_in("SELECT id FROM items", chunk), chunk)
                    )
                if unknown := [i for i in ids if i not in found]:
                    shown = ", ".join(map(repr, unknown[:5])) + (" …" if len(unknown) > 5 else "")
                    raise StoreError(f"no item with id {shown}; nothing deleted")
                first_label = None
                for chunk in chunks:
                    self._uncount_answers(chunk)
                    (oldest,) = conn.execute(
                        _in("SELECT min(resolved_at) FROM labels", chunk, "item_id"), chunk
                    ).fetchone()
                    if oldest is not None and (first_label is None or oldest < first_label):
                        first_label = oldest
                    done.messages += conn.execute(
                        "INSERT OR IGNORE INTO erased_posts (channel, ts, erased_at)"
                        + _in(" SELECT channel, ts, ? FROM posts", chunk, "item_id"),
                        [now, *chunk],
                    ).rowcount
                    in_stop = conn.execute(
                        _in("SELECT 1 FROM stop_set", chunk, "item_id") + " LIMIT 1", chunk
                    ).fetchone()
                    if in_stop is not None and not done.stop_set_dropped:
                        # The models are compared on the set as drawn: a hole in it would
                        # misalign every stored prediction. The next update draws a new one.
                        conn.execute("DELETE FROM stop_set")
                        done.stop_set_dropped = True
                    for table, column in ITEM_TABLES:
                        n = conn.execute(_in(f"DELETE FROM {table}", chunk, column), chunk).rowcount
                        done.rows[table] = done.rows.get(table, 0) + n
                    n = conn.execute(_in("DELETE FROM items", chunk), chunk).rowcount
                    done.rows["items"] = done.rows.get("items", 0) + n
                    conn.executemany(
                        "INSERT OR REPLACE INTO deleted_items (item_id, user_id, reason,"
                        " created_at) VALUES (?, ?, ?, ?)",
                        [(i, user_id, reason, now) for i in chunk],
                    )
                if first_label is not None:
                    done.models = [
                        r[0]
                        for r in conn.execute(
                            # to the second: a model's time has none finer, and one made in
                            # the second its label was decided may have read it
                            "SELECT version FROM models"
                            " WHERE julianday(created_at) >= julianday(substr(?, 1, 19))"
                            " ORDER BY version",
                            [first_label],
                        )
                    ]
        finally:
            conn.execute("PRAGMA secure_delete = OFF")
        return done

    def _uncount_answers(self, chunk: list[str]) -> None:
        """Take the items' answers out of ``answered_by_user``: per person and item, their
        latest counted answer (not imported, not late) counted 1 unless it was an Undo, and
        1 more to ``labeled`` if it gave a label (the triggers' rules, undone)."""
        rows = self.db.conn.execute(
            "SELECT a.user_id, a.source != 'undo', a.source != 'undo' AND a.label IS NOT NULL"
            " FROM answers a WHERE a.id IN (SELECT max(b.id) FROM answers b"
            + _in(" WHERE b.source != 'import' AND b.late = 0", chunk, "b.item_id", and_=True)
            + " GROUP BY b.item_id, b.user_id)",
            chunk,
        ).fetchall()
        totals: dict[str, list[int]] = {}
        for user, counted, labeled in rows:
            total = totals.setdefault(user, [0, 0])
            total[0] += counted
            total[1] += labeled
        self.db.conn.executemany(
            "UPDATE answered_by_user SET n = max(n - ?, 0), labeled = max(labeled - ?, 0)"
            " WHERE user_id = ?",
            [(n, labeled, user) for user, (n, labeled) in totals.items()],
        )

    def deleted_item(self, item_id: str) -> dict[str, str] | None:
        """When, by whom and why ``item_id`` was deleted (None: it was not)."""
        row = self.db.execute(
            "SELECT user_id, reason, created_at FROM deleted_items WHERE item_id = ?", [item_id]
        ).fetchone()
        return None if row is None else {"user_id": row[0], "reason": row[1], "at": row[2]}

    def delete_again(self, deleted: Sequence[tuple[str, str, str, str]]) -> list[str]:
        """After a restore: ``deleted`` (item id, user, reason, time) are the deletions the
        database that was there records. Those items the restored one holds are deleted again
        (its Slack messages too), and every record is kept as it was made, so the ids stay out
        of imports and the API. Returns the ids deleted again."""
        ids = [row[0] for row in deleted]
        present = sorted(self.existing_item_ids(ids)) if ids else []
        self.db.conn.execute("PRAGMA secure_delete = ON")
        try:
            with self._immediate():  # one transaction: the deletions and their records
                if present:
                    self.delete_items(present, user_id="restore", reason="deleted again")
                self.db.conn.executemany(
                    "INSERT OR REPLACE INTO deleted_items (item_id, user_id, reason, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    list(deleted),
                )
        finally:
            self.db.conn.execute("PRAGMA secure_delete = OFF")
        return present

    def find_items(
        self, needle: str, limit: int | None = None, *, part: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every item (any status) whose text, meta values or id holds ``needle`` as a whole
        word (``part``: anywhere, inside a word too), compared in one Unicode form and
        casefolded ("STRASSE" finds "Straße", a name typed composed finds it decomposed),
        oldest first, as (id, status, source, text, meta, created_at, label): what an erasure
        or access request about a person needs. A whole word, so "ann@example.com" does not
        find "joann@example.com". Reads every item: for the CLI."""
        wanted = _folded(needle)
        pattern = None if part else re.compile(rf"(?<!\w){re.escape(wanted)}(?!\w)")

        def holds(value: str | None) -> bool:
            if value is None:
                return False
            folded = _folded(value)
            return wanted in folded if pattern is None else pattern.search(folded) is not None

        def meta_holds(meta: str | None) -> bool:
            return any(holds(value) for value in _meta_values(meta))

        conn = self.db.conn
        conn.create_function("hitl_holds", 1, holds, deterministic=True)
        conn.create_function("hitl_meta_holds", 1, meta_holds, deterministic=True)
        rows = conn.execute(
            "SELECT i.id, i.status, i.source, i.text, i.meta, i.created_at, l.label"
            " FROM items i LEFT JOIN labels l ON l.item_id = i.id"
            " WHERE hitl_holds(i.text) OR hitl_meta_holds(i.meta) OR hitl_holds(i.id)"
            " ORDER BY i.rowid" + (" LIMIT ?" if limit is not None else ""),
            [limit] if limit is not None else [],
        )
        names = ("id", "status", "source", "text", "meta", "created_at", "label")
        for row in rows:
            yield dict(zip(names, row, strict=True))

    def empty_log(self) -> bool:
        """Checkpoint and truncate the write-ahead log, which holds older copies of the pages
        (a deleted item's text among them); False when another connection's read kept it from
        being emptied."""
        try:
            busy, _log, _done = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return False
        return not busy

    def has_deleted_items(self) -> bool:
        """Whether `hitl delete` ever deleted an item (an import then looks its ids up)."""
        return self.db.execute("SELECT 1 FROM deleted_items LIMIT 1").fetchone() is not None

    def deleted_among(self, item_ids: Sequence[str]) -> set[str]:
        """Which of ``item_ids`` were deleted (`hitl delete`)."""
        ids = list(item_ids)
        found: set[str] = set()
        for n in range(0, len(ids), CHUNK):
            chunk = ids[n : n + CHUNK]
            found.update(
                r[0]
                for r in self.db.conn.execute(
                    _in("SELECT item_id FROM deleted_items", chunk, "item_id"), chunk
                )
            )
        return found

    def erased_posts(self, limit: int = 50) -> list[dict[str, str | int]]:
        """Slack messages of deleted items still to delete, oldest first."""
        return [
            {"id": r[0], "channel": r[1], "ts": r[2]}
            for r in self.db.execute(
                "SELECT id, channel, ts FROM erased_posts ORDER BY id LIMIT ?", [limit]
            )
        ]

    def forget_erased_post(self, post_id: int) -> None:
        """The message is deleted from Slack (or gone already)."""
        with self._immediate():
            self.db.execute("DELETE FROM erased_posts WHERE id = ?", [post_id])


def _in(sql: str, chunk: list[str], column: str = "id", *, and_: bool = False) -> str:
    marks = ",".join("?" * len(chunk))
    return f"{sql} {'AND' if and_ else 'WHERE'} {column} IN ({marks})"


def deletions_in(path: str | Path) -> list[tuple[str, str, str, str]]:
    """The deletions (item id, user, reason, time) the database at ``path`` records, read
    only; none from a database made before `hitl delete` existed (or not one of ours)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return conn.execute(
                "SELECT item_id, user_id, reason, created_at FROM deleted_items"
            ).fetchall()
    except sqlite3.Error:  # no such table: nothing was ever deleted there
        return []


def _folded(text: str) -> str:
    """One form to compare: NFC, casefolded."""
    return unicodedata.normalize("NFC", text).casefold()


def _meta_values(meta: str | None) -> Iterator[str]:
    """The text of every value of an item's meta (JSON), nested ones too: what a person wrote,
    not its JSON escapes ("CORP\\jdoe") nor the field names."""
    try:
        stack = [json.loads(meta or "{}")]
    except ValueError:
        yield meta or ""
        return
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif value is not None and not isinstance(value, bool):
            yield str(value)


def imported_into(path: str | Path) -> int:
    """How many items of the database at ``path`` came from outside `hitl demo` (`hitl
    import`, the CLI: any source but the demo's own and its producer API's), read only; 0
    for a file that is no database of ours."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return conn.execute(
                "SELECT count(*) FROM items WHERE source NOT IN ('demo', 'api', 'gold')"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0
