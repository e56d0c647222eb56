"""One server per database.

Two servers on one database (a second `hitl serve` left running, a deploy that starts the new
one before the old one stops, two `hitl demo`s in one folder) would each fill the channel from
the same queue and post every question twice. A server holds an exclusive ``flock`` on
``<db>.server.lock`` while it runs; a second one refuses to start, naming the first. The kernel
drops the lock when its holder ends, however it ends (``kill -9``, a crash), so no stale lock
outlives a server. The file descriptor is not inherited by the server's children (they are
started through ``exec``), so a child left behind holds nothing. Where ``fcntl`` is missing
(Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from bot.errors import StoreError

logger = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".server.lock")


class HeldLock:
    """The server lock a ``server_lock`` block holds: ``check`` finds the lock file deleted or
    replaced under it (a cleanup script's ``rm *.lock``), which would let a second server start
    on the database, and takes the lock again on a new file."""

    def __init__(self, db: Path, path: Path, fd: int | None) -> None:
        self.db, self.path, self.fd = db, path, fd
        self.said: str | None = None  # what was said about a lost lock, once

    def check(self) -> None:
        """Whether the lock file is still the one held (two stats; call it now and then); if
        not, make it again and lock it, said once in a warning, or, when another server holds
        the new one already, an error naming it."""
        if self.fd is None:
            return
        try:
            now = os.stat(self.path)
        except OSError:
            now = None
        held = os.fstat(self.fd)
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._say(
                logging.WARNING,
                f"the lock file {self.path} is gone and cannot be made again ({exc.strerror}):"
                f" nothing stops a second server on {self.db}",
            )
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            self._say(
                logging.ERROR,
                f"the lock file {self.path} was deleted while this server ran, and another hitl"
                f" server or demo started on {self.db} ({holder}): two post every question"
                " twice; stop one of them",
            )
            return
        _write_holder(fd)
        os.close(self.fd)
        self.fd = fd
        self._say(
            logging.WARNING,
            f"the lock file {self.path} was deleted or replaced while this server ran (it keeps"
            " a second server off the database: do not delete it); it is made again",
        )

    def _say(self, level: int, line: str) -> None:
        if line != self.said:
            logger.log(level, "%s", line)
            self.said = line


def _write_holder(fd: int) -> None:
    since = datetime.now(UTC).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode(), 0)


@contextlib.contextmanager
def server_lock(db: Path, *, leave_no_file: bool = False) -> Iterator[HeldLock]:
    """Hold ``db``'s server lock for the block, or raise StoreError naming who holds it (a
    second hold, in this process too, is refused: each opens the file anew). With
    ``leave_no_file`` (a `hitl restore`, refused or not), a lock file this call made is removed
    at the end, while it is still held: a mistyped --db leaves nothing behind."""
    path = lock_path(Path(db).resolve())  # one lock whichever path (symlink) names the file
    if fcntl is None:
        yield HeldLock(Path(db), path, None)
        return
    made = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            made = leave_no_file
        except FileExistsError:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(
            f"cannot open {path} ({exc.strerror}), the lock that keeps a second server off"
            f" {db}: the server needs to write in {path.parent}"
        ) from None
    held: HeldLock | None = None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "unknown"
            raise StoreError(
                f"{db} is in use by another hitl server or demo ({holder}): two would post every"
                " question twice. Stop that one first, or give this one another database"
                " (--db or HITL_DB)"
            ) from None
        except OSError as exc:  # a filesystem without locks (some network ones): run without
            logger.warning(
                "cannot lock %s (%s): nothing stops a second server on this database",
                path,
                exc.strerror,
            )
            yield HeldLock(Path(db), path, None)
            return
        with contextlib.suppress(OSError):  # a file an earlier version made 0644
            os.fchmod(fd, 0o600)
        _write_holder(fd)
        held = HeldLock(Path(db), path, fd)
        yield held
    finally:
        last = held.fd if held is not None and held.fd is not None else fd
        if made and held is not None:  # held: no one else has it (a refused one closes its own)
            with contextlib.suppress(OSError):
                found, own = os.stat(path), os.fstat(last)
                if (found.st_dev, found.st_ino) == (own.st_dev, own.st_ino):
                    path.unlink()
        os.close(last)  # drops the lock


def other_server(db: Path) -> str | None:
    """Who holds ``db``'s server lock, when another process does (a running `hitl serve` or
    `hitl demo`: "pid 812 on host, since …"), else None. The probe is a shared lock taken and
    dropped at once; it is only made before an upgrade (see ``Store.migrate``)."""
    path = lock_path(Path(db).resolve())
    if fcntl is None or not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip()
            if holder.startswith(f"pid {os.getpid()} "):
                return None  # this process's own server, upgrading as it starts
            return holder or "unknown"
        except OSError:
            return None
        return None
    finally:
        os.close(fd)
