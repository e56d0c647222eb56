"""SQLite's errors on the database file, as one line for a person that says what to do."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import stat
import time
from pathlib import Path

from bot.errors import StoreError

DatabaseError = sqlite3.Error  # what the edges (the CLI) catch, without importing sqlite3
DatabaseRefused = sqlite3.OperationalError  # its disk, its lock, its file: not a bug

DAMAGE_REMEMBERED = 60.0  # seconds a damaged file, seen by any reader, counts as damaged
clock = time.monotonic  # (tests move it)
_damage_seen: dict[str, tuple[str, float]] = {}  # absolute path -> (the line, when seen)


def damage_seen(path: str | os.PathLike[str]) -> str | None:
    """The line of the damage any reader of the database at ``path`` met in this process
    within DAMAGE_REMEMBERED seconds (``database_problem`` notes it), else None. A damaged
    file fails only the reads that touch its damaged pages: one read that goes through (a
    health check's) says nothing of the others."""
    seen = _damage_seen.get(os.path.abspath(path))
    if seen is None or clock() - seen[1] > DAMAGE_REMEMBERED:
        return None
    return seen[0]


# I/O errors that are a failed allocation or memory map (under a memory limit, SQLite's
# ``disk I/O error``): told as the disk's failure, they sent an operator to a healthy disk.
# Not SQLITE_IOERR_SHMSIZE: that is a failed write of the -shm file (``_shm_problem``).
_NO_MEMORY = frozenset({"SQLITE_IOERR_NOMEM", "SQLITE_IOERR_SHMMAP", "SQLITE_IOERR_MMAP"})

# The open-files limits: this process's (EMFILE, `ulimit -n`) and the system's (ENFILE). A burst
# of clicks under a low limit was told "the disk failed … check the disk" and permission advice.
_OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})
SHM_ROOM = 64 * 1024  # bytes free below which a failed write of <db>-shm is a full disk


def database_problem(
    path: str | os.PathLike[str], exc: sqlite3.Error, *, lost: str | None = None
) -> StoreError:
    """What a SQLite error on the database at ``path`` means, in one line that says what to do.

    SQLite's own words ("database is locked", "unable to open database file") name neither the
    file nor the way out, and a busy or read-only file is not a damaged one: each cause gets its
    own line, told apart by SQLite's error name (``sqlite_errorname``), not by its text.

    A store whose file was deleted, moved away or replaced under it refuses writes
    (``Store.check_file``: ``PRAGMA query_only``, which SQLite reports as read-only); ``lost``
    is its reason (``Store.lost``). Without it, a read-only refusal while nothing is at
    ``path`` is told as the file's deletion, not as "read-only" (a file replaced under the
    store cannot be told from a read-only one here: pass ``lost``)."""
    path = Path(path)
    name = getattr(exc, "sqlite_errorname", "") or ""
    behind = getattr(exc, "os_error", None)  # the OSError behind a failed fsync (Store.synced)
    if isinstance(behind, OSError) and behind.errno in _OUT_OF_FILES:
        return StoreError(
            f"{path}: {_files_limit(behind.errno)} ({behind.strerror}, opening"
            f" {Path(behind.filename or path).name} to flush it to disk): what was written is"
            " kept but could not be flushed, so it was not acknowledged (a retry is stored"
            f" once); {_raise_files_limit(behind.errno)}"
        )
    if name.startswith("SQLITE_BUSY"):
        return StoreError(
            f"{path} is locked by another process writing to it (a hitl import or serve?); "
            "try again when it is done"
        )
    if name == "SQLITE_READONLY_DBMOVED":
        return StoreError(f"{path} was moved or deleted while hitl had it open; run it again")
    if name == "SQLITE_READONLY" and (lost is not None or not os.path.lexists(path)):
        why = lost or f"{path} was deleted or moved away while hitl had it open"
        return StoreError(
            f"{why}, so writes to it are refused (they would be lost): put the database back at"
            f" {path} (or move what is left there away to start afresh) and restart hitl serve"
        )
    if (problem := path_problem(path)) is not None:  # a device, no read access, cwd gone
        return problem
    folder = _folder(path)
    if name.startswith("SQLITE_CANTOPEN") and os.path.isdir(path):
        return StoreError(
            f"{path}: cannot open it ({exc}): it is a directory, not a database file; point"
            f" --db/HITL_DB at a file (such as {path / 'hitl.db'})"
        )
    if name.startswith("SQLITE_CANTOPEN") and not os.path.lexists(path) and not _writable(path):
        return StoreError(
            f"cannot create {path}: its folder {folder} is read-only (hitl creates {path.name},"
            f" {path.name}-wal and {path.name}-shm there); make the folder writable or point"
            " --db/HITL_DB at a file in another folder"
        )
    if name.startswith("SQLITE_READONLY") or (
        name.startswith("SQLITE_CANTOPEN") and not _writable(path)
    ):
        # a folder nobody may write: a snapshot, a backup mount, another user's install
        copy = (
            ""
            if os.access(folder, os.W_OK)
            else f'; to read it from here, copy it (`sqlite3 {path} ".backup /tmp/{path.name}"`)'
            f" and point --db at the copy"
        )
        return StoreError(
            f"{path} is read-only: hitl needs write access to the file and its folder "
            f"{folder} (SQLite keeps {path.name}-wal and {path.name}-shm beside it){copy}"
        )
    if name.startswith("SQLITE_CANTOPEN") and (limit := _out_of_files()) is not None:
        return StoreError(
            f"{path}: cannot open it ({exc}): {_files_limit(limit)}; {_raise_files_limit(limit)}"
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return StoreError(
            f"{path}: cannot open it ({exc}); hitl needs to read and write the file and its "
            f"folder {folder}"
        )
    if name == "SQLITE_NOTADB":
        return _damaged(
            path,
            f"{path} is not a slack-hitl database (not an SQLite file); "
            "point --db/HITL_DB at another file",
        )
    if name.startswith("SQLITE_CORRUPT"):
        return _damaged(
            path,
            f"{path} is damaged ({exc}); restore it from a backup with `hitl restore BACKUP`"
            + _log_beside(path),
        )
    if name == "SQLITE_FULL":
        return StoreError(f"{path}: the disk is full; free some space and try again")
    if name == "SQLITE_IOERR_SHMSIZE":
        return StoreError(_shm_problem(path, exc))
    if name in _NO_MEMORY:  # SQLite's I/O layer could not get memory: not the disk's fault
        return StoreError(  # as the CLI says every other failed allocation (``bot.cli.main``)
            f"ran out of memory (SQLite on {path}: {exc}, {name}); give hitl more memory (its"
            " limit: `ulimit -v`, or the container's); what was stored is kept"
        )
    if name.startswith("SQLITE_IOERR"):
        return StoreError(f"{path}: the disk failed to read or write it ({exc}); check the disk")
    return StoreError(f"{path}: database error ({exc})")


# What a path that is there but is not a file is, as a message names it (a folder: SQLite cannot
# open it, and ``database_problem`` says so, creating nothing).
_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


def path_problem(path: str | os.PathLike[str]) -> StoreError | None:
    """Why the database path ``path`` cannot be used, told before SQLite touches it, or None.

    A device (``HITL_DB=/dev/null``), a named pipe or a socket: SQLite opened it and wrote its
    journal beside it (a world-writable ``/dev/null-journal``), then failed as a disk error. A
    file this process may not read (another user's, mode 0600): SQLite called it read-only.
    A relative path while the folder hitl runs in was deleted (a deploy replaced it, `rm -rf`
    in another shell): SQLite's and the system's "No such file or directory" named nothing."""
    path = Path(path)
    try:
        found = os.stat(path)  # through a symlink: what it points at
    except FileNotFoundError:
        if not path.is_absolute() and (gone := cwd_gone()) is not None:
            return StoreError(
                f"{path}: {gone}, so {path} cannot be found from it: cd to a folder that exists,"
                " or point --db/HITL_DB at an absolute path"
            )
        return None
    except OSError:  # a folder on the way that may not be searched: SQLite's words say so
        return None
    for test, kind in _KINDS:
        if test(found.st_mode):
            return StoreError(
                f"{path} is {kind}, not a database file: hitl keeps its data in a file (and"
                f" its journal beside it); point --db/HITL_DB at a file (such as ./hitl.db)"
            )
    if stat.S_ISREG(found.st_mode) and not os.access(path, os.R_OK):
        return StoreError(_unreadable(path, found))
    return None


def _unreadable(path: Path, found: os.stat_result) -> str:
    """A database file this process may not read: who owns it, its mode, and the way out."""
    try:
        import pwd  # Unix only

        owner = pwd.getpwuid(found.st_uid).pw_name
    except (ImportError, KeyError):
        owner = f"uid {found.st_uid}"
    mode = f"{stat.S_IMODE(found.st_mode):04o}"
    if found.st_uid == os.geteuid():
        fix = f"give yourself access: chmod u+rw {path}"
    else:
        fix = (
            f"run hitl as {owner}, or have {owner} (or root) give this user read and write"
            f" access to it (chown or chmod)"
        )
    return f"{path}: permission denied: hitl cannot read it (owned by {owner}, mode {mode}); {fix}"


def cwd_gone() -> str | None:
    """How to name the folder hitl runs in when it was deleted since hitl was started there
    (so no relative path can be found from it), or None when it is there."""
    try:
        os.getcwd()
    except FileNotFoundError:
        shell = os.environ.get("PWD")  # the shell's name for it, which it kept
        named = f" ({shell})" if shell and os.path.isabs(shell) else ""
        return f"the folder hitl runs in{named} was deleted or moved away"
    return None


def _shm_problem(path: Path, exc: sqlite3.Error) -> str:
    """SQLITE_IOERR_SHMSIZE: SQLite could not make or grow ``<db>-shm``, the index of the
    write-ahead log it keeps beside the file, which every connection needs (reading ones too):
    it writes a byte into each new page of it, and on a full disk that write fails (ENOSPC). A
    stopped server leaves no -shm, so on a full disk every command failed so (told as "ran out
    of memory": a failed allocation is SQLITE_IOERR_NOMEM or _SHMMAP, never this). With room
    on the disk, what stops the write is a quota or the file-size limit."""
    shm, folder = path.name + "-shm", _folder(path)
    real = Path(os.path.realpath(path))  # through a symlink: SQLite's -shm is beside the file
    if real != path.absolute():
        shm, folder = real.name + "-shm", real.parent
    try:
        room: int | None = shutil.disk_usage(folder).free
    except OSError:
        room = None
    if room is None or room < SHM_ROOM:
        return (
            f"{path}: the disk holding it is full: SQLite cannot write {shm} beside it ({exc},"
            f" SQLITE_IOERR_SHMSIZE), which every command needs, reading ones too; free some"
            f" space in {folder} and try again; what was stored is kept"
        )
    return (
        f"{path}: SQLite cannot write {shm} beside it ({exc}, SQLITE_IOERR_SHMSIZE), though the"
        f" disk has room: a disk quota or the file-size limit (`ulimit -f`) stops it; raise"
        f" them for hitl, or check the disk holding {folder}; what was stored is kept"
    )


def _out_of_files() -> int | None:
    """EMFILE (or ENFILE) when this process is at its open-files limit (or the system is),
    else None: SQLite's "unable to open database file" does not say why it could not. Seen by
    opening a file now, or by counting this process's open files against its limit (a burst's
    other requests may have let theirs go since)."""
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError as exc:
        return exc.errno if exc.errno in _OUT_OF_FILES else None
    os.close(fd)
    try:
        import resource  # Unix only

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        count = len(os.listdir("/proc/self/fd"))  # Linux only
    except (ImportError, OSError):
        return None
    if soft != resource.RLIM_INFINITY and count >= soft * 0.9:
        return errno.EMFILE
    return None


def _files_limit(err: int) -> str:
    if err == errno.ENFILE:
        return "the system is at its limit of open files (every process's together)"
    return "hitl is at its limit of open files"


def _raise_files_limit(err: int) -> str:
    """What to do at an open-files limit (``_OUT_OF_FILES``)."""
    if err == errno.ENFILE:
        return "raise the system's limit (sysctl fs.file-max) or stop what holds the files open"
    return (
        "raise the limit (`ulimit -n` in the shell that starts hitl, or LimitNOFILE= in its"
        " systemd unit), or lower the load"
    )


def _damaged(path: Path, line: str) -> StoreError:
    _damage_seen[os.path.abspath(path)] = (line, clock())  # for ``damage_seen``
    return StoreError(line)


def _log_beside(path: Path) -> str:
    """For a damaged file with a write-ahead log beside it: that the log may be the cause. A
    server that crashed leaves ``<db>-wal``; a backup copied over the file (``cp``) keeps it,
    and SQLite applies its pages, the file's that was there, over the copy (again after each
    copy). `hitl restore` moves it aside with the file it belongs to."""
    wal = path.with_name(path.name + "-wal")
    try:
        if wal.stat().st_size == 0:
            return ""  # an empty log applies nothing
    except OSError:
        return ""
    return (
        f" ({wal.name} is beside it: a log left from before a backup was copied over the file"
        " is applied over the copy and may be the cause; a copy made with cp keeps it,"
        " `hitl restore` moves it aside)"
    )


def _folder(path: Path) -> Path:
    """The folder of ``path`` as a person can find it: its absolute path when ``path`` names
    none ("hitl.db": the folder hitl runs in, which would show as ".")."""
    if path.parent != Path():
        return path.parent
    try:
        return Path.cwd()
    except FileNotFoundError:  # deleted under hitl: its name is the shell's, if it kept one
        return Path(os.environ.get("PWD") or ".")


def _writable(path: Path) -> bool:
    """Whether this process may write the database file (if it exists) and its folder, where
    SQLite creates its -wal and -shm files. ``os.access`` also says no on a read-only mount."""
    folder = path.parent
    return os.access(folder, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
