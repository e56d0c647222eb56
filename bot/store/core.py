"""``Store``: opening and migrating the database, items, labels and runs.

One ``Store`` wraps one sqlite-utils ``Database`` (one connection, bound to the thread that
opened it). Every change that touches more than one row runs inside ``_immediate()``, so it
is committed whole or not at all, and takes the write lock when it begins: a transaction
that began as a read cannot become a write once another connection (a worker thread's) has
committed, and SQLite then says "database is locked" at once instead of waiting. The other
queries live beside this module, one class per concern that ``Store`` is put together from
(see the package docstring); SQL is spoken only inside ``bot.store``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from bot import eventloop
from bot.errors import StoreError
from bot.store.erasure import ErasureMixin
from bot.store.gold import GoldMixin
from bot.store.labels import LabelsMixin
from bot.store.labelset import LabelSetMixin
from bot.store.lock import (
    BUILD,
    SHORT_BUILD,
    build_pid,
    fcntl,
    holder_words,
    other_server,
    pid_alive,
)
from bot.store.migrations import (
    KNOWN_MIGRATIONS,
    applied_names,
    create_new,
    migrations,
    recorded_names,
    rename_former,
)
from bot.store.models import ModelsMixin
from bot.store.people import PeopleMixin
from bot.store.problems import database_problem
from bot.store.producer import ProducerMixin
from bot.store.quality import QualityMixin
from bot.store.queue import QueueMixin
from bot.store.records import (
    AddResult,
    LabelSetMoved,
    NewItem,
    count_new_items,
    provenance_answers,
    provenance_label,
    same_text,
    select_rows,
)
from bot.store.reviews import ReviewsMixin
from bot.store.stopping import StoppingMixin
from bot.store.views import ViewsMixin

logger = logging.getLogger(__name__)

ITEM_STATUSES = ("new", "queued", "posted", "resolved", "skipped", "auto")
# What ``Store.count_items_shown`` calls the items decided with a label since retired: not
# resolved (they left training and export, the producer API says needs_review), they wait in
# /hitl review for a label in force.
LABEL_RETIRED = "label_retired"
IMPORT_USER = "import"
_IMPORT_ANNOTATORS = json.dumps([IMPORT_USER])
# Runs that record the process running them (``host:pid:started``) and that no lock ends when
# that process is gone (retrains and rollbacks have the retrain lock for it, bot.learning):
# the next run to start ends each one whose process is gone as failed.
PROCESS_RUNS = ("import",)
# SQLite's refusals of a write that say the next one may be refused too (error-name prefixes):
# its lock held by another process past the wait, a full disk, an I/O error, a read-only or
# unopenable file. What ``Store.write_problem`` records, and /healthz reports ("not storing").
NOT_STORED = ("SQLITE_BUSY", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")
PROBE_LOCK = "hitl:probe"  # the ``locks`` row ``Store.probe_write`` puts in and takes out
# The size the write-ahead log is cut back to when it starts afresh after a complete checkpoint
# (SQLite keeps the file at its largest otherwise: 114 MB after a burst of 9,000 predicts, for
# a 3.7 MB database). SQLite's own checkpoint would keep it near 4 MB (1,000 pages); a moderate
# load (40 predicts a second) keeps it under 9 MB.
JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024


def utc_now() -> str:
    """The current time as a UTC ISO-8601 string with milliseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -- the store ------------------------------------------------------------------------------


class Store(
    QueueMixin,
    LabelsMixin,
    LabelSetMixin,
    ReviewsMixin,
    ModelsMixin,
    ViewsMixin,
    ProducerMixin,
    QualityMixin,
    GoldMixin,
    StoppingMixin,
    ErasureMixin,
    PeopleMixin,
):
    """The slack-hitl database. Open with ``Store.open(path)``; close with ``close()``."""

    def __init__(self, db: Database, clock: Callable[[], str] = utc_now):
        self.db = db
        self.now = clock
        self.wal_sync = WalSync(db)
        self._legacy_text_ids: bool | None = None  # ``has_legacy_text_ids``, read once
        self.path: Path | None = None  # the file, as opened (None: in memory)
        self.file_id: tuple[int, int] | None = None  # its (st_dev, st_ino) when opened
        self.lost: str | None = None  # why writes are refused: the file is gone (check_file)
        self.watch: FileWatch | None = None  # the file overwritten in place (file_watch)
        # Why the last write was not stored (its lock held past the wait, a full disk, an I/O
        # error, a read-only file), in one line; None once a write commits (``_immediate``).
        self.write_problem: str | None = None
        # How many write transactions committed (``_immediate``), and what the method whose
        # write is the last one returns (``write_result``, set inside its transaction; None
        # from each BEGIN, and after a rollback): a caller stopped by an interrupt (Ctrl-C, or
        # SIGTERM and SIGHUP as `hitl` takes them) tells by ``commits`` whether its write is
        # kept, and reads what it did there when the interrupt came before it was returned.
        self.commits = 0
        self.write_result: Any = None
        # ``lock_rest`` (ms; the server's event loop, where a wait holds every request; 0
        # elsewhere): after a write that waited its whole busy timeout for another
        # connection's lock and was refused (at ``lock_refused_at``), the writes of the next
        # busy timeout wait only ``lock_rest`` ms for it, until one commits: the other process
        # holds the lock past a wait already, and each full wait would add to the time the
        # requests queued behind it are answered in (a click past Slack's 3 s). The short wait
        # still lets a write through a brief lock (another connection's commit).
        self.lock_rest = 0
        self.lock_refused_at: float | None = None

    @classmethod
    def open(
        cls, path: str | Path, clock: Callable[[], str] = utc_now, *, create: bool = True
    ) -> Store:
        """Open (creating or upgrading) the database at ``path``; with ``create`` False, only
        a file that is there (SQLite's ``mode=rw``: a deleted one is not made again, empty).

        Raises ``StoreError`` in one line that says what to do: for a file that is not a
        database, another program's database (refused before anything is written to it), one
        written by a newer slack-hitl, one another process is writing to, one a server writes
        under another name (a hard link: ``check_names``), or one that cannot be written
        (``database_problem``).
        """
        path = Path(path)
        from bot.store.problems import path_problem

        if (problem := path_problem(path)) is not None:  # a device, unreadable: SQLite untouched
            raise problem
        # A symlink to a file not there yet (a volume not mounted yet, a typo in the link): the
        # new database is made at its target, as at any path where nothing is (0600, whole)
        target = path.resolve() if path.is_symlink() and not path.exists() else path
        if target.parent and not target.parent.exists():
            raise StoreError(
                f"{path}: folder {target.parent} does not exist; create it or set HITL_DB"
            )
        # A file with hard links: said; one a server writes under another name: refused (SQLite
        # keeps a -wal per name). Before SQLite opens it, in the check's own words.
        from bot.store.lock import check_names

        check_names(path)
        conn = None
        here: tuple[int, int] | None = None  # the file this call made in place, if it did
        try:
            if create:
                # A new database appears whole (``_make_whole``), never as a file of 0 bytes
                # that a server starting beside this process takes for a truncated one
                made = not os.path.lexists(target) and _make_whole(target)
                if not made:
                    here = _create_private(target)
                conn = sqlite3.connect(str(path), timeout=10)
            else:
                made = False
                conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=10)
            db = Database(conn)
            _refuse_foreign(db, path)  # before _configure: enabling WAL writes to the file
            _configure(db, memory=False)
            store = cls(db, clock)
            store.path = path
            store.file_id = _file_id(path)
            store.migrate(path)
            store.made_new = store.made_new or made
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if here is not None and _left_over(exc):
                _drop_made(target, here)  # a refused or failed make leaves nothing at the path
            if isinstance(exc, sqlite3.Error):
                raise database_problem(path, exc) from exc
            raise
        return store

    @classmethod
    def memory(cls, clock: Callable[[], str] = utc_now) -> Store:
        db = Database(memory=True)
        _configure(db, memory=True)
        store = cls(db, clock)
        store.migrate()
        return store

    @classmethod
    def label_sets_read_only(cls, path: Path) -> tuple[list[str] | None, list[str]] | None:
        """The stored label set (None before `hitl labels` first changed it) and the imported
        labels of the database at ``path``, read only: nothing is created, upgraded or written
        (`hitl config`); None without a file, or one that cannot be read as a slack-hitl
        database now (another program's, an older one, locked, damaged)."""
        if not path.is_file():
            return None
        try:
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=2)
        except sqlite3.Error:
            return None
        store = cls(Database(conn))
        try:
            return store.stored_labels(), store.label_set()
        except sqlite3.Error:
            return None
        finally:
            store.close()

    def close(self) -> None:
        self.wal_sync.close()
        self.db.close()
        if self.watch is not None:
            self.watch.close()  # after SQLite's: closing it drops this process's locks

    def file_watch(self) -> FileWatch | None:
        """The watch for the file overwritten in place (``FileWatch``), opened at the first
        call: a server's (``check_file``, its checkpointer); None for an in-memory store."""
        if self.watch is None and self.path is not None and self.file_id is not None:
            self.watch = FileWatch(self.path, self.file_id)
        return self.watch

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema --

    def migrate(self, path: Path | None = None) -> None:
        """Apply the pending migrations. With ``path`` (the file's), an upgrade is refused while
        another process serves the database: an older server would go on with the old schema
        under it (its queries failing on a dropped index, its writes missing new triggers).
        ``made_new`` says afterwards whether this call made the database (``create_new``;
        ``Store.open`` says it too when it put a new one in place, ``_make_whole``)."""
        self.made_new = False
        applied = applied_names(self.db)  # a renamed migration's former name: its name now
        unknown = [name for name in applied if name not in KNOWN_MIGRATIONS]
        if unknown:
            raise StoreError(
                f"this database was written by a newer slack-hitl (schema {unknown[-1]}); "
                "update slack-hitl (in its clone: git pull && pip install -e .) or point HITL_DB"
                " at another file"
            )
        pending = [name for name in KNOWN_MIGRATIONS if name not in applied]
        if not pending:
            return
        logger.info("applying migrations: %s", ", ".join(pending))
        # One at a time, each in a transaction that holds the write lock and looks again at
        # what is pending once it has it: two processes upgrading one file at once (a server
        # starting beside a cron import) wait for each other's migration instead of the second
        # failing half way ("duplicate column name") on a list it read before the first began.
        looked = path is None
        while True:
            with self._immediate():
                migrations.ensure_migrations_table(self.db)
                rename_former(self.db)  # in the first migration's transaction
                todo = migrations.pending(self.db)
                if not todo:
                    return
                new = len(todo) == len(KNOWN_MIGRATIONS) and not applied_names(self.db)
                # Another process's server, looked for here, under the write lock, on what is
                # pending now: a server that made (or upgraded) the file a moment ago, before
                # this transaction began, left nothing pending. One still starting (its lock
                # file says so) writes to no file yet: it finds this one's work done.
                if not looked:
                    looked = True
                    holder = other_server(path, starting=False)
                    if new and holder:
                        raise StoreError(_deleted_under(path, holder))
                    if holder and (words := holder_words(holder)) is not None:
                        raise StoreError(f"{path} is in use: {words}")  # a restore, a demo
                    if holder:
                        many = f"{len(todo)} migration{'' if len(todo) == 1 else 's'}"
                        raise StoreError(
                            f"{path} needs an upgrade to this slack-hitl ({many}), but a hitl"
                            " server or demo runs on it"
                            f" ({holder}): stop it first, then run the new version"
                        )
                # A new database (nothing applied, here either) gets what they all leave, in
                # this one transaction: it holds no data that a stop could leave half upgraded
                # (``create_new``: the schema they make, replayed, 5x as fast).
                if new:
                    create_new(self.db, str(datetime.now(UTC)))
                    self.made_new = True
                    return
                for migration in todo[:1]:
                    migration.fn(self.db)
                    self.db[migrations.migrations_table].insert(
                        {
                            "migration_set": migrations.name,
                            "name": migration.name,
                            "applied_at": str(datetime.now(UTC)),
                        }
                    )

    def apart(self) -> Store:
        """This store's file on a connection of its own, for a worker thread (a sqlite
        connection is bound to the thread that opened it): reads that grow with the data run
        there, off the event loop. Safe to call from any thread: it reads ``path``,
        ``file_id`` and ``lost`` and stats the file, nothing on this store's connection.

        Refused (``StoreError``, one line that says what to do) once the file is not the one
        this store opened (``check_file``'s causes): opening the path again would create an
        empty database where the deleted file was, or read another one."""
        path, file_id = self.apart_file()
        return Store.open_apart(path, file_id, self.now)

    def apart_file(self) -> tuple[Path, tuple[int, int] | None]:
        """The path and file identity ``apart`` opens, for a connection in another process
        (``open_apart`` there): refused as ``apart`` refuses a file known lost or replaced.
        One ``stat``, nothing on this store's connection."""
        if self.path is None:
            raise StoreError("an in-memory store has no file to open on another connection")
        problem = self.lost or (_file_problem(self.path, self.file_id) if self.file_id else None)
        problem = problem or (self.watch.problem if self.watch is not None else None)
        if problem is not None:
            raise _apart_refused(problem, self.path)
        return self.path, self.file_id

    @classmethod
    def open_apart(
        cls, path: Path, file_id: tuple[int, int] | None, clock: Callable[[], str] = utc_now
    ) -> Store:
        """The file at ``path`` on a connection of its own, only while it is still the file
        ``file_id`` (``apart_file``): never made again where it was deleted, and refused where
        another file took its place."""
        try:  # never made again: deleted between the look above and this open
            store = Store.open(path, clock, create=False)
        except StoreError:
            problem = _file_problem(path, file_id) if file_id else None
            if problem is None:
                raise
        else:
            if file_id is None or store.file_id == file_id:
                return store
            store.close()
            problem = _file_problem(path, file_id) or "the database was replaced"
        raise _apart_refused(problem, path)

    def check_file(self) -> str | None:
        """Whether the file at ``path`` is still the one this store opened.

        One that was deleted, moved away or replaced while the store had it open (a cleanup
        script, a restore over a running server) keeps taking this connection's writes into a
        file nobody will read again: they are lost when the process ends. One overwritten in
        place (``cp backup.db hitl.db``: the same file, ``FileWatch``) gets the log's pages of
        the file that was there applied over it. From the first check that finds either, the
        store refuses writes (``PRAGMA query_only``: SQLite says SQLITE_READONLY) and ``lost``
        says why. Returns that reason the first time, None otherwise. One ``stat`` and one
        read of the header: cheap enough to run every second (the champion watch does)."""
        if self.lost is not None or self.path is None or self.file_id is None:
            return None
        watch = self.file_watch()
        problem = _file_problem(self.path, self.file_id) or (watch.look() if watch else None)
        if problem is None:
            return None
        self.lost = problem
        self.db.execute("PRAGMA query_only = ON")
        return problem

    def schema_version(self) -> list[str]:
        """Names of the applied migrations, oldest first."""
        return recorded_names(self.db)

    def journal_mode(self) -> str:
        return self.db.execute("PRAGMA journal_mode").fetchone()[0]

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def data_version(self) -> int:
        """A number that changes when another connection (the CLI, a worker thread) commits
        to the database; this connection's own commits leave it as it is."""
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    # -- items --

    def has_legacy_text_ids(self) -> bool:
        """Whether items stored by an older version under the hash of a non-canonical text as
        it came exist (migration m024 listed them; none are made since): read once."""
        if self._legacy_text_ids is None:
            row = self.db.execute("SELECT 1 FROM legacy_text_ids LIMIT 1").fetchone()
            self._legacy_text_ids = row is not None
        return self._legacy_text_ids

    def existing_item_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self.db.execute(f"SELECT id FROM items WHERE id IN ({marks})", chunk)
            )
        return found

    def what_items_hold(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Of each of ``ids`` stored: its ``source`` and ``text``, its ``label`` (or None), how
        many ``answers`` (an imported label's own one too; ``people``: those not an import's)
        and Slack ``posts`` it has, how many ``changes`` (label changes and reviews), and
        whether it is ``gold``: what a `hitl delete` of it would lose. One statement per 500
        ids (`hitl import`'s note on texts it stored a second time)."""
        found: dict[str, dict[str, Any]] = {}
        unique = sorted(set(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                "SELECT i.id, i.source, i.text, l.label,"
                " (SELECT count(*) FROM answers a WHERE a.item_id = i.id),"
                " (SELECT count(*) FROM posts p WHERE p.item_id = i.id),"
                " EXISTS (SELECT 1 FROM gold g WHERE g.item_id = i.id),"
                " (SELECT count(*) FROM answers a WHERE a.item_id = i.id"
                " AND a.source != 'import'),"
                " (SELECT count(*) FROM label_history h WHERE h.item_id = i.id)"
                " + (SELECT count(*) FROM reviews r WHERE r.item_id = i.id)"
                f" FROM items i LEFT JOIN labels l ON l.item_id = i.id WHERE i.id IN ({marks})",
                chunk,
            ):
                found[row[0]] = {
                    "source": row[1],
                    "text": row[2],
                    "label": row[3],
                    "answers": row[4],
                    "posts": row[5],
                    "gold": bool(row[6]),
                    "people": row[7],
                    "changes": row[8],
                }
        return found

    def add_items(
        self,
        rows: Iterable[NewItem],
        source: str,
        *,
        label_mark: dict[str, Any] | None = None,
    ) -> AddResult:
        """Insert new items in one transaction; a row whose id is stored (or repeated) with
        the same text is a duplicate, with another text a conflict (``AddResult.conflicts``:
        an id names one item, and an import never changes a stored one): neither is inserted.

        A row with a label is stored as a human answer by ``import`` and resolved at once,
        so it can serve as a seed label.

        A new row whose id `hitl delete` deleted is left out (neither inserted nor counted:
        ``len(rows)`` less the others is their number), looked up in the write transaction,
        so a deletion made while the import reads its rows is never undone; so are the stored
        ids, so a row another import stored meanwhile (the same file run twice at once) is a
        duplicate, never a failed insert.
        """
        rows = list(rows)
        now = self.now()
        with self._immediate():
            if label_mark is not None and self.label_set_mark() != label_mark:
                raise LabelSetMoved  # the caller checked the labels against another set
            # Stored ids read in the write's transaction: a row another import (or a
            # producer) stored since the caller looked is a duplicate, not a failed insert.
            seen = self.existing_item_ids([r.id for r in rows])
            texts = self._texts_of(sorted(seen))  # a duplicate must repeat the text its id has
            conflicts: list[int] = []
            items: list[tuple[Any, ...]] = []
            answers: list[tuple[Any, ...]] = []
            labels: list[tuple[Any, ...]] = []
            decided: list[tuple[str]] = []  # labels whose deciding answers came with them
            duplicates = 0
            labeled_again: list[str] = []  # duplicates given a label: is the stored item without?
            for index, row in enumerate(rows):
                if row.id in seen:
                    if not same_text(texts[row.id], row.text):  # another item under a stored id
                        conflicts.append(index)
                        continue
                    duplicates += 1
                    if row.label is not None:
                        labeled_again.append(row.id)
                    continue
                seen.add(row.id)
                texts[row.id] = row.text
                status = "resolved" if row.label is not None else "new"
                meta = json.dumps(row.meta, ensure_ascii=False) if row.meta else "{}"
                items.append((row.id, row.text, meta, source, status, now, now))
                if row.label is not None:
                    came = getattr(row, "provenance", None)  # a label from an export: who, when
                    if came is None:
                        answers.append(
                            (row.id, IMPORT_USER, row.label, source, now, f"{source}:{row.id}")
                        )
                        labels.append((row.id, row.label, 1, 1.0, _IMPORT_ANNOTATORS, now))
                    else:
                        answers.extend(provenance_answers(row.id, row.label, came, source))
                        labels.append(provenance_label(row.id, row.label, came))
                        if came.answers:
                            decided.append((row.id,))
            # Deleted (`hitl delete`) since the caller looked: not stored again. None deleted
            # (most databases): one read of an empty table; else the new ids, by key.
            gone: set[str] = set()
            if items and self.db.execute("SELECT 1 FROM deleted_items LIMIT 1").fetchone():
                for start in range(0, len(items), 500):
                    chunk = [row[0] for row in items[start : start + 500]]
                    marks = ",".join("?" * len(chunk))
                    gone.update(
                        r[0]
                        for r in self.db.execute(
                            f"SELECT item_id FROM deleted_items WHERE item_id IN ({marks})", chunk
                        )
                    )
            if gone:  # a later row repeating such an id (not in conflict) is no duplicate
                left = set(conflicts)
                duplicates -= (
                    sum(1 for n, row in enumerate(rows) if row.id in gone and n not in left)
                    - len(gone)  # the first row of each was to be inserted
                )
                items = [row for row in items if row[0] not in gone]
                answers = [row for row in answers if row[0] not in gone]
                labels = [row for row in labels if row[0] not in gone]
                decided = [row for row in decided if row[0] not in gone]
            # The hot path of every import: plain executemany inside sqlite-utils' transaction
            # (its insert_all builds and re-parses a statement per chunk, 2-3x slower here).
            self.db.conn.executemany(
                "INSERT INTO items (id, text, meta, source, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                items,
            )
            count_new_items(
                self.db.conn, {"new": len(items) - len(labels), "resolved": len(labels)}
            )
            self.db.conn.executemany(
                "INSERT INTO answers (item_id, user_id, label, source, created_at, dedupe_key)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                answers,
            )
            # numbered here, in one write of the count (m034's trigger would write it per row)
            base = self.db.execute("SELECT n FROM label_clock").fetchone()[0]
            self.db.conn.executemany(
                "INSERT INTO labels (item_id, label, votes, agreement, annotators, resolved_at,"
                " seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*row, base + n) for n, row in enumerate(labels, 1)],
            )
            self.db.execute("UPDATE label_clock SET n = ?", [base + len(labels)])
            self.db.conn.executemany(
                "UPDATE labels SET decided_by = (SELECT max(id) FROM answers"
                " WHERE answers.item_id = labels.item_id) WHERE item_id = ?",
                decided,
            )
            result = AddResult(
                imported=len(items),
                duplicates=duplicates,
                labeled=len(labels),
                labels_not_applied=self._count_unlabeled(labeled_again),
                conflicts=tuple(conflicts),
            )
            self.write_result = result  # for a caller stopped just after the commit
        return result

    def _texts_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored text of each of ``ids`` (stored ones only)."""
        texts: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            texts.update(
                self.db.execute(f"SELECT id, text FROM items WHERE id IN ({marks})", chunk)
            )
        return texts

    def _count_unlabeled(self, ids: Sequence[str]) -> int:
        """How many of ``ids`` (distinct) are stored without a label."""
        ids = list(dict.fromkeys(ids))
        n = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            n += self.db.execute(
                f"SELECT count(*) FROM items WHERE id IN ({marks})"
                " AND status IN ('new', 'queued', 'auto', 'posted')",
                chunk,
            ).fetchone()[0]
        return n

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        """One statement (``/api/predict`` reads its item back on the event loop; see
        ``select_rows``)."""
        rows = select_rows(self.db, "SELECT * FROM items WHERE id = ?", [item_id])
        return _decode_item(rows[0]) if rows else None

    def count_items(self) -> dict[str, int]:
        """Items per status, from the counts kept with every change (m008, m009): flat in the
        item count."""
        counts = dict.fromkeys(ITEM_STATUSES, 0)
        for status, n in self.db.execute("SELECT status, n FROM item_counts WHERE n != 0"):
            counts[status] = n
        return counts

    def resolved_to_train(self) -> int:
        """Resolved items less the gold ones (answered, or made gold after they were decided):
        gold never trains, so what HITL_REFRESH_EVERY counts (``bot.learning.jobs.labels_now``)
        grows with the labels a refresh can learn from, not with answers to gold questions. The
        count kept by trigger, less one lookup per gold item (gold items are few)."""
        return self.db.execute(
            "SELECT coalesce((SELECT n FROM item_counts WHERE status = 'resolved'), 0)"
            " - (SELECT count(*) FROM gold g JOIN items i ON i.id = g.item_id"
            " WHERE i.status = 'resolved')"
        ).fetchone()[0]

    def count_items_shown(self) -> dict[str, int]:
        """``count_items`` as people read it (`hitl stats`, `/hitl stats`, ``/metrics``): an
        item decided with a label an admin retired since is not ``resolved`` but
        ``LABEL_RETIRED``. It left training and export (``iter_export``), the producer API
        says ``needs_review`` (``NotInForce.undecides``) and it waits in /hitl review until
        given a label in force or the label is added back, when it counts as resolved again.
        Its status stays ``resolved`` (``count_items``, what the dispatcher, the refresh and
        the stopping rule read, keeps that meaning). Every status is there, 0 when no item
        has it (``gold`` too: the gold questions not asked yet). One statement, so one
        snapshot: the per-status counts and the per-label counts (m008) of the retired labels,
        flat in the item count (a few rows of ``label_set`` and ``label_counts``)."""
        counts = dict.fromkeys((*ITEM_STATUSES, "gold"), 0)
        retired = 0
        rows = self.db.execute(
            "SELECT status, n FROM item_counts WHERE n != 0 UNION ALL"
            " SELECT NULL, coalesce(sum(c.n), 0) FROM label_counts c"
            " JOIN label_set s ON s.name = c.label WHERE s.status = 'retired'"
        )
        for status, n in rows:
            if status is None:
                retired = n
            else:
                counts[status] = n
        # every label row is a resolved item's; min() only guards the display against a
        # count that would go negative if that ever did not hold
        retired = min(retired, counts["resolved"])
        counts["resolved"] -= retired
        counts[LABEL_RETIRED] = retired
        return counts

    # -- labels and answers --

    def label_set(self) -> list[str]:
        """Labels of the resolved items (imported seeds included), sorted.

        Asked on every click when HITL_LABELS is not set, so it reads the per-label counts the
        triggers keep (m008): one row per label, however many items are labeled."""
        return [
            row[0]
            for row in self.db.execute("SELECT label FROM label_counts WHERE n > 0 ORDER BY label")
        ]

    def labeled_with(self, label: str) -> int:
        """How many items are decided with ``label`` (the per-label count m008 keeps)."""
        row = self.db.execute("SELECT n FROM label_counts WHERE label = ?", [label]).fetchone()
        return row[0] if row else 0

    def iter_export(self) -> Iterator[dict[str, Any]]:
        """Resolved items with their label, oldest resolution first (what export reads), and
        ``answers``: each person's answer that counted when the item was decided (user_id,
        label, created_at; as ``tally`` counts them), so `hitl import` can restore who labeled
        what and when. Empty for a label imported without them. Each answer's label is given
        under the label set in force, as the tally counts it (an answer given before a rename
        or merge, for its successor), like ``gold``: a gold item's gold label (what its answers
        are scored against), else None.
        An item whose label was retired is left out, as training leaves it out: read back, it
        would bring the retired label back."""
        aliases = self.label_aliases()
        retired = self.retired_labels()
        cursor = self.db.execute(
            "SELECT i.id, i.text, l.label, l.votes, l.agreement, l.annotators, l.resolved_at,"
            " i.meta, (SELECT json_group_array(json_object('user_id', a.user_id,"
            " 'label', a.label, 'created_at', a.created_at)) FROM (SELECT * FROM answers a"
            " WHERE a.id IN (SELECT max(id) FROM answers WHERE item_id = l.item_id"
            " AND id <= l.decided_by GROUP BY user_id) AND a.label IS NOT NULL ORDER BY a.id) a),"
            " (SELECT g.label FROM gold g WHERE g.item_id = l.item_id)"
            # the labels drive (CROSS JOIN keeps them outer): SQLite chose to walk every item
            # by its id for the join, 2.8 s at a million items for 26,000 labels
            " FROM labels l CROSS JOIN items i ON i.id = l.item_id"
            " ORDER BY l.resolved_at, i.rowid"
        )
        for row in cursor:
            if row[2] in retired:
                continue
            yield {
                "id": row[0],
                "text": row[1],
                "label": row[2],
                "votes": row[3],
                "agreement": row[4],
                "annotators": json.loads(row[5]),
                "resolved_at": row[6],
                "meta": json.loads(row[7]),
                "answers": [
                    {**answer, "label": aliases.get(answer["label"], answer["label"])}
                    for answer in json.loads(row[8])
                ],
                "gold": aliases.get(row[9], row[9]) if row[9] is not None else None,
            }

    def last_decision(self, item_id: str) -> dict[str, Any] | None:
        """The item's last change in ``label_history`` that is a decision (a rename or merge of
        the label set carries one over): old_label, new_label, action, user_id, reason. For its
        question's message, so read without sqlite-utils' table objects (they read the schema,
        on the event loop)."""
        row = self.db.execute(
            "SELECT old_label, new_label, action, user_id, reason FROM label_history"
            " WHERE item_id = ? AND action NOT IN ('rename', 'merge') ORDER BY id DESC LIMIT 1",
            [item_id],
        ).fetchone()
        if row is None:
            return None
        keys = ("old_label", "new_label", "action", "user_id", "reason")
        return dict(zip(keys, row, strict=True))

    def last_decision_id(self, item_id: str) -> int | None:
        """The id in ``label_history`` of the item's last change that is a decision (a rename
        or merge of the label set carries one over, ``last_decision``); None if it has none."""
        row = self.db.execute(
            "SELECT max(id) FROM label_history"
            " WHERE item_id = ? AND action NOT IN ('rename', 'merge')",
            [item_id],
        ).fetchone()
        return row[0] if row else None

    def label_change_by(self, change_id: int) -> str | None:
        """Who made the change ``change_id`` of ``label_history`` (its user_id); None if there
        is no such change."""
        row = self.db.execute(
            "SELECT user_id FROM label_history WHERE id = ?", [change_id]
        ).fetchone()
        return None if row is None else row[0]

    def busy_timeout(self) -> int:
        """This connection's wait for another connection's write lock, in ms
        (``set_busy_timeout``)."""
        return int(self.db.execute("PRAGMA busy_timeout").fetchone()[0])

    def has_items(self) -> bool:
        """Whether the database holds any item."""
        return bool(self.db.execute("SELECT EXISTS (SELECT 1 FROM items)").fetchone()[0])

    def set_busy_timeout(self, ms: int) -> None:
        """How long a write on this connection waits for another connection's write lock
        before SQLite refuses it ("database is locked"): 10 s unless set."""
        self.db.execute(f"PRAGMA busy_timeout = {int(ms)}")

    def iter_answers(self) -> Iterator[dict[str, Any]]:
        """Every raw answer, in the order it was given; ``late``: given while its item was
        decided or set aside (its sender was told so), history that counts nowhere;
        ``team_id``: the answerer's Slack team (None before m028, for imports, undos, and
        payloads without one)."""
        cursor = self.db.execute(
            "SELECT a.item_id, i.text, a.user_id, a.label, a.source, a.created_at, a.late,"
            " a.team_id FROM answers a JOIN items i ON i.id = a.item_id ORDER BY a.id"
        )
        for row in cursor:
            yield {
                "item_id": row[0],
                "text": row[1],
                "user_id": row[2],
                "label": row[3],
                "source": row[4],
                "created_at": row[5],
                "late": bool(row[6]),
                "team_id": row[7],
            }

    def count_labels(self) -> int:
        return self.db["labels"].count

    def count_answers(self) -> int:
        return self.db["answers"].count

    # -- runs --

    def start_run(self, kind: str, triggered_by: str | None = None) -> int:
        """Record a run as running. A run of ``PROCESS_RUNS`` records this process; and each
        such run still "running" whose process is gone (killed, or it could not record its end:
        a full disk) is ended now as failed, saying so: it will not finish."""
        now = self.now()
        with self._immediate():
            self._end_orphaned_runs(now)
            process = {"process": _this_process()} if kind in PROCESS_RUNS else {}
            table = self.db["runs"].insert(
                {
                    "kind": kind,
                    "started_at": now,
                    "status": "running",
                    "triggered_by": triggered_by,
                    "detail": json.dumps(process),
                }
            )
        return int(table.last_pk)

    def _end_orphaned_runs(self, now: str) -> None:
        """End as failed each running run of ``PROCESS_RUNS`` whose recorded process is gone
        (inside the caller's transaction). One of another machine, or one recorded before runs
        named their process, is left as it is: nothing here can tell it has ended."""
        marks = ",".join("?" * len(PROCESS_RUNS))
        rows = self.db.execute(
            f"SELECT id, detail FROM runs WHERE kind IN ({marks}) AND status = 'running'",
            list(PROCESS_RUNS),
        ).fetchall()
        for run_id, detail in rows:
            recorded = json.loads(detail or "{}")
            process = recorded.get("process") if isinstance(recorded, dict) else None
            if not isinstance(process, str) or not process_gone(process):
                continue
            why = f"it ended before it finished (its process, {process}, is gone)"
            self.db.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, detail = ? WHERE id = ?",
                [now, json.dumps({**recorded, "reason": why}), run_id],
            )

    def finish_run(self, run_id: int, status: str, detail: dict[str, Any]) -> None:
        with self._immediate():
            self.db["runs"].update(
                run_id,
                {"status": status, "finished_at": self.now(), "detail": json.dumps(detail)},
            )

    def add_run_detail(self, run_id: int, **fields: Any) -> None:
        """``fields`` added to a run's recorded detail (one ended already: a retrain's prune
        comes after ``finish_run``)."""
        with self._immediate():
            row = self.db.execute("SELECT detail FROM runs WHERE id = ?", [run_id]).fetchone()
            if row is not None and row[0]:
                detail = {**json.loads(row[0]), **fields}
                self.db["runs"].update(run_id, {"detail": json.dumps(detail)})

    def runs(self, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, args = ("kind = ?", [kind]) if kind else (None, [])
        rows = self.db["runs"].rows_where(where, args, order_by="id desc", limit=limit)
        return [{**row, "detail": json.loads(row["detail"])} for row in rows]

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """The reads inside see the database as it was at the first of them: one read
        transaction (in WAL mode another connection's commits stay unseen until it ends), so
        a count and the rows it counts agree. Nothing inside may write: a write would have to
        upgrade a snapshot another commit may have made stale. Inside an open transaction, that
        transaction is the snapshot."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        """A write transaction that takes the lock up front. A deferred one (``db.atomic()``)
        that reads first, as sqlite-utils' ``insert`` does, fails with "database is locked"
        without waiting when another connection commits between its read and its write.
        ``commits`` counts the ones that committed (an interrupt raised after the COMMIT
        included), ``write_result`` keeps what the last one's method returns."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():  # a savepoint inside the open transaction
                yield
            return
        before = self.commits
        self.write_result = None
        try:
            if self._resting():
                self._begin_briefly()
            else:
                conn.execute("BEGIN IMMEDIATE")  # in here: an interrupt as it returns rolls it back
            yield
            # Counted before the COMMIT: a signal that arrives during it (a C call) has its
            # handler run as the call returns, and its interrupt raised here, after the
            # commit; the count is taken back below for a COMMIT that did not commit.
            self.commits = before + 1
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.commits = before  # first: nothing that can run a signal's handler before it
            self.write_result = None
            # SQLite may have rolled it back already (a statement or the COMMIT that found the
            # disk full): a ROLLBACK then fails, and its error would hide the one that matters.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._not_stored(exc)
            if self.lock_rest and self._refused_for_lock(exc):
                self.lock_refused_at = time.monotonic()
            raise
        except BaseException:
            if conn.in_transaction:  # raised in the transaction (or before its COMMIT)
                self.commits, self.write_result = before, None
                conn.execute("ROLLBACK")
            elif self.commits != before:  # an interrupt after the COMMIT: the write is kept
                self.write_problem = None
            raise
        self.write_problem = None
        self.lock_refused_at = None

    def _resting(self) -> bool:
        """Whether a write begins with the short wait (``lock_rest``): within one busy
        timeout of a write refused for another connection's lock, none committed since."""
        if self.lock_refused_at is None:
            return False
        waits = self.busy_timeout()
        if time.monotonic() - self.lock_refused_at < waits / 1000:
            return waits > self.lock_rest
        self.lock_refused_at = None
        return False

    def _refused_for_lock(self, exc: sqlite3.Error) -> bool:
        """Whether ``exc`` refused a write for another connection's lock after a wait longer
        than the short one (a write tried without waiting, as ``_written`` tries one behind
        this server's own label change, says nothing of how long the lock is held)."""
        if not (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_BUSY"):
            return False
        try:
            return self.busy_timeout() > self.lock_rest
        except sqlite3.Error:  # (the error being raised is the one that matters)
            return False

    def _begin_briefly(self) -> None:
        """BEGIN IMMEDIATE waiting only ``lock_rest`` ms for another connection's lock."""
        conn = self.db.conn
        waits = self.busy_timeout()
        self.set_busy_timeout(self.lock_rest)
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            self.set_busy_timeout(waits)

    def _not_stored(self, exc: sqlite3.Error) -> None:
        """Record a write the database refused for a reason that lasts beyond the write (its
        lock, its disk, its file: ``NOT_STORED``) as ``write_problem``; a constraint or a bug
        says nothing about whether the next write can be stored."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        if isinstance(exc, NotSynced) or name.startswith(NOT_STORED):
            where = self.path or "the database"
            self.write_problem = str(database_problem(where, exc, lost=self.lost))

    def probe_write(self) -> None:
        """Try to store something, without waiting for another process's lock: a row of 8 KB
        put in ``locks`` and taken out again in one commit (it needs pages of its own, as an
        item does, so a full disk refuses it). Its outcome sets or clears ``write_problem``,
        as any write's does: /healthz calls it while writes fail, so that an idle server (or
        one a load balancer no longer sends requests to) finds out when storing works again."""
        conn = self.db.conn
        if conn.in_transaction:
            return  # a write under way: its own outcome will tell
        waited = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            with self._immediate():
                conn.execute(
                    "INSERT OR REPLACE INTO locks (name, owner, acquired_at, expires_at)"
                    " VALUES (?, zeroblob(8192), '', '')",
                    [PROBE_LOCK],
                )
                conn.execute("DELETE FROM locks WHERE name = ?", [PROBE_LOCK])
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(waited)}")

    def synced_later(self) -> AbstractContextManager[None]:
        """The writes inside commit without waiting for the disk; the caller then awaits
        ``synced()`` before it tells anyone they are stored (an answer before its ack), so
        the event loop never waits for an fsync and one fsync serves many commits."""
        return self._unsynced()

    async def synced(self) -> None:
        """Every commit made so far is on disk (see ``WalSync``). Raises ``NotSynced`` (a
        ``sqlite3.Error``, so callers refuse it as any write the database refused) when the
        fsync fails: a disk error, the log's file deleted or replaced under the server. The
        commits stay in the log; a caller that does not acknowledge them lets the sender try
        again (a retried click is recognised by its key and stored once)."""
        try:
            await self.wal_sync.sync()
        except OSError as exc:
            not_synced = NotSynced(f"fsync failed: {exc}")
            # why (``database_problem``): the open-files limit (EMFILE: opening the log to
            # fsync it needs a descriptor) is no disk error
            not_synced.os_error = exc  # type: ignore[attr-defined]
            self._not_stored(not_synced)
            raise not_synced from None

    def unsynced(self) -> AbstractContextManager[None]:
        """The writes inside commit without waiting for the disk (see ``_unsynced``): for
        callers outside the store whose rows can be sent again if the machine (not the
        process) fails, such as the producer API's items (the producer gets the same id)."""
        return self._unsynced()

    @contextmanager
    def _unsynced(self) -> Iterator[None]:
        """A write that need not reach the disk before we go on: bookkeeping that is redone if
        lost (which version of a message Slack shows). Committed without waiting for fsync; in
        WAL mode the next synchronous commit (every answer's) makes it durable too."""
        conn = self.db.conn
        if conn.in_transaction:
            with self._immediate():
                yield
            return
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            with self._immediate():
                yield
        finally:
            conn.execute(f"PRAGMA synchronous = {int(level)}")


class NotSynced(sqlite3.OperationalError):
    """The fsync that makes the commits durable failed (``Store.synced``): what was committed
    may not be on disk. Told as a disk error (``database_problem``: SQLITE_IOERR)."""

    sqlite_errorname = "SQLITE_IOERR_FSYNC"


class WalSync:
    """Makes the commits made so far durable by fsyncing the write-ahead log in a worker
    thread, never on the event loop; the callers that come while one fsync runs share the
    next one (a group commit). A commit made at ``synchronous = NORMAL`` and then fsynced here
    is as durable as one made at FULL: in WAL mode FULL only adds that fsync of the log to
    every commit, and checkpoints sync the log first at either level. The fsync runs on a thread
    of its own: an ack never waits for the loop's shared worker threads, which the server's
    longer reads (a refresh's labels, a stop set's draw, a model file) may all be holding. An
    in-memory database has no log: nothing to do."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)  # seconds, for /metrics

    def __init__(self, db: Database) -> None:
        self.db = db
        self.next: asyncio.Future[None] | None = None  # for the callers of the next fsync
        self.task: asyncio.Task[None] | None = None
        self.n_syncs = 0  # fsyncs done
        self.timed = 0  # fsyncs of a file (an in-memory database has none)
        self.seconds = 0.0  # their time in all, in the worker thread
        self.within = [0] * len(self.BUCKETS)  # fsyncs that took at most each bucket's seconds
        self._wal: tuple[str | None] | None = None  # (the log's path,) once read
        self._thread: ThreadPoolExecutor | None = None  # the fsyncs' own (_own_thread)

    def _own_thread(self) -> ThreadPoolExecutor:
        """The fsyncs' thread, started at the first."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="hitl-wal-sync")
        return self._thread

    def close(self) -> None:
        """Let the fsync thread go (a running fsync finishes; nothing waits for it)."""
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None

    def wal_path(self) -> str | None:
        """The write-ahead log's path (None: no log), read once: a store's journal mode is
        set when it is opened, and two PRAGMAs per ack on the event loop are not free."""
        if self._wal is None:
            path = _wal_database(self.db)
            self._wal = (None if path is None else path + "-wal",)
        return self._wal[0]

    async def sync(self) -> None:
        if self.next is None:
            self.next = asyncio.get_running_loop().create_future()
        waiter = self.next
        if self.task is None or self.task.done():
            # Urgent: an ack waits for this fsync (bot/eventloop.py).
            self.task = asyncio.create_task(
                self._run(), name="hitl-wal-sync", context=eventloop.urgent_context()
            )
        await asyncio.shield(waiter)  # a cancelled caller leaves the others their fsync

    async def _run(self) -> None:
        path = self.wal_path()
        while self.next is not None:
            batch, self.next = self.next, None  # commits from here on wait for the next fsync
            try:
                seconds = (
                    None
                    if path is None
                    else await eventloop.to_thread(_fsync, path, executor=self._own_thread())
                )
            except Exception as exc:  # noqa: BLE001 - the waiting callers each report it
                batch.set_exception(exc)
            else:
                self.n_syncs += 1
                if seconds is not None:
                    self._record(seconds)
                batch.set_result(None)

    def _record(self, seconds: float) -> None:
        self.timed += 1
        self.seconds += seconds
        for i, bound in enumerate(self.BUCKETS):
            if seconds <= bound:
                self.within[i] += 1


class Checkpointer:
    """Copies the write-ahead log back into the database file in a worker thread, for a
    server whose commits run on its event loop.

    SQLite does it inside the commit that takes the log past 1,000 pages (its automatic
    checkpoint): it writes every page the log holds into the database file and fsyncs that
    file, on the connection that committed. With a million items those pages lie all over a
    large file, and that commit (an answer's, a predict's) held the event loop for 200-400 ms.
    ``take_over`` turns that off on the loop's connection; ``run`` (in a worker thread, on a
    connection of its own) does a passive checkpoint, which neither waits for nor blocks the
    loop's reads and writes. The next commit after a complete one starts the log afresh.
    An in-memory database has no log: nothing to do."""

    EVERY = 1.0  # seconds between the server's checkpoints

    def __init__(self, db: Database, watch: FileWatch | None = None) -> None:
        self.db = db
        self.path = _wal_database(db)
        self.watch = watch  # the server's file, overwritten in place (FileWatch)
        self.last_log = -1  # the log's pages at the last checkpoint
        self.touched = 0  # times the file's generation was raised (touch)
        self.failed: str | None = None  # the last checkpoint's error, said once

    def take_over(self) -> None:
        """From now on the connection's commits leave the log to ``run``."""
        if self.path is not None:
            self.db.execute("PRAGMA wal_autocheckpoint = 0")

    def run(self) -> tuple[int, int, int]:
        """A passive checkpoint (for a worker thread): (busy, pages in the log, pages copied).

        While writes keep coming, a passive checkpoint never lets the log start afresh, so it
        grows with a burst. Once nothing was written since the last checkpoint (the log has
        the same pages, all copied) and the log's file is over JOURNAL_SIZE_LIMIT, it is
        truncated (``wal_checkpoint(TRUNCATE)``, which waits for no one: if the loop writes
        just then, it is left to the next time). The connection opens the file only if it
        exists: a server whose database was deleted does not create an empty one at its path.

        With a ``watch``: a file found overwritten in place gets no checkpoint (it would copy
        the old file's pages over the copy); one that had pages copied into it gets a newer
        generation (``touch``), copied in at once.
        """
        if self.path is None or (self.watch is not None and self.watch.look() is not None):
            return (0, 0, 0)
        # This thread's own connection.
        conn = sqlite3.connect(f"{Path(self.path).as_uri()}?mode=rw", uri=True, timeout=10)
        try:
            busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            idle = not busy and log == copied == self.last_log
            if (
                self.watch is not None
                and not idle
                and (copied or not self.touched)
                and self.watch.look() is None
                and self.touch(conn)
            ):
                busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.last_log = log
            if idle and _size(self.path + "-wal") > JOURNAL_SIZE_LIMIT:
                conn.execute("PRAGMA busy_timeout = 0")
                busy, log, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
        return int(busy), int(log), int(copied)

    def touch(self, conn: sqlite3.Connection) -> bool:
        """Raise the database's generation (``FileWatch``: the header's user_version) in a
        commit of its own, which needs no fsync (the checkpoint that copies it syncs the log
        first). Skipped (False) when another connection holds the write lock: the next
        checkpoint tries again."""
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
                return False
            raise
        try:
            generation = conn.execute("PRAGMA user_version").fetchone()[0]
            if generation < _GENERATION_MAX:
                conn.execute(f"PRAGMA user_version = {int(generation) + 1}")
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        self.touched += 1
        return True

    async def keep_up(self) -> None:
        """The server's task: a passive checkpoint in a worker thread every ``EVERY`` seconds
        (one that finds nothing new in the log returns at once, without writing). One that
        fails (a full disk, a deleted file) is said once, in one line, and tried again."""
        if self.path is None:
            return  # no log to copy back
        while True:
            try:
                await asyncio.to_thread(self.run)
            except sqlite3.Error as exc:
                problem = str(database_problem(self.path, exc))
                if problem != self.failed:
                    logger.warning("checkpoint failed: %s; trying again every second", problem)
                self.failed = problem
            else:
                self.failed = None
            await asyncio.sleep(self.EVERY)


def _wal_database(db: Database) -> str | None:
    """The database file's path, if it is a file in WAL mode."""
    row = db.execute("PRAGMA database_list").fetchone()
    path = row[2] if row else ""
    if not path or db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        return None
    return str(path)


def _size(path: str) -> int:
    """The size of the file at ``path``; 0 if there is none."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _file_id(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` as (device, inode), None if it cannot be read."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _apart_refused(problem: str, path: Path) -> StoreError:
    """``Store.apart``'s refusal of a file lost or replaced, with what to do."""
    return StoreError(
        f"{problem}: put the database back at {path} (or move what is left there"
        " away to start afresh) and restart hitl serve"
    )


def _file_problem(path: Path, opened: tuple[int, int]) -> str | None:
    """Why the file at ``path`` is no longer the file ``opened`` (see ``_file_id``)."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return f"{path} was deleted or moved away while the server had it open"
    except OSError:
        return None  # cannot tell (a permission): nothing to say
    if (found.st_dev, found.st_ino) != opened:
        return f"{path} was replaced by another file while the server had it open"
    return None


# The database header's user_version (a 4-byte big-endian signed integer at offset 60): the
# server's generation of the file (``FileWatch``); nothing else in slack-hitl uses it.
_HEADER = b"SQLite format 3\x00"
_GENERATION_AT = 60
_GENERATION_MAX = 2**31 - 1


def _generation(fd: int) -> int | None:
    """The generation in the database file's header, read from the file itself (not through
    SQLite, which would read the newest page 1 from the log); None when the file does not
    start with a database header (empty, cut short, or another kind of file)."""
    header = os.pread(fd, 100, 0)
    if len(header) < 100 or not header.startswith(_HEADER):
        return None
    return int.from_bytes(header[_GENERATION_AT : _GENERATION_AT + 4], "big", signed=True)


class FileWatch:
    """Tells a database file overwritten in place under the server (``cp backup.db hitl.db``:
    the same inode, so ``_file_problem`` sees nothing) from the writes SQLite makes to it.

    In WAL mode the database file is written only by checkpoints, which copy pages from the
    log; the log keeps frames that belong to the file as it was. A copy put over it mixes the
    two: the next reads and checkpoints apply the old log's pages over the copy (indexes that
    no longer match their tables). SQLite's file change counter does not move in WAL mode, so
    the server keeps a generation of its own in the header's user_version: the checkpointer
    raises it (``Checkpointer.touch``) whenever it has copied pages into the file, and a
    checkpoint only ever writes a newer page 1. So the generation the file holds never goes
    down, whoever writes to the database (a ``hitl import`` beside the server, its own
    checkpoints included); a copy made before the last checkpoint that wrote pages (a backup,
    the file itself a minute ago) holds a lower one, and so does a backup made before the
    server started (the first checkpoint raises it). ``look`` reads the header (one
    ``pread``): cheap enough for every second.

    Not seen: a copy put in place in the moment between a look and a checkpoint that writes a
    newer page 1 over it, or a copy of another database whose generation is higher.

    The descriptor stays open until the store closes: closing a descriptor of a file drops
    every POSIX lock this process holds on it, SQLite's included."""

    def __init__(self, path: Path, opened: tuple[int, int]) -> None:
        self.path = path
        self.lock = threading.Lock()  # the loop's checks and the checkpointer's thread
        self.fd: int | None = None
        self.seen: int | None = None  # the highest generation the file was read with
        self.problem: str | None = None  # why the file is not the server's any more
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        found = os.fstat(fd)
        if (found.st_dev, found.st_ino) != opened:
            os.close(fd)  # another file (no lock of ours on it): the identity check says so
            return
        self.fd = fd
        self.seen = self._read()

    def _read(self) -> int | None:
        """The file's generation, read twice: a checkpoint may be writing page 1 just then, and
        a read may catch half of it. None also when the two reads differ."""
        assert self.fd is not None
        first = _generation(self.fd)
        return first if _generation(self.fd) == first else None

    def look(self) -> str | None:
        """Why the file is not the one the server writes to any more (it was overwritten), or
        None. Safe from any thread."""
        with self.lock:
            if self.problem is not None or self.fd is None:
                return self.problem
            try:
                now = _generation(self.fd)
                again = _generation(self.fd)
            except OSError:
                return None  # cannot tell (an I/O error): the fsyncs and writes say it
            if now != again:
                return None  # being written: the next look tells
            if now is not None and (self.seen is None or now >= self.seen):
                self.seen = now
                return None
            if self.seen is None:
                return None  # no header yet to compare with
            self.problem = (
                f"{self.path} was overwritten in place while the server had it open (a backup"
                f" copied over it? The server's write-ahead log {self.path.name}-wal belongs to"
                " the file that was there: stop hitl serve before copying the backup again)"
            )
            return self.problem

    def close(self) -> None:
        with self.lock:  # not under a look in the checkpointer's thread (the number is reused)
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


def _fsync(path: str) -> float:
    """fsync ``path`` (flushes what any descriptor of the file wrote, SQLite's included); the
    seconds it took."""
    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - started


def _this_process() -> str:
    """This process, as a run records it: ``host:pid:started`` (``started``, when /proc tells
    it, tells this process from a later one given its pid; as ``bot.learning.retrain``'s lock
    owner, which this layer may not import)."""
    pid = os.getpid()
    started = process_started(pid)
    return f"{socket.gethostname()}:{pid}" + (f":{started}" if started else "")


def process_started(pid: int) -> str | None:
    """When process ``pid`` started, as ``<boot id>.<clock ticks since boot>`` (Linux's
    /proc), None where that cannot be read (no /proc, or no such process). A pid is used
    again by a later process (after a container restarts, its first processes get the same
    pids), never with the same start. The retrain lock's owner carries it too."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name, in brackets, may hold spaces
    return f"{boot}.{fields[19]}" if len(fields) > 19 else None


def process_gone(process: str) -> bool:
    """Whether the process a run recorded (``host:pid[:started]``) is known to be gone: of
    this machine, and no process runs under its pid, or the one that does started later.
    False when it runs, or is another machine's (which cannot be seen from here)."""
    host, _, rest = process.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdecimal():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        pass  # another user's process runs under that pid
    now_started = process_started(int(pid))
    return bool(started and now_started and now_started != started)


def _deleted_under(path: Path, holder: str) -> str:
    """The refusal to make a new database where a server that serves had one (``holder``); a
    `hitl restore` or a starting `hitl demo` that holds the lock is named as what it is
    (``holder_words``), with what to do."""
    if (words := holder_words(holder)) is not None:
        return f"{path} is in use: {words}"
    return (
        f"{path} is empty (a new database), but a hitl server or demo runs on it ({holder}):"
        " was its database deleted or replaced while it ran? Stop it, put the database back,"
        " and start it again"
    )


def _make_whole(path: Path) -> bool:
    """Make a new database at ``path``, where nothing is, whole: built under a name of its own
    in the same folder (the migrations' schema, then WAL, closed), then linked in place, which
    fails when another process put one there first (a server starting beside a `hitl import`:
    each builds its own, the second opens the first's). Made in place, a new file stood at 0
    bytes for a moment, which that server took for a truncated database ("restore it from a
    backup"). The file is 0600 (``_create_private``). False when it was not put there: one
    was there first, or it cannot be built or linked where making it in place can still work
    or says why in SQLite's words (a folder that cannot be written, a filesystem without hard
    links), and the caller makes it in place. A full disk or the file-size limit is raised
    (StoreError), leaving nothing: in place it struck the same, after the file was there.
    Refused (StoreError) while a server that serves holds the database's lock: its file was
    deleted under it (``other_server``; a server still starting, which opens the file once it
    is there, is none). Names earlier builds left (a process killed as it built) are removed
    first (``_sweep_builds``)."""
    if str(path) == ":memory:":  # SQLite's name for no file at all
        return False
    _sweep_builds(path)
    tag = f"{os.getpid()}-{os.urandom(4).hex()}"
    tmp = path.with_name(f".{path.name}{BUILD}{tag}")
    flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        try:
            fd = os.open(tmp, flags, 0o600)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            tmp = path.with_name(f"{SHORT_BUILD}{tag}")  # a name near the limit: a short one
            fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        if exc.errno in _NO_ROOM:
            raise StoreError(_no_room(path, exc)) from None
        return False  # a folder that cannot be written: SQLite says it, in place
    try:
        with suppress(OSError, AttributeError):  # building: another's ``_sweep_builds`` keeps off
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        conn = sqlite3.connect(str(tmp), timeout=10)
        try:
            db = Database(conn)
            _configure(db, memory=True)  # a rollback journal while it is built
            Store(db).migrate()
            db.enable_wal()  # in its header: every opener of it uses WAL
        finally:
            conn.close()  # its -wal checkpointed and removed
        os.close(fd)  # its flock too: once linked, it is the database's file
        fd = -1
        # Looked for first, then the path: a server seen serving had its file open before
        # this look (``HeldLock.started``), so none there now was deleted under it. One seen
        # starting puts its file there, if at all, before it serves: the link finds it.
        if holder := other_server(path, starting=False):
            if not os.path.lexists(path):
                raise StoreError(_deleted_under(path, holder))
            return False  # the one it made as this one was built: opened as it is
        os.link(tmp, path)
    except FileExistsError:
        return False  # another process's, put there as this one was built: opened as it is
    except OSError as exc:
        if exc.errno in _NO_ROOM:
            raise StoreError(_no_room(path, exc)) from None
        if exc.errno in _NO_LINKS or exc.errno == errno.ENOENT:
            return False  # a filesystem without hard links: made in place
        problem = f"{path}: cannot make a new database ({exc.strerror}); check the disk"
        raise StoreError(problem) from None
    except sqlite3.Error as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR"):
            raise _build_problem(path, exc) from None
        return False  # SQLite says it again, in place
    finally:
        if fd >= 0:
            os.close(fd)
        for name in ("", "-journal", "-wal", "-shm"):
            with suppress(OSError):
                os.unlink(f"{tmp}{name}")
    return True


_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NO_LINKS = frozenset({errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def _sweep_builds(path: Path) -> None:
    """Remove what builds of a new database at ``path`` left behind (``_make_whole``'s names, a
    process killed as it built: a whole schema, a journal, or the database's second name when
    killed after its link): those of a pid no process runs under now, whose flock (held while
    it builds) no process holds either (a process of another pid namespace, a container's,
    is not seen by its pid). One scan of the folder."""
    with suppress(OSError), os.scandir(path.parent) as names:
        for entry in names:
            pid = build_pid(entry.name, path.name)
            if pid is None or pid == os.getpid() or pid_alive(pid):
                continue
            main = entry.path
            for suffix in ("-journal", "-wal", "-shm"):
                main = main.removesuffix(suffix)
            try:
                fd = os.open(main, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                fd = None  # what a build left beside its name, the name gone
            except OSError:
                continue
            try:
                if fd is not None and fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(entry.path)
            except OSError:
                pass  # held: a build under way in another pid namespace
            finally:
                if fd is not None:
                    os.close(fd)


def _no_room(path: Path, exc: OSError) -> str:
    """A new database that cannot be written for lack of room, in one line (no file made)."""
    if exc.errno == errno.EFBIG:
        return (
            f"{path}: the file-size limit (`ulimit -f`) stops hitl from writing a new database"
            " there; raise it and try again"
        )
    if exc.errno == errno.EDQUOT:
        return f"{path}: the disk quota is used up; free some space or raise the quota"
    return f"{path}: the disk is full; free some space and try again"


def _build_problem(path: Path, exc: sqlite3.Error) -> StoreError:
    """A write SQLite could not make while it built a new database: the file-size limit (`ulimit
    -f`, which SQLite reports as a disk I/O error) when one is set, else what SQLite says."""
    limit = _size_limit()
    with suppress(OSError):
        room = os.statvfs(path.parent)
        if room.f_bavail * room.f_frsize < 1024 * 1024:
            limit = None  # the disk is full (or nearly): SQLite's SQLITE_FULL says it
    if limit is not None:
        return StoreError(
            f"{path}: the file-size limit (`ulimit -f`: {limit} bytes) stops hitl from writing"
            " a new database there (about 400 KB); raise it and try again"
        )
    return database_problem(path, exc)


def _size_limit() -> int | None:
    """This process's file-size limit (`ulimit -f`), in bytes, or None when there is none."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _left_over(exc: BaseException) -> bool:
    """Whether a failed ``Store.open`` leaves nothing of a file it made in place: a refusal
    (StoreError), a full disk or an I/O error, not a busy file another process writes in."""
    if isinstance(exc, StoreError):
        return True
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR")


def _drop_made(path: Path, made: tuple[int, int]) -> None:
    """Remove the file ``made`` (its st_dev, st_ino) at ``path``, and its -wal and -shm, while
    it is still the one this process made."""
    with suppress(OSError):
        found = os.stat(path)
        if (found.st_dev, found.st_ino) != made:
            return
        for name in ("", "-wal", "-shm"):
            with suppress(OSError):
                os.unlink(f"{path}{name}")


def _create_private(path: Path) -> tuple[int, int] | None:
    """Create a new database file readable by its owner only (0600), as the model files are: it
    holds every item's text and who answered what. SQLite gives its -wal and -shm files the
    database file's mode. An existing file keeps the mode it has (an operator may have chosen
    one); any problem creating it (a link, a folder that cannot be written) is left to SQLite,
    which reports it as before. The file's (st_dev, st_ino) when it made it, else None."""
    if str(path) == ":memory:":  # SQLite's name for no file at all
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        found = os.fstat(fd)
        return found.st_dev, found.st_ino
    finally:
        os.close(fd)


def _refuse_foreign(db: Database, path: Path) -> None:
    """Refuse another program's database before anything is written to it: one that has tables
    but records no slack-hitl migration. Migrating it would add our tables beside its own (or
    fail halfway on a name both use); an empty file, or one holding only the empty migrations
    table a first open that failed left behind, is ours to create."""
    tables = [
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    others = [name for name in tables if name != migrations.migrations_table]
    if not others or recorded_names(db):
        return
    shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    raise StoreError(
        f"{path} is not a slack-hitl database (it has {'tables' if len(others) > 1 else 'table'}"
        f" {shown}); point --db/HITL_DB at another file"
    )


def _configure(db: Database, memory: bool) -> None:
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA cache_size = -32000")  # 32 MB of pages: random reads stay in memory
    if not memory:
        db.enable_wal()
        # FULL: a commit is on disk before we acknowledge anything to Slack.
        db.execute("PRAGMA synchronous = FULL")
        db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")


def _decode_item(row: dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["meta"] = json.loads(item["meta"] or "{}")
    item["ranked"] = json.loads(item["ranked"]) if item.get("ranked") else None
    return item
