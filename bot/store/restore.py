"""`hitl restore BACKUP`: put a backup in place of the database so that nothing left beside the
database is applied over it.

A server that crashed (``kill -9``, an OOM kill, a power cut) leaves its write-ahead log,
``hitl.db-wal``, beside the database. A backup copied over the file (``cp backup.db hitl.db``)
keeps that log, and the next open applies its pages over the copy: a damaged database, or one
that starts without a word and fails ``PRAGMA integrity_check``; copying the backup again damages
it again. Here the backup is checked (a readable slack-hitl database this version can open),
copied with SQLite's backup API into a new file beside the database, and then the database that
was there is kept under another name together with its ``-wal`` and ``-shm`` (a pair SQLite
opens as one: the log may hold the last answers), and the copy is renamed into place. Nothing
is deleted, and the restore can be undone by restoring the kept file.

Refused while a server or demo holds the database's server lock, or another process (a
``hitl import``, ``hitl retrain``, ``sqlite3``) has it open: it would go on writing to the file
that is moved aside. From that check until the swap is done, the restore holds the database's
write lock (``_WritersHeld``): a process that opens it meanwhile reads, but its writes wait; if
it still has the file open when the copy is done, the restore is refused and it goes on with the
database as it was.

The database that was there also says what changed after the backup was made, compared with
the backup in SQL before the swap (``changes_since``) and carried into the copy with the
messages posted after it (``_carry_into``, written without a journal: the copy is thrown away
on a failure): a producer a webhook sent after the backup may have told something is told the
restored state (a webhook queued, which tells the item as it is when it goes), a callback_url
registered after the backup is kept, and a Slack message drawn after the backup (a question
reopened) is redrawn by the next `hitl serve` as the restored database has it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlite_utils import Database

from bot.errors import StoreError
from bot.store.erasure import read_only, tables_of
from bot.store.lock import holder_words, other_server, server_lock
from bot.store.migrations import KNOWN_MIGRATIONS, applied_names, migrations

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

STEP_PAGES = 2048  # pages copied per step of the backup API (8 MiB at 4 KiB pages)
KEPT = ".before-restore"  # the database that was there: <db>.before-restore[.N]
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside a database, named after it
_SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite's POSIX locks (os_unix.c): every connection to a database in WAL mode holds a shared
# lock on the file's "shared" range and on the -shm's DMS byte for as long as it is open.
_SHARED_FIRST, _SHARED_SIZE = 0x40000002, 510
_SHM_DMS = 128
# The -shm's write lock (os_unix.c: UNIX_SHM_BASE + WAL_WRITE_LOCK): one writer at a time holds
# it, and a connection that finds it held waits (its busy timeout) or says "database is locked".
_SHM_WRITE = 120
# How long, after the swap, the restore keeps writers off the file it moved aside while a process
# that opened it in the instant before the swap still has it: past the 10 s a hitl command waits
# for a lock (``Store.open``), so its write is refused ("database is locked") instead of stored
# in the file moved aside.
WAIT_FOR_OTHERS = 12.0


@dataclass(frozen=True)
class BackupFacts:
    """What a backup holds, read when it is checked."""

    items: int
    answers: int
    newest_answer: str | None
    models: dict[int, str] = field(default_factory=dict)  # version -> status it records
    pending: int = 0  # migrations this slack-hitl applies to it at the next open


@dataclass(frozen=True)
class Restored:
    facts: BackupFacts
    kept: Path | None  # the database that was there, under its new name (None: there was none)
    kept_beside: tuple[Path, ...] = ()  # its -wal/-shm, moved with it
    # The Slack messages the database that was there knew and the backup does not
    # (``unknown_posts``): recorded taken back (their items in the backup), or left to delete
    # (items the backup does not hold)
    taken_back: int = 0
    to_delete: int = 0
    # The backup, made by an older slack-hitl, was upgraded by the restore: done to record the
    # messages carried over under the schema their columns need (``_carry_into``)
    upgraded: bool = False
    # The Slack messages of the database that was there not carried over: the backup is not an
    # earlier copy of it (``UnknownPosts.unrelated``), so they were not posted after it
    not_carried: int = 0
    # The items whose producer a webhook sent after the backup was made may have told what the
    # restored database does not say (``changes_since``): each has a webhook queued to tell it
    # the restored state
    told: int = 0
    # The Slack messages both hold drawn or changed after the backup was made: due a redraw
    redrawn: int = 0
    # Why no producer was told and no message marked for a redraw, in a phrase: what changed
    # after the backup was made could not be read (``Changes.error``), or the disk had no room
    not_told: str | None = None
    # Why the Slack messages posted after the backup was made were not carried over: the
    # database that was there could not be read (``UnknownPosts.error``)
    posts_unread: str | None = None


def in_use(db: Path) -> bool:
    """Whether another process has the database at ``db`` open (SQLite's own locks, probed
    with an exclusive lock taken and dropped at once, so nothing waits on it). Only another
    process's connection is seen: this process holds none on ``db`` while it restores."""
    if fcntl is None:  # pragma: no cover - Windows
        return False
    for path, start, length in (
        (db, _SHARED_FIRST, _SHARED_SIZE),
        (db.with_name(db.name + "-shm"), _SHM_DMS, 1),
    ):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue  # none there (or not ours to open: the rename says so)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
            fcntl.lockf(fd, fcntl.LOCK_UN, length, start)
        except OSError:
            return True
        finally:
            os.close(fd)
    return False


def remove_unused(db: Path, made: tuple[int, int]) -> bool:
    """Remove the database at ``db`` that an import made and stored nothing in (a mistyped
    --db leaves no file), with its -wal and -shm; whether it did. Kept when another process
    took it meanwhile: it is no longer the file ``made`` (device, inode), a server or demo
    runs on it, another process has it open, or it holds an item (another import into the
    same new file stored rows)."""
    db = Path(db)

    def ours() -> bool:
        try:
            found = os.stat(db)
        except OSError:
            return False
        return (found.st_dev, found.st_ino) == tuple(made) and not in_use(db)

    if not ours() or other_server(db) is not None:
        return False
    try:
        conn = sqlite3.connect(f"file:{quote(str(db.resolve()))}?mode=ro", uri=True, timeout=10)
        try:
            if conn.execute("SELECT count(*) FROM items").fetchone()[0]:
                return False
        finally:
            conn.close()
    except sqlite3.Error:
        return False  # cannot tell: kept
    if not ours():  # opened while it was read
        return False
    for name in (db, *(db.with_name(db.name + side) for side in ("-wal", "-shm"))):
        name.unlink(missing_ok=True)
    return True


class _WritersHeld:
    """Writers kept off the database at ``target`` from the restore's check until its swap is
    done: the -shm's write lock (``_SHM_WRITE``) and a read lock on the database file's shared
    range (which keeps a connection closing meanwhile from checkpointing and deleting the -wal
    by its name, the restored file's after the swap), both held by this process. Another
    process that opens the database meanwhile reads; a write waits for its busy timeout (a hitl
    command's: 10 s) and is then refused, "database is locked". Such a process holds SQLite's
    lock on the -shm's DMS byte for as long as it has the file open, which ``others`` sees (an
    F_GETLK, which changes no lock). Nothing is held where the file does not exist or its
    filesystem has no locks (as before).

    The descriptors stay open until the end: closing any descriptor of a file drops every POSIX
    lock this process holds on it. The -shm is made when there is none (SQLite makes it with
    the database's mode and owner, so is this one) and removed at the end when no one else
    came to use it."""

    def __init__(self, target: Path, busy: str) -> None:
        self.target, self.busy = target, busy
        self.shm = target.with_name(target.name + "-shm")
        self.existed = os.path.lexists(target)
        self.fds: list[int] = []
        self.shm_fd: int | None = None
        self.made_shm = False

    def __enter__(self) -> _WritersHeld:
        if fcntl is None or not self.existed:  # pragma: no cover - Windows
            return self
        try:
            self._hold()
        except BaseException:
            self._release()
            raise
        return self

    def _hold(self) -> None:
        try:
            db_fd = os.open(self.target, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # the copy or the rename says what is wrong
        self.fds.append(db_fd)
        old = os.fstat(db_fd)
        try:
            shm_fd = os.open(self.shm, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            try:
                shm_fd = os.open(self.shm, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except OSError:
                return
            self.made_shm = True
            with contextlib.suppress(OSError):
                os.fchmod(shm_fd, old.st_mode & 0o666)
                if os.geteuid() == 0:
                    os.fchown(shm_fd, old.st_uid, old.st_gid)
        except OSError:
            return
        self.fds.append(shm_fd)
        self.shm_fd = shm_fd
        try:
            fcntl.lockf(shm_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_WRITE)
            fcntl.lockf(db_fd, fcntl.LOCK_SH | fcntl.LOCK_NB, _SHARED_SIZE, _SHARED_FIRST)
        except (BlockingIOError, PermissionError):
            raise StoreError(self.busy) from None
        except OSError:  # a filesystem without locks: nothing held, as before
            self._release()
            return
        if self.others():
            raise StoreError(self.busy)

    def others(self) -> bool:
        """Whether another process has the database open (holds the -shm's DMS lock)."""
        if self.shm_fd is None:
            return False
        return _locked_by_another(self.shm_fd, _SHM_DMS, 1)

    def wait_for_others(self) -> None:
        """After the swap: wait while a process that opened the database in the instant before
        it still has the file moved aside, at most ``WAIT_FOR_OTHERS`` (its writes wait for the
        lock held here, and are then refused)."""
        deadline = time.monotonic() + WAIT_FOR_OTHERS
        while self.others() and time.monotonic() < deadline:
            time.sleep(0.05)

    def without_own_shm(self, beside: tuple[Path, ...]) -> tuple[Path, ...]:
        """``beside`` (the files moved aside with the database) without the -shm this restore
        made, which is removed (no one else used it)."""
        if not self.made_shm or self.others():
            return beside
        own = os.fstat(self.shm_fd) if self.shm_fd is not None else None
        kept = []
        for path in beside:
            with contextlib.suppress(OSError):
                found = os.stat(path)
                if own is not None and (found.st_dev, found.st_ino) == (own.st_dev, own.st_ino):
                    path.unlink()
                    continue
            kept.append(path)
        self.made_shm = False
        return tuple(kept)

    def _release(self) -> None:
        if self.made_shm and self.shm_fd is not None and not self.others():
            with contextlib.suppress(OSError):  # the -shm made here, still at its name
                found, own = os.stat(self.shm), os.fstat(self.shm_fd)
                if (found.st_dev, found.st_ino) == (own.st_dev, own.st_ino):
                    self.shm.unlink()
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # drops the locks
        self.fds, self.shm_fd = [], None

    def __exit__(self, *exc: object) -> None:
        self._release()


def _locked_by_another(fd: int, start: int, length: int) -> bool:
    """Whether another process holds a lock on ``length`` bytes of ``fd``'s file at ``start``
    (F_GETLK: this process's own locks are not reported, and no lock is taken or dropped)."""
    if sys.platform.startswith("linux") and struct.calcsize("l") == 8:
        layout = "hhxxxxqqixxxx"  # l_type, l_whence, l_start, l_len, l_pid
        asked = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
        found = struct.unpack(layout, fcntl.fcntl(fd, fcntl.F_GETLK, asked))[0]
    elif sys.platform == "darwin" or "bsd" in sys.platform:
        layout = "qqihh"  # l_start, l_len, l_pid, l_type, l_whence
        asked = struct.pack(layout, start, length, 0, fcntl.F_WRLCK, os.SEEK_SET)
        found = struct.unpack(layout, fcntl.fcntl(fd, fcntl.F_GETLK, asked))[3]
    else:  # pragma: no cover - another layout: probe (a lock taken and dropped at once)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
        except OSError:
            return True
        fcntl.lockf(fd, fcntl.LOCK_UN, length, start)
        return False
    return found != fcntl.F_UNLCK


@contextlib.contextmanager
def _shm_left_as_found(backup: Path) -> Iterator[None]:
    """Around reading ``backup`` read only: SQLite makes a -shm beside a file it reads with its
    -wal (mode=ro), and leaves it there. One that was not there before is removed after, unless
    another process has it open (its DMS lock) or it is no longer the file checked: a backup's
    folder that was only read is left as it was found. Called once this process's connections
    to the backup are closed (closing a descriptor drops this process's locks on the file)."""
    shm = backup.with_name(backup.name + "-shm")
    there = os.path.lexists(shm)
    try:
        yield
    finally:
        if not there and fcntl is not None:
            with contextlib.suppress(OSError):
                fd = os.open(shm, os.O_RDWR | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
                try:
                    found, own = os.stat(shm, follow_symlinks=False), os.fstat(fd)
                    same = (found.st_dev, found.st_ino) == (own.st_dev, own.st_ino)
                    if same and not _locked_by_another(fd, _SHM_DMS, 1):
                        shm.unlink()
                finally:
                    os.close(fd)


@contextlib.contextmanager
def _reading(backup: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to ``backup``. Without a -wal beside it (a backup made with
    ``.backup`` or copied while no server ran) it is opened immutable: nothing is created or
    locked beside it; with one, the log is read with it (it may hold the file's last writes),
    and the -shm SQLite makes for that is removed after (``_shm_left_as_found``)."""
    wal = backup.with_name(backup.name + "-wal")
    uri = f"file:{quote(str(backup.resolve()))}?" + ("mode=ro" if wal.exists() else "immutable=1")
    with _shm_left_as_found(backup):
        conn = sqlite3.connect(uri, uri=True)
        try:
            yield conn
        finally:
            conn.close()


def check_backup(backup: Path) -> BackupFacts:
    """What ``backup`` holds, or StoreError in one line naming it: not a file, another
    program's file, a damaged one, one written by a newer slack-hitl."""
    backup = Path(backup)
    if not backup.is_file():
        what = "no such file" if not backup.exists() else "not a file"
        raise StoreError(f"cannot restore from {backup}: {what}")
    try:
        with open(backup, "rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"cannot restore from {backup}: {exc.strerror}") from None
    if not header:  # a backup job that failed (a full disk) leaves one: not "another program's"
        raise StoreError(
            f"cannot restore from {backup}: it is empty (0 bytes), not a backup; check the job"
            " that made it, and pick another backup"
        )
    if header != _SQLITE_HEADER:
        raise StoreError(
            f"cannot restore from {backup}: it is not a slack-hitl database (not an SQLite file)"
        )
    wal = backup.with_name(backup.name + "-wal")
    with_log = f" (read with {wal.name} beside it)" if wal.exists() else ""
    # a log left beside it by another file (a copy over an older backup) damages what is read
    # with it: the backup alone may be whole
    or_log = (
        f", or move {wal.name} aside if it is not this backup's (another file's log left"
        " beside it) and run `hitl restore` again"
        if wal.exists()
        else ""
    )
    try:
        with _reading(backup) as conn:
            found = conn.execute("PRAGMA quick_check").fetchall()
            if [tuple(row) for row in found] != [("ok",)]:
                # on one line: a row may hold a newline ("*** in database main ***\nPage 7 …")
                first = "; ".join(" ".join(str(row[0]).split()) for row in found[:2])
                raise StoreError(
                    f"cannot restore from {backup}: it is damaged{with_log} (PRAGMA quick_check:"
                    f" {first}); pick another backup{or_log}"
                )
            db = Database(conn)
            applied = applied_names(db)  # former names under their current ones
            if not applied:
                tables = [
                    row[0]
                    for row in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                        " AND name NOT LIKE 'sqlite_%' ORDER BY name"
                    )
                ]
                shown = ", ".join(tables[:3]) + (", ..." if len(tables) > 3 else "")
                has = (
                    f"it has table{'s' if len(tables) > 1 else ''} {shown}"
                    if tables
                    else "it has no tables"
                )
                raise StoreError(
                    f"cannot restore from {backup}: it is not a slack-hitl database ({has},"
                    " and no slack-hitl migrations)"
                )
            unknown = [name for name in applied if name not in KNOWN_MIGRATIONS]
            if unknown:
                raise StoreError(
                    f"cannot restore from {backup}: it was written by a newer slack-hitl"
                    f" (schema {unknown[-1]}); update slack-hitl first (in its clone: git pull"
                    " && pip install -e .)"
                )
            items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
            answers, newest = conn.execute(
                "SELECT count(*), max(created_at) FROM answers"
            ).fetchone()
            models = {
                int(version): str(status)
                for version, status in conn.execute("SELECT version, status FROM models")
            }
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"cannot restore from {backup}: it is not a readable slack-hitl database{with_log}"
            f" ({exc}); pick another backup{or_log}"
        ) from None
    pending = len([name for name in KNOWN_MIGRATIONS if name not in applied])
    return BackupFacts(items, answers, newest, models, pending)


ATTEMPT_COLUMNS = (
    "item_id",
    "channel",
    "reason",
    "model_version",
    "predicted_label",
    "confidence",
    "attempted_at",
)


def erasures_in(
    path: str | Path, item_ids: list[str]
) -> tuple[list[tuple[str, str, str | None]], list[tuple[Any, ...]]]:
    """The Slack messages the database at ``path`` knew showed a deleted item, read only: the
    messages `hitl delete` left for the server to delete (``erased_posts``), then any post it
    still records of one of ``item_ids`` (the items it records as deleted), as (channel, ts,
    erased at; None for a post); and its unconfirmed posts of those items (``post_attempts``:
    the message may be in Slack, its ts unknown), as rows of ``ATTEMPT_COLUMNS``. A restore
    queues them in the restored database, which may never have heard of them (posted after
    the backup was made). None of a table the database lacks (an older slack-hitl's); a
    database that cannot be read (damaged) raises ``StoreError``, as ``deletions_in``."""
    messages: list[tuple[str, str, str | None]] = []
    attempts: list[tuple[Any, ...]] = []

    def read(conn: sqlite3.Connection) -> None:
        held = tables_of(conn)
        if "erased_posts" in held:
            messages.extend(
                conn.execute(
                    # oldest first: the messages from id 1 up, after the posts only to look
                    # for (``bot.store.erasure.LOST``), noted from id 0 down
                    "SELECT channel, ts, erased_at FROM erased_posts ORDER BY id > 0, abs(id)"
                )
            )
        for n in range(0, len(item_ids), 500):
            chunk = item_ids[n : n + 500]
            marks = ",".join("?" * len(chunk))
            if "posts" in held:
                messages.extend(
                    conn.execute(
                        f"SELECT channel, ts, NULL FROM posts WHERE item_id IN ({marks})"
                        " ORDER BY id",
                        chunk,
                    )
                )
            if "post_attempts" in held:
                attempts.extend(
                    conn.execute(
                        f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM post_attempts"
                        f" WHERE item_id IN ({marks}) ORDER BY attempted_at",
                        chunk,
                    )
                )

    read_only(path, read)
    once: dict[tuple[str, str], tuple[str, str, str | None]] = {}
    for channel, ts, at in messages:
        once.setdefault((channel, ts), (channel, ts, at))
    return list(once.values()), attempts


RESTORE_TAKEN_BACK = "restore"  # ``posts.taken_back`` of a message the restore took back
# Columns of a post the restore sets itself (``_record_unknown``), not carried from the old row
_SET_BY_RESTORE = ("id", "closed_at", "expired_at", "taken_back", "redraw_seq", "drawn_seq")


@dataclass(frozen=True)
class UnknownPosts:
    """The questions in Slack the database a restore replaces knew and the backup does not
    (``unknown_posts``): posted after the backup was made."""

    columns: tuple[str, ...] = ()  # of each row of ``held``
    held: tuple[tuple[Any, ...], ...] = ()  # posts of items the backup holds, oldest first
    gone: tuple[tuple[str, str], ...] = ()  # (channel, ts) of items it does not hold
    # How many there are when the backup is not an earlier copy of the database
    # (``_same_database``): none of them is carried over (``held`` and ``gone`` are empty)
    unrelated: int = 0
    # Why the database that was there could not be read (damaged), in SQLite's words: which
    # questions were posted after the backup is not known, and none is carried over
    error: str | None = None

    def __bool__(self) -> bool:
        return bool(self.held or self.gone)


def unknown_posts(db: Path, backup: Path) -> UnknownPosts:
    """The Slack messages the database at ``db`` records (``posts``) that ``backup`` knows
    neither as a post nor as a message left to delete (``erased_posts``), read only: the
    questions the server posted after the backup was made, whose buttons still work. Not
    those of the items ``db`` records as deleted (``deleted_items``): a restore leaves them
    to the erasure's path (``erasures_in``). Read by (channel, ts) through the backup's
    unique index, nothing held in memory but the rows found. Nothing when either is not a
    readable slack-hitl database (``check_backup`` then says what is wrong with the backup).

    Only when the backup is an earlier copy of the database (``_same_database``): the posts
    of another database were not posted after it, and carried over they would all be deleted
    from Slack by the next `hitl serve`. Otherwise they are only counted (``unrelated``)."""
    if not db.exists():
        return UnknownPosts()

    def uri(path: Path) -> str:  # as ``_reading``: nothing left beside the backup
        wal = path.with_name(path.name + "-wal")
        return f"file:{quote(str(path.resolve()))}?" + (
            "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        )

    try:
        with (
            _shm_left_as_found(backup),
            contextlib.closing(sqlite3.connect(uri(db), uri=True)) as conn,
        ):
            # its schema first: ATTACH beside a damaged one blames the backup (``changes_since``)
            conn.execute("SELECT count(*) FROM main.sqlite_master").fetchone()
            return _unknown_posts(conn, uri(backup))
    except sqlite3.Error as exc:  # damaged (an unreadable backup is refused by its check)
        return UnknownPosts(error=str(exc))


def _unknown_posts(conn: sqlite3.Connection, backup: str) -> UnknownPosts:
    """``unknown_posts`` on ``conn`` (the database that was there), the backup at the URI
    ``backup`` attached."""
    conn.execute("ATTACH DATABASE ? AS backup", [backup])

    def tables(schema: str) -> set[str]:
        return {
            row[0]
            for row in conn.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'")
        }

    def columns(schema: str) -> list[str]:
        return [row[1] for row in conn.execute(f"PRAGMA {schema}.table_info(posts)")]

    theirs = set(columns("backup"))
    carried = [c for c in columns("main") if c in theirs and c not in _SET_BY_RESTORE]
    if not {"item_id", "channel", "ts"} <= set(carried):
        return UnknownPosts()
    where = "NOT EXISTS (SELECT 1 FROM backup.posts b WHERE b.channel = p.channel AND b.ts = p.ts)"
    if "erased_posts" in tables("backup"):
        where += (
            " AND NOT EXISTS (SELECT 1 FROM backup.erased_posts e"
            " WHERE e.channel = p.channel AND e.ts = p.ts)"
        )
    if "deleted_items" in tables("main"):
        where += " AND p.item_id NOT IN (SELECT item_id FROM main.deleted_items)"
    if not _same_database(conn, tables("main"), tables("backup")):
        [(unrelated,)] = conn.execute(f"SELECT count(*) FROM main.posts p WHERE {where}")
        return UnknownPosts(unrelated=int(unrelated))
    held: list[tuple[Any, ...]] = []
    gone: list[tuple[str, str]] = []
    listed = ", ".join(f"p.{name}" for name in carried)
    for *row, known in conn.execute(
        f"SELECT {listed}, EXISTS (SELECT 1 FROM backup.items i WHERE i.id = p.item_id)"
        f" FROM main.posts p WHERE {where} ORDER BY p.posted_at, p.id"
    ):
        if known:
            held.append(tuple(row))
        else:
            found = dict(zip(carried, row, strict=True))
            gone.append((str(found["channel"]), str(found["ts"])))
    return UnknownPosts(tuple(carried), tuple(held), tuple(gone))


@dataclass(frozen=True)
class Changes:
    """What changed after the backup was made that the restore tells or redraws
    (``changes_since``), in a scratch database beside the database (``path``), as few columns
    as the carry-over needs: ``told``, the id of each item a webhook sent after the backup was
    made may have told its producer about; ``urls``, each item's ``callback_url`` registered
    after the backup was made (the backup's item has none); ``redraw``, the (channel, ts) of
    each Slack message both databases hold, closed in the backup, that was drawn or due a
    drawing after it. The counts are of those rows. ``error``: why what changed could not be
    read (in one line; nothing is told or redrawn then), None when it was read."""

    path: Path | None = None
    told: int = 0
    redraw: int = 0
    urls: int = 0
    error: str | None = None

    def __bool__(self) -> bool:
        return bool(self.told or self.redraw or self.urls)


# ``last_error`` of the delivery a restore queues to restate an item (``_restate_sql``), until
# its first attempt: what a look at the deliveries shows. Short: a restore may queue one per
# item. Only said: the row is known by its ``restates`` (m047), never by this note.
RESTATED_BY_RESTORE = "queued by hitl restore, not sent yet"


def changes_since(db: Path, backup: Path, scratch: Path) -> Changes:
    """Compare the database at ``db`` with ``backup`` (an earlier copy of it:
    ``_same_database``), read only, and write what the restore carries into ``scratch`` (a new
    file, made here), in SQL: nothing held in memory, whatever the number of items.

    ``told``: an item the backup holds whose newest delivery that may have reached its
    producer (delivered, or attempted and not cancelled, or an earlier restore's restatement
    waiting unsent) is not in the backup (matched by its ``key``: ``_told_since``), or is
    there waiting unsent (a backup made while it waited: restored, it would go again under the
    key that told something else; ``resent``, each such key, which the carry-over replaces
    with a new one): a webhook
    sent after the backup was made may have told its producer something the restored
    database does not say (a label taken back, a label retired or added back, an Undo, a
    relabel), so after the restore it is told the restored state, whatever it was told (one
    restatement too many is harmless: a webhook is delivered at least once and tells the item
    as it is). ``urls``: a ``callback_url`` a producer
    registered after the backup was made, carried into the restored item, so that its
    producer hears what the restore changed and what comes next. ``redraw``: a post both
    hold, closed in the backup, whose drawing, redraw or close the database that was there
    recorded after the backup was made: Slack may show what the restored database does not
    know (a question reopened after the backup keeps its buttons). An open one is drawn at
    start all the same (``Redrawer.redraw_open``).

    Nothing when there is no database or the backup is not an earlier copy of it; nothing,
    with ``error`` saying why, when either cannot be read (a damaged database is what a
    restore is for) or the scratch file cannot be written (a full disk): the restore goes on
    without the tells and redraws, and says so."""
    scratch.unlink(missing_ok=True)
    if not db.exists():
        return Changes()
    try:  # it holds items' ids and callback URLs: readable by the owner only, as the backup
        os.close(os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        return Changes(error=_unread(f"cannot make {scratch.name} beside it: {exc.strerror}"))

    def uri(path: Path) -> str:  # as ``_reading``: nothing left beside the backup
        wal = path.with_name(path.name + "-wal")
        return f"file:{quote(str(path.resolve()))}?" + (
            "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        )

    told = redraw = urls = 0
    try:  # autocommit: each write into the scratch file stays there
        conn = sqlite3.connect(uri(db), uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        return Changes(error=_unread(exc))
    with _shm_left_as_found(backup), contextlib.closing(conn):
        try:
            # its schema read first: ATTACH beside a damaged one fails as "unable to open
            # database" naming the backup's URI, which would send the reader to the wrong file
            conn.execute("SELECT count(*) FROM main.sqlite_master").fetchone()
            conn.execute("ATTACH DATABASE ? AS backup", [uri(backup)])
            conn.execute("ATTACH DATABASE ? AS scratch", [f"file:{quote(str(scratch))}?mode=rwc"])
            conn.execute("PRAGMA scratch.journal_mode = OFF")  # a new file, removed after
            conn.execute("PRAGMA scratch.synchronous = OFF")

            def tables(schema: str) -> set[str]:
                return {
                    row[0]
                    for row in conn.execute(
                        f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'"
                    )
                }

            def columns(schema: str, table: str) -> set[str]:
                return {row[1] for row in conn.execute(f"PRAGMA {schema}.table_info({table})")}

            main, theirs = tables("main"), tables("backup")
            if not _same_database(conn, main, theirs):
                return Changes()
            if {"items", "deliveries"} <= main & theirs:
                told = _told_since(
                    conn, columns("main", "deliveries"), columns("backup", "deliveries")
                )
            if "items" in main & theirs and "callback_url" in (
                columns("main", "items") & columns("backup", "items")
            ):
                conn.execute(
                    "CREATE TABLE scratch.urls AS SELECT i.id AS item_id,"
                    " i.callback_url AS callback_url FROM main.items i JOIN backup.items b"
                    " ON b.id = i.id WHERE coalesce(b.callback_url, '') = ''"
                    " AND coalesce(i.callback_url, '') != ''"
                )
                urls = conn.execute("SELECT count(*) FROM scratch.urls").fetchone()[0]
            drawn = ["closed_at", "redraw_seq", "drawn_seq", "expired_at", "taken_back"]
            drawn = [c for c in drawn if c in columns("main", "posts") & columns("backup", "posts")]
            if "closed_at" in drawn:
                # an open one is drawn at start anyway (``Redrawer.redraw_open``)
                differs = " OR ".join(f"p.{c} IS NOT b.{c}" for c in drawn)
                conn.execute(
                    "CREATE TABLE scratch.redraw AS SELECT p.channel AS channel, p.ts AS ts"
                    " FROM main.posts p JOIN backup.posts b ON b.channel = p.channel"
                    f" AND b.ts = p.ts WHERE b.closed_at IS NOT NULL AND ({differs})"
                )
                redraw = conn.execute("SELECT count(*) FROM scratch.redraw").fetchone()[0]
        except sqlite3.Error as exc:
            return Changes(error=_unread(exc))
    if not (told or redraw or urls):
        scratch.unlink(missing_ok=True)
        return Changes()
    return Changes(scratch, told, redraw, urls)


def _unread(why: object) -> str:
    """``Changes.error``, for ``why`` (an exception): a phrase, said after "producers were not
    told"."""
    return (
        "what changed after the backup was made could not be read from the database that was"
        f" there ({why})"
    )


def _told_since(conn: sqlite3.Connection, ours: set[str], theirs: set[str]) -> int:
    """``changes_since``'s ``told`` (see there), into ``scratch.told``: one INSERT … SELECT
    over the newest delivery that may have told each item's producer in the database that was
    there (``main``; its columns ``ours``), each looked up in the backup (its columns
    ``theirs``) by its ``key`` (m046), through the backup's unique index: what a receiver
    dedupes on, kept by a restore and never handed out again. A database older than m046 has
    none: there a delivery that went out had its id as its key (m046 gave each such row its id
    as text), looked up by the id. A delivery the backup holds unsent while it went out in
    ``main`` is not held: what the producer took under its key is ``main``'s (``_resent``).

    A delivery an earlier restore queued that has not gone yet (``restates``, m047, attempts
    0) stands for the webhook it restates, which may have told the producer and went with the
    database that restore replaced: the item is told unless the backup holds that webhook (a
    restore undone before `hitl serve` ran: the producer's last word is the backup's), gone
    out there, or that delivery itself. Each row of ``scratch.told`` keeps the key of the
    webhook its restatement stands for (``restates``). How many."""
    key = "d.key" if "key" in ours else "CAST(d.id AS TEXT)"

    def in_backup(wanted: str, went: str) -> str:
        """A delivery of d's item the backup holds, by its key: one that went out there too,
        or one that did not go out after the backup was made either (``went``: SQL, whether
        it did)."""
        if "key" in theirs:
            found = f"b.key = {wanted}"
        else:  # the id it went out with, and only a key that is one
            found = f"b.id = CAST({wanted} AS INTEGER) AND CAST(b.id AS TEXT) = {wanted}"
        return (
            f"EXISTS (SELECT 1 FROM backup.deliveries b WHERE b.item_id = d.item_id AND {found}"
            f" AND NOT ({_UNSENT.format(t='b')} AND {went}))"
        )

    maybe_told = "(t.status = 'delivered' OR (t.attempts > 0 AND t.status != 'cancelled'))"
    held, restates = in_backup(key, _WENT_OUT.format(t="d")), key
    if "restates" in ours:
        maybe_told = (
            "(t.status = 'delivered' OR ((t.attempts > 0 OR t.restates IS NOT NULL)"
            " AND t.status != 'cancelled'))"
        )
        unsent = f"(d.restates IS NOT NULL AND {_UNSENT.format(t='d')})"
        # the webhook it restates may have gone out (in a database an earlier restore replaced)
        held = f"({held} OR ({unsent} AND {in_backup('d.restates', '1')}))"
        restates = f"CASE WHEN {unsent} THEN d.restates ELSE {key} END"
    if "key" in ours and "key" in theirs:
        _resent(conn, "restates" in ours)
    conn.execute("CREATE TABLE scratch.told (item_id TEXT NOT NULL, restates TEXT)")
    conn.execute(
        f"INSERT INTO scratch.told (item_id, restates) SELECT d.item_id, {restates}"
        " FROM main.deliveries d WHERE d.id IN (SELECT max(t.id) FROM main.deliveries t"
        f" WHERE {maybe_told} GROUP BY t.item_id)"
        " AND EXISTS (SELECT 1 FROM backup.items i WHERE i.id = d.item_id)"
        f" AND NOT {held} ORDER BY d.id"
    )
    return conn.execute("SELECT count(*) FROM scratch.told").fetchone()[0]


# A delivery row ``{t}`` that waits with no attempt made: it tells its item as it is when it
# first goes, under its key. And one that went out: what its key carried may have reached
# the producer.
_UNSENT = "({t}.status = 'pending' AND {t}.attempts = 0)"
_WENT_OUT = "({t}.status = 'delivered' OR ({t}.attempts > 0 AND {t}.status != 'cancelled'))"


def _resent(conn: sqlite3.Connection, restates: bool) -> None:
    """``_told_since``'s ``scratch.resent``: the key of each delivery the backup holds unsent
    (a backup made while it waited) that went out after the backup was made, in the database
    that was there (``main``), or that an earlier restore's restatement waiting there stands
    for (``restates``: it went out in the database that restore replaced). The restored row
    would go again under that key, telling the restored state: a producer deduping on
    X-HITL-Delivery drops it, and keeps what the key told first (a label taken back after
    the backup). ``_carry_into`` gives each a new key (``_tell_producers``); ``_told_since``
    tells its item. Two reads by key (the unique index), over the pending rows of each."""
    conn.execute(
        "CREATE TABLE scratch.resent AS SELECT b.key AS key FROM backup.deliveries b"
        f" WHERE {_UNSENT.format(t='b')} AND b.key IS NOT NULL AND EXISTS (SELECT 1"
        f" FROM main.deliveries t WHERE t.key = b.key AND {_WENT_OUT.format(t='t')})"
    )
    if restates:
        conn.execute(
            "INSERT INTO scratch.resent (key) SELECT b.key FROM main.deliveries t"
            " JOIN backup.deliveries b ON b.key = t.restates"
            f" WHERE {_UNSENT.format(t='t')} AND t.restates IS NOT NULL"
            f" AND {_UNSENT.format(t='b')}"
        )


def _same_database(conn: sqlite3.Connection, main: set[str], backup: set[str]) -> bool:
    """Whether the backup attached to ``conn`` (as ``backup``) is an earlier copy of the
    database (``main``; their tables given): both record the same first migration, applied
    when the database was made (its name and time, to the microsecond: a copy keeps it, a
    database made apart has its own), or they know a Slack message in common (a post of one
    is a post or a deleted message of the other: a ts is unique in its channel)."""
    table = migrations.migrations_table
    first = "SELECT name, applied_at FROM {}.{} WHERE migration_set = ? ORDER BY rowid LIMIT 1"
    made = [
        conn.execute(first.format(schema, table), [migrations.name]).fetchone()
        if table in names
        else None
        for schema, names in (("main", main), ("backup", backup))
    ]
    if made[0] is not None and made[0] == made[1]:
        return True
    shared = [("main.posts", "backup.posts")]
    if "erased_posts" in backup:
        shared.append(("main.posts", "backup.erased_posts"))
    if "erased_posts" in main:
        shared.append(("backup.posts", "main.erased_posts"))
    return any(
        conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM {ours} p WHERE EXISTS"
            f" (SELECT 1 FROM {theirs} o WHERE o.channel = p.channel AND o.ts = p.ts))"
        ).fetchone()[0]
        for ours, theirs in shared
    )


def _carry_into(
    backup: Path, copy: Path, found: UnknownPosts, changes: Changes = Changes()
) -> tuple[int, int, int, int]:
    """Record ``found`` in ``copy``, the backup's copy not yet in place (``_record_unknown``),
    and ``changes`` (``_carry_urls``, ``_tell_producers``, ``_redraw_changed``), on disk when
    this returns; how many were taken back and left to delete, how many items' producers have
    a webhook queued to tell them the restored state, and how many messages are due a redraw.

    The copy is upgraded first (as the next hitl command would: ``Store.open``): a backup
    made by an older slack-hitl may lack what the record needs (``erased_posts`` before m030,
    ``posts.taken_back`` before m034). The record is then written without a journal or a log,
    as ``_copy`` writes the copy: the copy is only put in place once all of it is on disk, and
    thrown away on any failure (``restore``), so nothing needs rolling back, and the room a
    restore needs is the copy's and what it adds (a write-ahead log of a carry-over as large
    as the backup would need as much again). The file is left in WAL mode, as ``Store.open``
    leaves it.
    StoreError (in one line) if the upgrade or the record fails."""
    from bot.store.core import Store, utc_now  # not at the top: bot.store imports this module

    try:
        Store.open(copy, create=False).close()
        conn = sqlite3.connect(str(copy), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = OFF")  # a copy, thrown away on a failure
            conn.execute("PRAGMA synchronous = OFF")  # fsynced once, below
            if changes.path is not None:
                conn.execute("ATTACH DATABASE ? AS restoring", [str(changes.path)])
            conn.execute("BEGIN IMMEDIATE")
            counts = _record_unknown(conn, found)
            if changes.urls:
                _carry_urls(conn)
            told = _tell_producers(conn, utc_now()) if changes.told else 0
            redrawn = _redraw_changed(conn) if changes.redraw else 0
            conn.execute("COMMIT")
            if changes.path is not None:
                conn.execute("DETACH DATABASE restoring")
            conn.execute("PRAGMA journal_mode = WAL")  # as Store.open leaves it
        finally:
            conn.close()  # the last connection: its -wal and -shm are removed
        fd = os.open(copy, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except StoreError as exc:  # its upgrade (``Store.open``), in one line
        raise StoreError(
            f"cannot restore from {backup}: upgrading it to record the Slack messages posted"
            f" and the webhooks sent after it was made failed ({exc})"
        ) from None
    except sqlite3.DatabaseError as exc:
        if changes and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            raise _NoRoom(str(exc)) from None
        raise StoreError(
            f"cannot restore from {backup}: recording the Slack messages posted and the webhooks"
            f" sent after it was made failed ({exc})"
        ) from None
    finally:
        for side in ("-wal", "-shm"):  # none once closed; a failure's, only the copy's
            copy.with_name(copy.name + side).unlink(missing_ok=True)
    return (*counts, told, redrawn)


class _NoRoom(Exception):
    """``_carry_into`` ran out of disk (SQLITE_FULL) recording ``changes``: its copy is not
    usable (written without a journal), and one without them may fit (``_restore_held``)."""


def _carry_urls(conn: sqlite3.Connection) -> int:
    """In ``_carry_into``'s transaction: the ``callback_url`` of each item of
    ``restoring.urls`` (``changes_since``: registered after the backup was made; the restored
    item has none) set in the restored item, as the producer registered it (a URL is only
    ever set where there is none: ``Producer.add_items``). Returns how many."""
    return conn.execute(
        "UPDATE main.items SET callback_url = (SELECT u.callback_url FROM restoring.urls u"
        " WHERE u.item_id = items.id) WHERE id IN (SELECT item_id FROM restoring.urls)"
        " AND coalesce(callback_url, '') = ''"
    ).rowcount


def _restate_sql(items: str, restates: str) -> tuple[str, str]:
    """Two statements restating each item ``items`` (a FROM clause naming the item table
    ``i``) that has a ``callback_url`` (parameters: ``now``, ``restated``), one webhook an
    item, which tells the item as it is when it goes (``Store.webhook_payload``: ``"label":
    null`` for one open again). ``restates`` (SQL: the key of the webhook it restates, ''
    when not known) marks it (m047): a webhook sent after the backup was made may have told
    its producer, which ``Store._maybe_told`` needs to know to tell a label taken back, and a
    second restore before it goes carries it (``_told_since``).

    First an UPDATE: an item with a delivery waiting unsent (a backup made while it waited)
    is told by that one, marked (a second delivery would tell the same under another key).
    Then an INSERT … SELECT for each other item: a delivery due at once, no attempt counted
    (its first send is attempt 1, as any delivery's)."""
    from bot.store.migrations import DELIVERY_KEY_SQL, DELIVERY_RECEIVER_SQL

    waiting = (
        "SELECT 1 FROM main.deliveries w WHERE w.item_id = i.id"
        " AND w.status = 'pending' AND w.attempts = 0"
    )
    mark = (
        f"UPDATE main.deliveries SET restates = (SELECT {restates} {items} AND i.id ="
        " deliveries.item_id) WHERE status = 'pending' AND attempts = 0 AND restates IS NULL"
        f" AND item_id IN (SELECT i.id {items})"
    )
    insert = (
        "INSERT INTO main.deliveries (item_id, url, attempts, next_attempt_at, status,"
        " last_error, created_at, receiver, key, restates) SELECT i.id, i.callback_url, 0,"
        f" :now, 'pending', :restated, :now, {DELIVERY_RECEIVER_SQL.format(url='i.callback_url')},"
        f" {DELIVERY_KEY_SQL}, {restates} {items} AND coalesce(i.callback_url, '') != ''"
        f" AND NOT EXISTS ({waiting})"
    )
    return mark, insert


def _restate(
    conn: sqlite3.Connection, items: str, restates: str, params: dict, order: str = "i.rowid"
) -> int:
    """``_restate_sql``'s statements run (the new rows queued in ``order``): how many items
    this makes a waiting webhook restate (marked, or queued; one that waits restating an
    earlier webhook already is not counted)."""
    mark, insert = _restate_sql(items, restates)
    waiting = (
        "SELECT 1 FROM main.deliveries w WHERE w.item_id = i.id AND w.status = 'pending'"
        " AND w.attempts = 0"
    )
    marked = conn.execute(
        f"SELECT count(*) {items} AND EXISTS ({waiting})"
        f" AND NOT EXISTS ({waiting} AND w.restates IS NOT NULL)",
        params,
    ).fetchone()[0]
    conn.execute(mark, params)
    return marked + conn.execute(f"{insert} ORDER BY {order}", params).rowcount


def _tell_producers(conn: sqlite3.Connection, now: str) -> int:
    """In ``_carry_into``'s transaction: a webhook restating each item of ``restoring.told``
    (``changes_since``) that has a webhook destination in the restored database (its
    ``callback_url``, carried by ``_carry_urls`` where the backup's item had none):
    ``_restate_sql``, nothing held per item. A delivery the backup holds unsent whose key
    went out after the backup was made (``restoring.resent``: ``_resent``) gets a new key
    first: that key told the producer something else, and one key carries one body. Returns
    how many items are told."""
    from bot.store.migrations import DELIVERY_KEY_SQL

    has_resent = conn.execute(
        "SELECT 1 FROM restoring.sqlite_master WHERE type = 'table' AND name = 'resent'"
    ).fetchone()
    if has_resent:
        conn.execute(
            f"UPDATE main.deliveries SET key = {DELIVERY_KEY_SQL} WHERE status = 'pending'"
            " AND attempts = 0 AND key IN (SELECT key FROM restoring.resent)"
        )
    return _restate(
        conn,
        "FROM restoring.told t JOIN main.items i ON i.id = t.item_id WHERE 1",
        "t.restates",
        {"now": now, "restated": RESTATED_BY_RESTORE},
        order="t.rowid",
    )


def tell_undeleted(store: Any, item_ids: list[str]) -> int:
    """After a restore with --undelete (``bot.cli_restore``): a webhook restating each of
    ``item_ids`` (items the database that was there records as deleted after the backup was
    made, kept) that has a ``callback_url`` (``_restate_sql``), in one transaction. Their
    deliveries went with them, so whether a webhook told their producer something after the
    backup was made cannot be known: each is told what the restored database says, once too
    often at worst, and a delivery of theirs the backup holds unsent gets a new key (it may
    have gone out under its own before they were deleted). Returns how many were told."""
    if not item_ids:
        return 0
    from bot.store.migrations import DELIVERY_KEY_SQL

    ids = json.dumps(item_ids)
    with store._immediate():
        conn = store.db.conn
        conn.execute(
            f"UPDATE main.deliveries SET key = {DELIVERY_KEY_SQL} WHERE status = 'pending'"
            " AND attempts = 0 AND item_id IN (SELECT value FROM json_each(:ids))",
            {"ids": ids},
        )
        return _restate(
            conn,
            "FROM main.items i WHERE i.id IN (SELECT value FROM json_each(:ids))",
            "''",
            {"now": store.now(), "restated": RESTATED_BY_RESTORE, "ids": ids},
        )


def _redraw_changed(conn: sqlite3.Connection) -> int:
    """In ``_carry_into``'s transaction: the posts of ``restoring.redraw`` (``changes_since``)
    due a redraw (``redraw_seq``), which `hitl serve` makes at start: each message drawn as
    the restored database has it (a question decided in it, reopened after the backup, loses
    its buttons). Returns how many."""
    return conn.execute(
        "UPDATE main.posts SET redraw_seq = max(redraw_seq, drawn_seq) + 1 WHERE id IN"
        " (SELECT p.id FROM restoring.redraw r JOIN main.posts p ON p.channel = r.channel"
        " AND p.ts = r.ts)"
    ).rowcount


def _record_unknown(dest: sqlite3.Connection, found: UnknownPosts) -> tuple[int, int]:
    """Record ``found`` (``unknown_posts``) in the restored copy ``dest``, in the caller's
    transaction (``_carry_into``): each post of an item the backup holds as a question taken back
    (``taken_back`` 'restore': closed, expired now, due for a redraw, which `hitl serve`
    makes at start: no buttons, its item asked again when its turn comes, or its decision
    shown), and the messages of items the backup does not hold left to delete
    (``erased_posts``), as a deleted item's are. The taken-back ones are numbered below the
    backup's posts (from 0 down), so that an item's latest post (the highest id, which a click
    redraws) stays its question in the backup or the one the server posts next. A backup with
    no post of its own (none, or only those an earlier restore numbered below 0) has them
    from 1 up instead: SQLite gives the next post the highest id + 1, which would be 0 or
    less after them, and 0 is ``record_post``'s "item deleted". ``dest`` has this
    slack-hitl's schema (``_carry_into`` upgrades it first); only the columns it has are
    written all the same. Returns how many were taken back and how many left to delete."""
    have = {row[1] for row in dest.execute("PRAGMA table_info(posts)")}
    tables = {row[0] for row in dest.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    set_here = {
        "closed_at": now,
        "expired_at": now,
        "taken_back": RESTORE_TAKEN_BACK,
        "redraw_seq": 1,
        "drawn_seq": 0,
    }
    set_here = {name: value for name, value in set_here.items() if name in have}
    names = ["id", *found.columns, *set_here]
    marks = ", ".join("?" * len(names))
    gone = found.gone if "erased_posts" in tables else ()
    top, bottom = dest.execute("SELECT max(id), min(id) FROM posts").fetchone()
    held = len(found.held)
    # oldest first, each id below the next one's
    first = 1 if top is None or top < 0 else min(0, bottom) - held
    if found.held:  # an empty list is prepared all the same: no such table, no such column
        dest.executemany(
            f"INSERT OR IGNORE INTO posts ({', '.join(names)}) VALUES ({marks})",
            [(first + n, *row, *set_here.values()) for n, row in enumerate(found.held)],
        )
    if gone:
        dest.executemany(
            "INSERT OR IGNORE INTO erased_posts (channel, ts, erased_at) VALUES (?, ?, ?)",
            [(channel, ts, now) for channel, ts in gone],
        )
    return held, len(gone)


def kept_name(db: Path) -> Path:
    """Where the database that was at ``db`` is kept: ``<db>.before-restore``, or
    ``<db>.before-restore.2`` and so on when an earlier restore's is there (with its files)."""
    n = 1
    while True:
        kept = db.with_name(db.name + KEPT + (f".{n}" if n > 1 else ""))
        names = [kept, *(kept.with_name(kept.name + side) for side in SIDE_FILES)]
        if not any(os.path.lexists(name) for name in names):
            return kept
        n += 1


def restore(
    db: Path,
    backup: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    checking: Callable[[], None] | None = None,
) -> Restored:
    """Put ``backup`` in place of the database at ``db`` (see the module's docstring).

    ``checking()`` is called as the backup's check begins (it reads the whole file), and
    ``progress(done, total)`` with the pages copied so far. Raises StoreError in one
    line when a server or another process has the database, or the backup is refused
    (``check_backup``)."""
    with restoring(db, backup, progress=progress, checking=checking) as done:
        return done


@contextlib.contextmanager
def restoring(
    db: Path,
    backup: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    checking: Callable[[], None] | None = None,
) -> Iterator[Restored]:
    """``restore``, with the database's server lock still held for the block, the restored
    database in place: no `hitl serve` or `hitl demo` starts on it until the block ends, so
    what must be done in it first (`hitl restore`: the items deleted and the people anonymised
    after the backup was made, deleted and anonymised again) is done before a server can post
    or answer what the backup holds of them."""
    db = Path(db)
    from bot.store.problems import path_problem

    if (problem := path_problem(db)) is not None:  # a device (/dev/null): nothing made beside it
        raise problem
    target = Path(os.path.realpath(db))  # a symlink's file, not the link
    backup = Path(backup)
    if not target.parent.is_dir():
        raise StoreError(f"cannot restore to {db}: its folder {db.parent} does not exist")
    if target.exists() and backup.exists() and os.path.samefile(target, backup):
        raise StoreError(f"cannot restore {db} from itself: name a backup of it")
    if (holder := other_server(target)) is not None:
        if (words := holder_words(holder)) is not None:  # another restore, a demo starting
            raise StoreError(f"cannot restore {db} now: {words}")
        raise StoreError(
            f"cannot restore {db} while a hitl server or demo runs on it ({holder}): stop it"
            " first, then run `hitl restore` again"
        )
    busy = (
        f"cannot restore {db}: another process has it open (a hitl import, retrain or"
        " stats, or sqlite3?): let it finish or stop it, then run `hitl restore` again"
    )
    # and no server starts until the block ends (the files swapped, and the caller's steps in the
    # restored database done); a lock file made here is removed
    with server_lock(target, leave_no_file=True, kind="restore"):
        if in_use(target):
            raise StoreError(busy)
        # Read before the write lock is held: closing a connection to the file would drop
        # the locks this process holds on it (``_WritersHeld``). Only a server posts, and no
        # server starts meanwhile (its lock is held here).
        unknown = unknown_posts(target, backup)
        # what changed after the backup was made that the restore tells or redraws, in a
        # scratch file (removed when done): as large as the changes, none of it in memory
        scratch = target.with_name(target.name + ".restoring-changes")
        try:
            changes = changes_since(target, backup, scratch)
            done = _restore_held(db, target, backup, busy, (unknown, changes), progress, checking)
        finally:
            scratch.unlink(missing_ok=True)
        facts, kept, beside, counts, not_told = done
        if not db.is_symlink():  # named as the database was (the same folder)
            kept = db.with_name(kept.name) if kept is not None else None
            beside = tuple(db.with_name(path.name) for path in beside)
        taken_back, to_delete, told, redrawn = counts
        yield Restored(
            facts,
            kept,
            beside,
            taken_back,
            to_delete,
            upgraded=bool(unknown or changes) and facts.pending > 0,
            not_carried=unknown.unrelated,
            told=told,
            redrawn=redrawn,
            not_told=not_told,
            posts_unread=unknown.error,
        )


def _restore_held(
    db: Path,
    target: Path,
    backup: Path,
    busy: str,
    carry: tuple[UnknownPosts, Changes],
    progress: Callable[[int, int], None] | None,
    checking: Callable[[], None] | None,
) -> tuple[BackupFacts, Path | None, tuple[Path, ...], tuple[int, int, int, int], str | None]:
    """``restore``'s check, copy, carry-over (``_carry_into``) and swap, the writers held off
    the database (``_WritersHeld``) until the swap is done: the backup's facts, the database
    kept and the files moved beside it, ``_carry_into``'s counts, and why producers were not
    told (``Restored.not_told``). A disk without room for what the restore tells and redraws
    (``_NoRoom``) gets the backup copied again and only the Slack messages carried over: the
    restore is done, and says what it did not tell."""
    unknown, changes = carry
    counts = (0, 0, 0, 0)  # taken back, left to delete, told, redrawn
    not_told = changes.error
    with _WritersHeld(target, busy) as held:  # until the swap: see the module docstring
        if checking is not None:
            checking()
        facts = check_backup(backup)
        copy = target.with_name(target.name + ".restoring")
        _copy(backup, copy, target, progress)
        try:
            if unknown or changes:  # the copy upgraded first (``_carry_into``)
                try:
                    counts = _carry_into(backup, copy, unknown, changes)
                except _NoRoom as exc:  # restored all the same, without what it would tell
                    copy.unlink(missing_ok=True)
                    _copy(backup, copy, target, None)
                    not_told = (
                        f"the disk had no room for them ({exc}; a restore that tells needs about"
                        " 1 KB free per item told besides the backup's size)"
                    )
                    counts = _carry_into(backup, copy, unknown) if unknown else counts
            if held.others() or (not held.existed and os.path.lexists(target)):
                raise StoreError(
                    f"cannot restore {db}: another process opened it while the backup was"
                    " copied (a hitl import, retrain or stats, or sqlite3?); nothing was"
                    " changed: let it finish, then run `hitl restore` again"
                )
            with _interrupts_held():
                kept, beside = _swap(target, copy)
        except BaseException:
            copy.unlink(missing_ok=True)
            raise
        held.wait_for_others()  # one that opened it in the instant before the swap
        beside = held.without_own_shm(beside)
    return facts, kept, beside, counts, not_told


def _copy(
    backup: Path, copy: Path, target: Path, progress: Callable[[int, int], None] | None
) -> None:
    """Copy ``backup`` into the new file ``copy`` with SQLite's backup API (a consistent copy
    of every page, its own -wal's included), in steps; on disk when this returns."""
    for name in (copy, *(copy.with_name(copy.name + side) for side in SIDE_FILES)):
        name.unlink(missing_ok=True)  # an earlier restore's, stopped half way: only a copy
    try:
        old = os.stat(target)
    except OSError:
        old = None
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if old is not None:  # the mode (and, as root, the owner) the database had
            os.fchmod(fd, old.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.fchown(fd, old.st_uid, old.st_gid)
    finally:
        os.close(fd)
    done = False
    try:
        with _reading(backup) as source:
            dest = sqlite3.connect(str(copy))
            try:
                dest.execute("PRAGMA journal_mode = OFF")  # a new file: nothing to roll back
                dest.execute("PRAGMA synchronous = OFF")  # fsynced once, below
                source.backup(
                    dest,
                    pages=STEP_PAGES,
                    progress=(lambda _s, left, total: progress(total - left, total))
                    if progress is not None
                    else None,
                )
            finally:
                dest.close()
        fd = os.open(copy, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        done = True
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot restore from {backup}: copying it failed ({exc})") from None
    finally:
        if not done:
            copy.unlink(missing_ok=True)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C (and the signals `hitl` handles as it: SIGTERM, SIGHUP) wait until the swap's
    few renames are done: stopped between them, the database would stay in place without its
    -wal, moved aside with the kept file. The interrupt is raised once they are done (the
    restore is then done). Only the main thread handles signals: elsewhere, nothing to hold."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple[int, Any]] = []
    before = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        handler = signal.getsignal(sig)
        if callable(handler):  # one Python handles (not the default, not ignored)
            before[sig] = signal.signal(sig, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if held:
            signum, frame = held[0]
            before[signum](signum, frame)


def _swap(target: Path, copy: Path) -> tuple[Path | None, tuple[Path, ...]]:
    """Keep the database at ``target`` and its -wal/-shm under ``kept_name`` (the file keeps its
    name at ``target`` until the copy replaces it), then rename ``copy`` into place."""
    beside = [target.with_name(target.name + side) for side in SIDE_FILES]
    beside = [path for path in beside if os.path.lexists(path)]
    if not target.exists() and not beside:
        os.replace(copy, target)
        _fsync_folder(target.parent)
        return None, ()
    kept = kept_name(target)
    moved: list[Path] = []
    if target.exists():
        try:
            os.link(target, kept)  # no moment without a database at ``target``
        except OSError:
            os.rename(target, kept)
    for path in beside:  # the log goes with its file: SQLite opens them as one
        side = kept.with_name(kept.name + path.name[len(target.name) :])
        os.rename(path, side)
        moved.append(side)
    os.replace(copy, target)
    _fsync_folder(target.parent)
    return (kept if kept.exists() else None), tuple(moved)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a folder
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
