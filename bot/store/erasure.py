"""Deleting items and everything stored about them (`hitl delete`): an erasure request, a
ticket where a customer pasted a card number, an import of the wrong file.

One transaction removes the item and every row that names it (answers, label, label history,
reviews, gold, posts, webhook deliveries, the stop set it was in), with SQLite's
``secure_delete`` on, so the freed pages are overwritten rather than left to be read from the
file; ``Store.scrub`` then rebuilds the file, for the old copies of rows earlier writes left. What
stays: that the item was deleted, by whom, when and why (``deleted_items``: its id,
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlite_utils import Database

from bot.errors import StoreError
from bot.store.lock import other_server

_T = TypeVar("_T")

# A question whose post got no answer (``post_attempts``: the server stopped, or Slack timed
# out, during chat.postMessage) may be in Slack all the same. Deleting its item keeps that note
# as an ``erased_posts`` row whose ts is this prefix, the attempt's time and the item's id (no
# text): the redrawer looks for the message in the channel's history by its metadata and
# deletes it (``Store.lost_posts``). Such rows get ids from 0 down, so the messages to delete
# keep theirs from 1 up.
LOST = "lost "

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
SCRUB_STEPS = 10_000  # SQLite's steps between two calls of scrub's progress (~1 ms)
REASON_CHARS = 500  # of a deletion's reason, as kept
_UNSHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]+")


def one_line(text: str) -> str:
    """A reason as kept: control characters, line breaks and direction overrides (which a
    terminal would obey when it is shown back) become one space."""
    return _UNSHOWN.sub(" ", text).strip()


@dataclass
class Deleted:
    """What ``delete_items`` removed: rows per table, the Slack messages left for the server
    to delete (or to look for: a post that got no answer), whether the stop set was dropped
    (it is drawn again), and the model versions that may have trained on their text: made
    since the first of the items had a label, or whose training read saw one of their labels
    (by the count of label writes, whatever the clock said)."""

    item_ids: list[str]
    rows: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    stop_set_dropped: bool = False
    models: list[int] = field(default_factory=list)


class ErasureMixin:
    """Methods of ``Store``; they use ``self.db``, ``self.now`` and ``self._immediate``."""

    db: Database
    now: Callable[[], str]
    path: str | Path | None
    _immediate: Callable[[], AbstractContextManager[None]]
    write_result: Any

    def delete_items(
        self,
        item_ids: Sequence[str],
        *,
        user_id: str,
        reason: str = "",
        models_dir: str | Path | None = None,
        label_seqs: Mapping[int, int] | None = None,
    ) -> Deleted:
        """Delete each of ``item_ids`` and every row about it, in one transaction: all, or
        (an unknown id) none, with the ``StoreError`` naming the ids. ``models_dir``: the
        models folder, whose metadata says how many label writes each model's training read
        (None: the one beside the database, ``<db>.models``); ``label_seqs``: those counts,
        read already (``model_label_seqs``, off the event loop: a file per model version)."""
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            raise StoreError("no item id given")
        reason = one_line(reason)[:REASON_CHARS]
        if models_dir is None and self.path is not None:
            models_dir = Path(self.path).with_name(Path(self.path).name + ".models")
        trained = (  # read before the write lock: files, not rows
            dict(label_seqs) if label_seqs is not None else model_label_seqs(models_dir)
        )
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
                first_label, first_seq = None, None
                for chunk in chunks:
                    self._uncount_answers(chunk)
                    oldest = self._first_label_time(chunk)
                    if oldest is not None and (first_label is None or oldest < first_label):
                        first_label = oldest
                    (seq,) = conn.execute(
                        _in("SELECT min(seq) FROM labels", chunk, "item_id"), chunk
                    ).fetchone()
                    if seq is not None and (first_seq is None or seq < first_seq):
                        first_seq = seq
                    done.messages += conn.execute(
                        "INSERT OR IGNORE INTO erased_posts (channel, ts, erased_at)"
                        + _in(" SELECT channel, ts, ? FROM posts", chunk, "item_id"),
                        [now, *chunk],
                    ).rowcount
                    done.messages += self._keep_lost_posts(chunk, now)
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
                self._forget_predictions(found)
                # A model may hold the text when made after the first label (to the second:
                # a model's time has none finer, and one made in the second its label was
                # decided may have read it), or when its training read saw the write of a
                # current label (its ``label_seq`` at or above the label's ``seq``): the
                # count does not depend on the clock (one that ran ahead, set right, made a
                # model trained on the label look older than it). A removed label has no
                # count: the time alone says.
                done.models = [
                    version
                    for version, by_time in conn.execute(
                        "SELECT version, julianday(created_at) >= julianday(substr(?, 1, 19))"
                        " FROM models ORDER BY version",
                        [first_label],
                    )
                    if by_time
                    or (
                        first_seq is not None
                        and trained.get(version) is not None
                        and trained[version] >= first_seq
                    )
                ]
                self.write_result = done  # for a caller stopped just after the commit
        finally:
            conn.execute("PRAGMA secure_delete = OFF")
        return done

    def _forget_predictions(self, item_ids: set[str]) -> None:
        """Take the items out of the stop checks' predictions, which are kept by item id (a
        JSON object; the checks that keep them are a handful, of up to 2,000 items each): the
        label a model gave an erased item is something stored about it."""
        conn = self.db.conn
        kept = conn.execute(
            "SELECT id, predictions FROM stop_checks WHERE predictions LIKE '{%'"
        ).fetchall()
        for check_id, predictions in kept:
            found = json.loads(predictions)
            left = {item: label for item, label in found.items() if item not in item_ids}
            if len(left) != len(found):
                conn.execute(
                    "UPDATE stop_checks SET predictions = ? WHERE id = ?",
                    [json.dumps(left, ensure_ascii=False), check_id],
                )

    def _first_label_time(self, chunk: list[str]) -> str | None:
        """The first time any of the items had a label, to the second: its label's decision,
        its first label change or its first answer with a label, whichever came first. Not
        the current label's time alone: `hitl labels set` moves it, and a removed label has
        no row, while the models made before may hold the text."""
        times = [
            row[0]
            for sql in (
                "SELECT min(substr(resolved_at, 1, 19)) FROM labels",
                "SELECT min(substr(created_at, 1, 19)) FROM label_history",
                "SELECT min(substr(created_at, 1, 19)) FROM answers WHERE label IS NOT NULL",
            )
            for row in self.db.conn.execute(_in(sql, chunk, "item_id", and_="WHERE" in sql), chunk)
            if row[0] is not None
        ]
        return min(times, default=None)

    def _keep_lost_posts(self, chunk: list[str], now: str) -> int:
        """The items' posts whose outcome is unknown (``post_attempts``, deleted with them)
        stay noted, as ``LOST`` rows of ``erased_posts``, for the redrawer to look for (and
        delete, if Slack has them): how many."""
        conn = self.db.conn
        attempts = conn.execute(
            _in("SELECT item_id, channel, attempted_at FROM post_attempts", chunk, "item_id"),
            chunk,
        ).fetchall()
        kept = 0
        for item_id, channel, attempted_at in attempts:
            (low,) = conn.execute("SELECT min(min(id), 1) FROM erased_posts").fetchone()
            kept += conn.execute(
                "INSERT OR IGNORE INTO erased_posts (id, channel, ts, erased_at)"
                " VALUES (?, ?, ?, ?)",
                [(1 if low is None else low) - 1, channel, f"{LOST}{attempted_at} {item_id}", now],
            ).rowcount
        return kept

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

    def delete_again(
        self,
        deleted: Sequence[tuple[str, str, str, str]],
        messages: Sequence[tuple[str, str, str | None]] = (),
        attempts: Sequence[tuple[Any, ...]] = (),
        *,
        undelete: bool = False,
    ) -> tuple[list[str], int]:
        """After a restore: ``deleted`` (item id, user, reason, time) are the deletions the
        database that was there records, ``messages`` (channel, ts, erased at or None) the
        Slack messages it knew showed a deleted item, and ``attempts`` its unconfirmed posts of
        them (``bot.store.restore.erasures_in``). Those items the restored one holds are
        deleted again (their Slack messages too), and every record is kept as it was made, so
        the ids stay out of imports and the API. ``undelete`` (a delete made by mistake) keeps
        the items the restored one holds, and drops only their records: the deletions of ids it
        does not hold stay. Either way the messages are left for the server to delete
        (``_queue_erased``), all in one transaction. Returns the ids the restored one holds
        (deleted again, or kept) and how many messages were queued besides their posts."""
        ids = [row[0] for row in deleted]
        conn = self.db.conn
        conn.execute("PRAGMA secure_delete = ON")
        try:
            with self._immediate():  # one transaction: the deletions and their records
                present = sorted(self.existing_item_ids(ids)) if ids else []
                held = set(present)
                if present and not undelete:
                    # its unconfirmed posts of them go the way the restored one's own do
                    conn.executemany(
                        "INSERT OR IGNORE INTO post_attempts (item_id, channel, reason,"
                        " model_version, predicted_label, confidence, attempted_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [tuple(row) for row in attempts if row[0] in held],
                    )
                    self.delete_items(present, user_id="restore", reason="deleted again")
                if present and undelete:
                    self._reask_unshown(present, messages)
                conn.executemany(
                    "INSERT OR REPLACE INTO deleted_items (item_id, user_id, reason, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    [tuple(row) for row in deleted if not (undelete and row[0] in held)],
                )
                queued = self._queue_erased(messages)
        finally:
            conn.execute("PRAGMA secure_delete = OFF")
        return present, queued

    def _reask_unshown(
        self, item_ids: Sequence[str], messages: Sequence[tuple[str, str, str | None]]
    ) -> None:
        """Kept by --undelete: an item's open question whose message the database that was
        there no longer leaves to delete (not in ``messages``: the server deleted it, as it
        does every message of a deleted item) is in Slack no more, and no one can answer it.
        Its post is closed and the item waits to be asked again, as a question taken back."""
        left = {(channel, ts) for channel, ts, _ in messages}
        now = self.now()
        for item_id in item_ids:
            shown = self.db.conn.execute(
                "SELECT channel, ts FROM posts WHERE item_id = ? AND closed_at IS NULL", [item_id]
            ).fetchall()
            if shown and not any((channel, ts) in left for channel, ts in shown):
                self._take_back(item_id, now)  # type: ignore[attr-defined]  # QueueMixin's

    def _queue_erased(self, messages: Sequence[tuple[str, str, str | None]]) -> int:
        """Leave ``messages`` (channel, ts, erased at or None: now; oldest first) for the server
        to delete (``erased_posts``), but one this database has queued already or records as
        its own (a post, or for a ``LOST`` one an unconfirmed post, of an item it holds): how
        many were queued. A ``LOST`` one gets an id below the others', as when it was noted."""
        now = self.now()
        conn = self.db.conn
        lost = [row for row in messages if row[1].startswith(LOST)]
        queued = conn.executemany(
            "INSERT OR IGNORE INTO erased_posts (channel, ts, erased_at)"
            " SELECT ?, ?, coalesce(?, ?)"
            " WHERE NOT EXISTS (SELECT 1 FROM posts WHERE channel = ? AND ts = ?)",
            [
                (channel, ts, at, now, channel, ts)
                for channel, ts, at in messages
                if not ts.startswith(LOST)
            ],
        ).rowcount
        for channel, ts, at in lost:
            item_id = ts[len(LOST) :].partition(" ")[2]
            (low,) = conn.execute("SELECT min(min(id), 1) FROM erased_posts").fetchone()
            queued += conn.execute(
                "INSERT OR IGNORE INTO erased_posts (id, channel, ts, erased_at)"
                " SELECT ?, ?, ?, coalesce(?, ?)"
                " WHERE NOT EXISTS (SELECT 1 FROM post_attempts WHERE item_id = ?)",
                [(1 if low is None else low) - 1, channel, ts, at, now, item_id],
            ).rowcount
        return queued

    def find_items(
        self,
        needle: str,
        limit: int | None = None,
        *,
        part: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item (any status) whose text, meta values or id holds ``needle`` as a whole
        word (``part``: anywhere, inside a word too), compared in one Unicode form and
        casefolded ("STRASSE" finds "Straße", a name typed composed finds it decomposed),
        oldest first, as (id, status, source, text, meta, created_at, label): what an erasure
        or access request about a person needs. A whole word, so "ann@example.com" does not
        find "joann@example.com"; one with ``@`` in it (an address) is a whole address too:
        "doe@example.com" finds neither "jane.doe@example.com" nor "doe@example.com.au"; one
        with ``. - _ +`` and no ``@`` finds an address's domain or local part
        ("acme-corp.com", "jean-luc.picard"), not a part of a longer one. Surrounding spaces
        (pasted from an email) are left out. Compatibility forms are folded too (a full-width
        "＠", a no-break space), and ı, İ, I and i are one letter ("YILMAZ" finds "Yılmaz",
        "İpek" finds "ipek"). Any run of spaces, tabs or line breaks in ``needle`` matches any
        other run ("Marie Dupont" finds "Marie\\nDupont"). A phone number (7 digits or more
        with only ``+``, spaces, ``- . /`` or brackets about them) matches its digits with any
        of those between them or none, and a trunk "(0)": "+44 7700 900999" finds
        "+447700900999" and "+44 (0)7700 900-999".

        Reads every item, ``FIND_CHUNK`` rowids a statement: the items of a stretch are yielded
        as soon as it is read, then ``progress(done, total)`` (in rowids, from ``progress(0,
        total)`` before the first) says how far it is; items added meanwhile are left out. A
        value of ASCII text (most) reaches Python's folding only when SQLite's ``lower`` of it
        holds every word of ``needle`` (``_prefilter``): for the CLI."""
        wanted = _folded(needle.strip())
        pattern = _pattern(wanted, part=part)

        def holds(value: str | None) -> bool:
            if value is None:
                return False
            folded = _folded(value)
            return wanted in folded if pattern is None else pattern.search(folded) is not None

        def meta_holds(meta: str | None) -> bool:
            return any(holds(value) for value in _meta_values(meta))

        # An interrupt (Ctrl-C; SIGTERM, SIGHUP as `hitl` takes them) raised in one of these
        # reaches the caller as itself, not as sqlite3's "user-defined function raised
        # exception": a signal that comes while SQLite runs has its handler run in the next
        # Python code SQLite calls, as it is entered (before any ``try``) or inside it.
        raised: list[BaseException] = []  # inside them

        def stoppable(check: Callable[[str | None], bool]) -> Callable[[str | None], bool]:
            def run(value: str | None) -> bool:
                try:
                    return check(value)
                except BaseException as exc:
                    raised.append(exc)
                    raise  # SQLite ends the statement

            return run

        def interrupt(exc: sqlite3.Error) -> BaseException | None:
            """The interrupt that ended a statement with ``exc``, if one did: one raised inside
            the functions, or one raised as they were entered (none raised inside them, and
            only a signal's handler raises there)."""
            if stops := [e for e in raised if isinstance(e, KeyboardInterrupt)]:
                return stops[0]
            if not raised and str(exc) == "user-defined function raised exception":
                return KeyboardInterrupt()
            return None

        conn = self.db.conn
        conn.create_function("hitl_holds", 1, stoppable(holds), deterministic=True)
        conn.create_function("hitl_meta_holds", 1, stoppable(meta_holds), deterministic=True)
        words = None if _is_phone(wanted) else wanted.split()
        checks, params = [], []
        for column, check in (("i.text", "hitl_holds"), ("i.meta", "hitl_meta_holds")):
            maybe, args = _prefilter(column, words, meta=column == "i.meta")
            checks.append(f"CASE WHEN {maybe} THEN {check}({column}) ELSE 0 END")
            params += args
        maybe, args = _prefilter("i.id", words, meta=False)
        checks.append(f"CASE WHEN {maybe} THEN hitl_holds(i.id) ELSE 0 END")
        params += args
        sql = (
            "SELECT i.id, i.status, i.source, i.text, i.meta, i.created_at, l.label"
            " FROM items i LEFT JOIN labels l ON l.item_id = i.id"
            " WHERE i.rowid BETWEEN ? AND ? AND (" + " OR ".join(checks) + ")"
            " ORDER BY i.rowid" + (" LIMIT ?" if limit is not None else "")
        )
        first, last = conn.execute(
            "SELECT (SELECT min(rowid) FROM items), (SELECT max(rowid) FROM items)"
        ).fetchone()
        total = 0 if first is None else last - first + 1
        if progress is not None:
            progress(0, total)
        names = ("id", "status", "source", "text", "meta", "created_at", "label")
        left = limit
        start = first
        while total and start <= last and (left is None or left > 0):
            end = min(start + FIND_CHUNK - 1, last)
            try:
                rows = conn.execute(
                    sql, [start, end, *params, *([left] if left is not None else [])]
                ).fetchall()
            except sqlite3.Error as exc:
                if (stop := interrupt(exc)) is not None:
                    raise stop from None
                raise
            for row in rows:  # the stretch's matches, then the next statement
                if left is not None:
                    left -= 1
                yield dict(zip(names, row, strict=True))
            if progress is not None:
                progress(end - first + 1, total)
            start = end + 1

    def empty_log(self) -> bool:
        """Checkpoint and truncate the write-ahead log, which holds older copies of the pages
        (a deleted item's text among them); False when another connection's read kept it from
        being emptied."""
        try:
            busy, _log, _done = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return False
        return not busy

    def scrub(self, progress: Callable[[], object] | None = None) -> str | None:
        """Leave no old copy of what an erasure removed in the file, after it committed: None
        when done, else why not (a phrase, for the line that says so).

        The VACUUM takes seconds at a million items: ``progress()`` is called every
        ``SCRUB_STEPS`` of SQLite's steps meanwhile (a bar), and an interrupt (Ctrl-C, or
        SIGTERM and SIGHUP, which the CLI turns into it) stops it there, not only once the
        whole file is rebuilt: the VACUUM is rolled back (the file stays as it was, the
        erasure committed) and KeyboardInterrupt raised.

        ``secure_delete`` zeroes the cells a delete frees, not the copies of the same rows an
        earlier write left behind: a row an update moved (a score stored, a status changed)
        or a page split can leave its old bytes in the unused part of a page, where no delete
        reaches them and a look at the file finds the text. VACUUM rebuilds the file from
        the live rows only; the log, which then holds those pages, is emptied after it. Not
        while a server runs on the database: VACUUM holds the write lock as long as it takes
        (a large file: seconds), and the server's clicks and requests would wait on it."""
        if self.path is None:
            return None  # in memory: no file
        if other_server(Path(self.path), starting=False) is not None:
            return "a hitl server runs on it"
        if not self.empty_log():
            return "another process reads it"
        raised: list[BaseException] = []

        def step() -> int:  # Python code: a pending signal's handler runs on entering it
            try:
                if progress is not None:
                    progress()
            except BaseException as exc:  # noqa: BLE001 - raised again after the VACUUM stops
                raised.append(exc)
                return 1
            return 0

        self.db.conn.set_progress_handler(step, SCRUB_STEPS)
        try:
            self.db.execute("VACUUM")
        except sqlite3.Error as exc:
            if raised:
                raise raised[0] from None
            if isinstance(exc, sqlite3.OperationalError) and str(exc) == "interrupted":
                # ``step`` stopped it by raising as it was entered: the signal's
                # KeyboardInterrupt, which sqlite3 swallows as it aborts the statement
                raise KeyboardInterrupt from None
            return f"VACUUM failed: {exc}"
        finally:
            self.db.conn.set_progress_handler(None, 0)
        if not self.empty_log():
            return "another process reads it"
        return None

    def erasure_mark(self) -> tuple[int, int]:
        """Where the records of erasures stand now: the last deletion's and the last
        anonymisation's row (0: none). A server takes it as it starts; ``erased_since`` then
        says whether one was made while it ran (DELETE /api/items/{id}, or `hitl delete` or
        `hitl people anonymise` beside it), which its ``scrub`` at stop leaves no copy of."""
        (deleted,) = self.db.execute("SELECT coalesce(max(rowid), 0) FROM deleted_items").fetchone()
        (anonymised,) = self.db.execute(
            "SELECT coalesce(max(id), 0) FROM anonymised_people"
        ).fetchone()
        return int(deleted), int(anonymised)

    def erased_since(self, mark: tuple[int, int]) -> int:
        """How many erasures (deletions and anonymisations) were recorded after ``mark``
        (``erasure_mark``)."""
        (deleted,) = self.db.execute(
            "SELECT count(*) FROM deleted_items WHERE rowid > ?", [mark[0]]
        ).fetchone()
        (anonymised,) = self.db.execute(
            "SELECT count(*) FROM anonymised_people WHERE id > ?", [mark[1]]
        ).fetchone()
        return int(deleted) + int(anonymised)

    def has_deleted_items(self) -> bool:
        """Whether `hitl delete` ever deleted an item (an import then looks its ids up)."""
        return self.db.execute("SELECT 1 FROM deleted_items LIMIT 1").fetchone() is not None

    def rows_about(self, item_ids: Sequence[str]) -> dict[str, int]:
        """How many rows of each table in ``ITEM_TABLES`` name one of ``item_ids``: what
        ``delete_items`` would remove, told before it does (`hitl delete`'s question). Tables
        with none are left out."""
        ids = list(dict.fromkeys(item_ids))
        rows: dict[str, int] = {}
        for n in range(0, len(ids), CHUNK):
            chunk = ids[n : n + CHUNK]
            for table, column in ITEM_TABLES:
                sql = _in(f"SELECT count(*) FROM {table}", chunk, column)
                (found,) = self.db.conn.execute(sql, chunk).fetchone()
                if found:
                    rows[table] = rows.get(table, 0) + found
        return rows

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

    def erased_posts(self, limit: int = 50, skip: Sequence[int] = ()) -> list[dict[str, str | int]]:
        """Slack messages of deleted items still to delete, oldest first, but those in
        ``skip`` (Slack refused to delete them: set aside) and those only to look for
        (``lost_posts``)."""
        return [
            {"id": r[0], "channel": r[1], "ts": r[2]}
            for r in self.db.execute(
                "SELECT id, channel, ts FROM erased_posts WHERE substr(ts, 1, ?) != ?"
                " AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?",
                [len(LOST), LOST, json.dumps([int(i) for i in skip]), limit],
            )
        ]

    def lost_posts(self) -> list[dict[str, str | int]]:
        """The posts of deleted items whose outcome was unknown when they were deleted (the
        message may be in Slack): id, channel, item_id and attempted_at, oldest first."""
        found = []
        for post_id, channel, ts in self.db.execute(
            "SELECT id, channel, ts FROM erased_posts WHERE substr(ts, 1, ?) = ? ORDER BY id DESC",
            [len(LOST), LOST],
        ):
            attempted_at, _, item_id = ts[len(LOST) :].partition(" ")
            found.append(
                {
                    "id": post_id,
                    "channel": channel,
                    "item_id": item_id,
                    "attempted_at": attempted_at,
                }
            )
        return found

    def found_lost_post(self, post_id: int, channel: str, stamps: Sequence[str]) -> None:
        """The lost post ``post_id`` was looked for: its messages (``stamps``, none when it
        was never posted) are left to delete, and it is no longer looked for."""
        now = self.now()
        with self._immediate():
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO erased_posts (channel, ts, erased_at) VALUES (?, ?, ?)",
                [(channel, ts, now) for ts in stamps],
            )
            self.db.execute("DELETE FROM erased_posts WHERE id = ?", [post_id])

    def forget_erased_post(self, post_id: int) -> None:
        """The message is deleted from Slack (or gone already)."""
        with self._immediate():
            self.db.execute("DELETE FROM erased_posts WHERE id = ?", [post_id])


def _in(sql: str, chunk: list[str], column: str = "id", *, and_: bool = False) -> str:
    marks = ",".join("?" * len(chunk))
    return f"{sql} {'AND' if and_ else 'WHERE'} {column} IN ({marks})"


def deletions_in(path: str | Path) -> list[tuple[str, str, str, str]]:
    """The deletions (item id, user, reason, time) the database at ``path`` records, read
    only; none from a database made before `hitl delete` existed (no such table). One that
    cannot be read (damaged: what a restore is often for) raises ``StoreError`` with SQLite's
    words: what was deleted there is not known, which is not "nothing"."""

    def read(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
        if "deleted_items" not in tables_of(conn):
            return []
        return conn.execute(
            "SELECT item_id, user_id, reason, created_at FROM deleted_items"
        ).fetchall()

    return read_only(path, read)


def read_only(path: str | Path, read: Callable[[sqlite3.Connection], _T]) -> _T:
    """``read`` on the database at ``path``, opened read only (its path quoted: a folder named
    with "#" or "?" is no URI's fragment or query); an SQLite error (a damaged file, not a
    database) as a ``StoreError``."""
    uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return read(conn)
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from None


def tables_of(conn: sqlite3.Connection) -> set[str]:
    """The names of the tables of ``conn``'s database."""
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# Characters of an address (e-mail, login, phone): a term holding one of them is matched as a
# whole address, so one of them between a word and the term, as in "jane.doe@" or
# "anne-marie@" or "….com.au", makes it part of another address.
_ADDRESS = "@.-_+"
_JOINER = r"[@.\-_+]"
_PART_JOINER = r"[.\-_+]"  # what joins inside a domain or a local part (not "@")


_META = re.compile(r"^v(\d+)\.json$")  # a model's metadata in the models folder


def model_label_seqs(models_dir: str | Path | None) -> dict[int, int]:
    """The count of label writes each model's training read saw (``label_seq`` in its
    ``vN.json``), by version; a model from before m034, or whose metadata cannot be read,
    is left out (its time alone says)."""
    seqs: dict[int, int] = {}
    if models_dir is None:
        return seqs
    try:
        files = [(p, m) for p in Path(models_dir).iterdir() if (m := _META.match(p.name))]
    except OSError:  # no models folder (none trained yet), or unreadable
        return seqs
    for path, name in files:
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            seq = (meta.get("extra") or {}).get("label_seq")
            version = meta.get("version")
        except (OSError, ValueError, AttributeError):
            continue
        number = int(name[1])
        if isinstance(seq, int) and not isinstance(seq, bool) and version == number:
            seqs[number] = seq
    return seqs


FIND_CHUNK = 20_000  # rowids a statement of ``find_items`` reads (then it says how far it is)
_NUMBER_CHARS = set("0123456789.e+-")  # what str() of a JSON number may hold ("1e+16", "nan" not)


def _prefilter(column: str, words: list[str] | None, *, meta: bool) -> tuple[str, list[str]]:
    """SQL that is true of every value of ``column`` in which ``find_items`` may find
    ``words`` (the needle's, folded; None: a phone number, no such test), and its parameters:
    a value of ASCII text folds to SQLite's ``lower`` of it (``_folded``), so it needs every
    word there; any other (non-ASCII, a NUL in it) goes to Python. Meta's JSON also goes when
    its values may read otherwise than its text: an escape (``\\u00fc``, ``\\\\``), or for
    words a number could spell (``_NUMBER_CHARS``) a number with a point or an exponent
    (``1e3`` is ``1000.0``)."""
    if not words:
        return "1", []
    other = f"length({column}) != length(CAST({column} AS BLOB))"
    if meta:
        other += f" OR instr({column}, char(92))"
        if all(set(word) <= _NUMBER_CHARS for word in words):
            other += f" OR {column} GLOB '*[0-9][.eE]*'"
    held = " AND ".join(f"instr(lower({column}), ?)" for _ in words)
    return f"({other} OR ({held}))", list(words)


def _is_phone(wanted: str) -> bool:
    """Whether ``wanted`` (folded) is a phone number, matched by its digits (``_pattern``)."""
    return bool(_PHONE.fullmatch(wanted)) and sum(ch.isdigit() for ch in wanted) >= PHONE_DIGITS


def _pattern(wanted: str, *, part: bool) -> re.Pattern[str] | None:
    """What ``find_items`` looks for (``wanted`` folded already): a phone number's digits
    (``_PHONE``), or ``wanted`` with any run of white space for each of its own; anywhere
    (``part``) or as a whole (``_whole``). None: ``wanted`` as it is, anywhere (the quickest)."""
    if _is_phone(wanted):
        digits = [ch for ch in _TRUNK.sub("", wanted) if ch.isdigit()]
        number = _PHONE_SEP.join(digits)
        return re.compile(number if part else rf"(?<!\w)(?:\+{_PHONE_SEP})?{number}(?!\w)")
    if part and not any(ch.isspace() for ch in wanted):
        return None
    escaped = r"\s+".join(re.escape(word) for word in wanted.split())
    return re.compile(escaped if part else _whole(wanted, escaped))


PHONE_DIGITS = 7  # a term of fewer digits is a word (an order number, a year) as any other
_PHONE = re.compile(r"\+?[\d\s().\-/]+")  # digits, and what is written between them
_TRUNK = re.compile(r"(?<=\d)\s*\(0\)")  # "+44 (0)7700": the 0 dialled only at home
_PHONE_SEP = r"(?:\(0\)|[\s().\-/])*"


def _whole(wanted: str, escaped: str) -> str:
    """The pattern of ``wanted`` (folded already; ``escaped``: its pattern) as a whole word.
    One with ``@`` is a whole address: not inside a longer run joined to it by ``@ . - _ +``.
    One with ``. - _ +`` and no ``@`` may be an address's domain or its local part: it may
    stand right after an ``@`` ("acme-corp.com" in "marie@acme-corp.com") or right before one
    ("jean-luc.picard"), but not inside a longer run joined by ``. - _ +`` ("acme-corp.com.au",
    "x.jean-luc.picard")."""
    if not any(ch in wanted for ch in _ADDRESS):
        return rf"(?<!\w){escaped}(?!\w)"
    joiner = _JOINER if "@" in wanted else _PART_JOINER
    return rf"(?<!\w)(?<!\w{joiner}){escaped}(?!\w)(?!{joiner}\w)"


def _folded(text: str) -> str:
    """One form to compare: NFKC (a full-width "＠" is "@", a no-break space a space),
    casefolded, and ı, İ, I and i one letter (casefold keeps Turkish's ı apart, and makes İ an
    i with a combining dot above)."""
    if text.isascii():  # most text, and NFKC leaves it as it is
        return text.lower()
    return unicodedata.normalize("NFKC", text).casefold().replace("i\u0307", "i").replace("ı", "i")


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
    sql = "SELECT count(*) FROM items WHERE source NOT IN ('demo', 'api', 'gold')"
    try:  # its path quoted (``read_only``): a "#" in a folder's name read as 0, and the demo
        return read_only(path, lambda conn: conn.execute(sql).fetchone()[0])  # deleted it
    except StoreError:
        return 0


def deleted_after(db: Database, mark: int | None) -> tuple[int, set[str]]:
    """Where the record of deletions stands now (its last row), and the ids `hitl delete`
    deleted after ``mark``, an earlier answer's (None: none read). A retrain takes the mark
    before it reads its labels and finds the items deleted while it ran: a range of keys."""
    (last,) = db.execute("SELECT coalesce(max(rowid), 0) FROM deleted_items").fetchone()
    if mark is None or last <= mark:
        return last, set()
    rows = db.execute("SELECT item_id FROM deleted_items WHERE rowid > ?", [mark])
    return last, {row[0] for row in rows}
