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
that is moved aside.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlite_utils import Database

from bot.errors import StoreError
from bot.store.lock import other_server, server_lock
from bot.store.migrations import KNOWN_MIGRATIONS, migrations

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


@contextlib.contextmanager
def _reading(backup: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to ``backup``. Without a -wal beside it (a backup made with
    ``.backup`` or copied while no server ran) it is opened immutable: nothing is created or
    locked beside it; with one, the log is read with it (it may hold the file's last writes)."""
    wal = backup.with_name(backup.name + "-wal")
    uri = f"file:{quote(str(backup.resolve()))}?" + ("mode=ro" if wal.exists() else "immutable=1")
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
    if header != _SQLITE_HEADER:
        raise StoreError(
            f"cannot restore from {backup}: it is not a slack-hitl database (not an SQLite file)"
        )
    wal = backup.with_name(backup.name + "-wal")
    with_log = f" (read with {wal.name} beside it)" if wal.exists() else ""
    try:
        with _reading(backup) as conn:
            found = conn.execute("PRAGMA quick_check").fetchall()
            if [tuple(row) for row in found] != [("ok",)]:
                first = "; ".join(str(row[0]) for row in found[:2])
                raise StoreError(
                    f"cannot restore from {backup}: it is damaged{with_log} (PRAGMA quick_check:"
                    f" {first}); pick another backup"
                )
            db = Database(conn)
            applied = [m.name for m in migrations.applied(db)]
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
                    f" (schema {unknown[-1]}); upgrade slack-hitl (pip install -U slack-hitl)"
                    " first"
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
            f" ({exc}); pick another backup"
        ) from None
    pending = len([name for name in KNOWN_MIGRATIONS if name not in applied])
    return BackupFacts(items, answers, newest, models, pending)


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
    db = Path(db)
    target = Path(os.path.realpath(db))  # a symlink's file, not the link
    backup = Path(backup)
    if not target.parent.is_dir():
        raise StoreError(f"cannot restore to {db}: its folder {db.parent} does not exist")
    if target.exists() and backup.exists() and os.path.samefile(target, backup):
        raise StoreError(f"cannot restore {db} from itself: name a backup of it")
    if (holder := other_server(target)) is not None:
        raise StoreError(
            f"cannot restore {db} while a hitl server or demo runs on it ({holder}): stop it"
            " first, then run `hitl restore` again"
        )
    with server_lock(target):  # and none starts while the files are swapped
        if in_use(target):
            raise StoreError(
                f"cannot restore {db}: another process has it open (a hitl import, retrain or"
                " stats, or sqlite3?): let it finish or stop it, then run `hitl restore` again"
            )
        if checking is not None:
            checking()
        facts = check_backup(backup)
        copy = target.with_name(target.name + ".restoring")
        _copy(backup, copy, target, progress)
        try:
            with _interrupts_held():
                kept, beside = _swap(target, copy)
        except BaseException:
            copy.unlink(missing_ok=True)
            raise
    if not db.is_symlink():  # named as the database was (the same folder)
        kept = db.with_name(kept.name) if kept is not None else None
        beside = tuple(db.with_name(path.name) for path in beside)
    return Restored(facts, kept, beside)


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
