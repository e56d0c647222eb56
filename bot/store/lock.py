"""One server per database.

Two servers on one database (a second `hitl serve` left running, a deploy that starts the new
one before the old one stops, two `hitl demo`s in one folder) would each fill the channel from
the same queue and post every question twice. A server holds an exclusive ``flock`` on
``<db>.server.lock`` while it runs; a second one refuses to start, naming the first. The kernel
drops the lock when its holder ends, however it ends (``kill -9``, a crash), so no stale lock
outlives a server. The file descriptor is not inherited by the server's children (they are
started through ``exec``), so a child left behind holds nothing. Where ``fcntl`` is missing
(Windows) there is no lock.

The lock file is named after the path (symlinks resolved), and a hard link (``ln hitl.db
prod.db``, a ``cp -al`` snapshot folder) is another path to the same file. SQLite keeps its
-wal and -shm per name, so two processes writing one file through two names do not see each
other's writes and damage it. So on Linux a server also holds an exclusive ``flock`` on the
database file itself, which is the file's whatever its name: a second server on another name
refuses to start, naming the first. It is a BSD lock (the kernel keeps it apart from the POSIX
locks SQLite takes on the file), taken only on local filesystems (NFS and SMB emulate it with a
POSIX lock, which would meet SQLite's), and its descriptor is closed only when the server's
block ends, after the server's store: closing a descriptor of a file drops every POSIX lock the
process holds on it, SQLite's included. ``check_names`` (``Store.open``) warns of a database
file with more than one name and refuses a process writing through one while a server writes
through another.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import socket
import stat
import sys
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


# Filesystems whose flock is the kernel's own, apart from POSIX locks (``hold_file``). Others
# (nfs, cifs, fuse, 9p, ...) get no flock on the database file: the name's lock file only.
LOCAL_FILESYSTEMS = frozenset(
    {
        "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "zfs", "f2fs", "bcachefs",
        "jfs", "reiserfs", "nilfs2", "overlay",
    }
)  # fmt: skip
# The database files this process holds the flock of, (st_dev, st_ino), each with the name
# (symlinks resolved) and descriptor it is held by: a server's own ``Store.open`` (its worker
# threads') is no other process writing through another name.
_HELD_FILES: dict[tuple[int, int], tuple[Path, int]] = {}
_NAMES_SAID: set[tuple[int, int]] = set()  # files whose names were warned of, once a process


def _mount(path: Path) -> tuple[str, str] | None:
    """The mount point ``path`` is under and its filesystem's type (Linux's
    /proc/self/mountinfo), or None."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    found: tuple[str, str] | None = None
    target = str(path)
    for line in mounts.splitlines():
        fields = line.split()
        if "-" not in fields[5:] or len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])  # \040: " "
        if target == point or target.startswith(point.rstrip("/") + "/"):
            if found is None or len(point) >= len(found[0]):  # the last of one point is on top
                found = point, fields[fields.index("-", 5) + 1]
    return found


def _flock_writers(found: os.stat_result) -> list[tuple[int, bool]]:
    """The pids (other than this one) holding an exclusive flock on the file ``found``, each
    with whether the device matched too (Linux's /proc/locks: ``3: FLOCK  ADVISORY  WRITE 812
    08:01:1234 0 EOF``). btrfs and overlay show another device there than stat does, so a
    match of the inode alone is kept, for the holder's descriptors to confirm. Another pid
    namespace's locks are not listed."""
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    exact = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    pids = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1:4] != ["FLOCK", "ADVISORY", "WRITE"]:
            continue  # a waiter ("1: -> FLOCK ..."), a POSIX lock, a shared one
        if fields[5].rsplit(":", 1)[-1] == str(found.st_ino):
            with contextlib.suppress(ValueError):
                if (pid := int(fields[4])) > 0 and pid != os.getpid():
                    pids.append((pid, fields[5] == exact))
    return pids


def _writer_name(pid: int, found: os.stat_result) -> tuple[bool, Path | None, str | None]:
    """Whether ``pid`` has the file ``found`` open (False also when its descriptors cannot be
    read: another user's), the database name its server lock file gives and that file's
    holder line ("pid 812 on host, since ..."), each None when not known."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False, None, None
    has, name, holder = False, None, None
    for fd in fds:
        link = f"/proc/{pid}/fd/{fd}"
        with contextlib.suppress(OSError):
            target = os.readlink(link)
            if target.endswith(".server.lock"):
                db = Path(target[: -len(".server.lock")])
                with contextlib.suppress(OSError):
                    there = os.stat(db)
                    if (there.st_dev, there.st_ino) == (found.st_dev, found.st_ino):
                        name = db
                        with open(link, "rb") as lock:  # the holder's lock file
                            holder = _holder_line(lock.read(300)) or None
            elif not has:
                there = os.stat(link)
                has = (there.st_dev, there.st_ino) == (found.st_dev, found.st_ino)
    return has or name is not None, name, holder


def _other_writer(found: os.stat_result) -> tuple[int, Path | None, str] | None:
    """Another process's server holding the flock of the file ``found`` (``hold_file``): its
    pid, the name it uses (None: not known) and its holder line; None when there is none (or
    one another pid namespace has)."""
    if sys.platform != "linux" or fcntl is None:
        return None
    for pid, exact in _flock_writers(found):
        has, name, holder = _writer_name(pid, found)
        if has or exact:  # its descriptors unread: the device and inode of /proc/locks tell
            return pid, name, holder or f"pid {pid}"
    return None


def hold_file(db: Path, opened: list[int]) -> bool:
    """Take an exclusive flock on the database file ``db`` itself (Linux, a local filesystem);
    whether it was taken (False without a file, or where none is taken). Each descriptor it
    opens goes into ``opened``, for the caller to close only after this process's connections
    to the file (``_let_go``): closing one drops the process's POSIX locks on the file,
    SQLite's too. Raises StoreError naming the server that holds it under another name (a
    hard link). One that holds it under this name had its lock file deleted: this start goes
    on without, as it did before, and that server names this one (``HeldLock.check``)."""
    if sys.platform != "linux" or fcntl is None:
        return False
    try:
        found = os.stat(db)
    except OSError:
        return False  # not there yet (a new database), or not reachable: SQLite says it
    mount = _mount(Path(db).resolve())
    if not stat.S_ISREG(found.st_mode) or mount is None or mount[1] not in LOCAL_FILESYSTEMS:
        return False
    try:
        fd = os.open(db, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # not readable: SQLite says it
    opened.append(fd)
    found = os.fstat(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        key = (found.st_dev, found.st_ino)
        if key in _HELD_FILES:  # by this process (tests, a demo): the name it is held by
            name, holder = _HELD_FILES[key][0], f"pid {os.getpid()}, this process"
        elif (other := _other_writer(found)) is not None:
            name, holder = other[1], other[2]
        else:
            name, holder = None, "unknown"
        if name is not None and name.resolve() == Path(db).resolve():
            return False
        where = f"under another name, {name}" if name is not None else "under another name"
        raise StoreError(
            f"{db} is in use by another hitl server or demo {where} (a hard link to the same"
            f" file; {holder}): two would post every question twice, and SQLite keeps a"
            " journal per name, so two writing one file through two names damage it. Stop"
            " that one first, or give this one another database (--db or HITL_DB)"
        ) from None
    except OSError:
        return False
    _HELD_FILES[(found.st_dev, found.st_ino)] = Path(db).resolve(), fd
    return True


def _let_go(fds: list[int]) -> None:
    """Close the database file descriptors ``hold_file`` opened, dropping their flocks."""
    for fd in fds:
        with contextlib.suppress(OSError):
            found = os.fstat(fd)
            key = (found.st_dev, found.st_ino)
            if _HELD_FILES.get(key, (None, None))[1] == fd:  # its flock, not a refused one
                del _HELD_FILES[key]
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


# The names a new database is built under beside its path (``_make_whole``): ``.hitl.db.new-`` +
# ``<pid>-<hex>``, or, where that name is too long, ``.hitl-new-<pid>-<hex>``.
BUILD = ".new-"
SHORT_BUILD = ".hitl-new-"
_BUILT = re.compile(r"(\d+)-[0-9a-f]{8}(-journal|-wal|-shm)?")


def build_pid(name: str, db_name: str) -> int | None:
    """The pid of the process that builds (or built) a new database under ``name``, beside the
    database ``db_name`` (``_make_whole``), or None for a name that is not one."""
    for prefix in (f".{db_name}{BUILD}", SHORT_BUILD):
        if name.startswith(prefix) and (found := _BUILT.fullmatch(name[len(prefix) :])):
            return int(found[1])
    return None


def pid_alive(pid: int) -> bool:
    """Whether a process runs under ``pid`` as this process sees it (another user's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _put_in_place(db: Path, found: os.stat_result) -> bool:
    """Whether the second name of the file ``found`` at ``db`` is the one another process
    built a new database under (``bot.store.core._make_whole``: ``.hitl.db.new-…``, linked
    at ``db``, then removed): for a moment the file has two names, and no hard link was
    made. Looked for beside the file (symlinks resolved), then ``db`` looked at again: the
    name is removed after the link. A name whose process is gone (killed after the link) is
    a second name for good, warned of."""
    if found.st_nlink != 2:
        return False
    real = Path(db).resolve()  # the file's folder and name, not a symlink's
    with contextlib.suppress(OSError), os.scandir(real.parent) as names:
        for entry in names:
            pid = build_pid(entry.name, real.name)
            if pid is not None and (pid == os.getpid() or pid_alive(pid)):
                with contextlib.suppress(OSError):
                    there = entry.stat(follow_symlinks=False)
                    if (there.st_dev, there.st_ino) == (found.st_dev, found.st_ino):
                        return True
    try:
        return os.stat(db).st_nlink < 2
    except OSError:
        return False


def check_names(db: Path) -> None:
    """Before a process opens the database ``db`` (``Store.open``): a file with more than one
    name (hard links) is warned of, once a process, with what to do; one a server of another
    process writes through another name is refused (StoreError), since SQLite keeps a journal
    per name and two processes writing one file through two names damage it."""
    try:
        found = os.stat(db)
    except OSError:
        return
    if found.st_nlink < 2 or not stat.S_ISREG(found.st_mode) or _put_in_place(db, found):
        return
    key = (found.st_dev, found.st_ino)
    if key not in _HELD_FILES and (other := _other_writer(found)) is not None:
        pid, name, holder = other
        here = Path(db).resolve()
        if name is None:
            same = (other_server(here) or "").startswith(f"pid {pid} ")
        else:
            same = name.resolve() == here
        if not same:
            where = f", {name}" if name is not None else ""
            use = f" (--db {name})" if name is not None else ""
            raise StoreError(
                f"{db} is the database a hitl server or demo writes under another name{where} (a"
                f" hard link to the same file; {holder}): SQLite keeps a journal per name, so"
                " two processes writing one file through two names damage it. Use that"
                f" name{use}, and make copies with sqlite3's .backup, never ln or cp -al"
            )
    if key in _NAMES_SAID:
        return
    _NAMES_SAID.add(key)
    mount = _mount(Path(db).resolve()) if sys.platform == "linux" else None
    logger.warning(
        "%s has %d names (hard links, made by ln or cp -al: not copies, they change with it);"
        " SQLite keeps a journal (-wal) per name, so two processes writing it through two"
        " names damage it: use this name only (`find %s -xdev -samefile %s` lists them all;"
        ' remove the others), and copy it with `sqlite3 %s ".backup copy.db"`, never ln or'
        " cp -al",
        db,
        found.st_nlink,
        mount[0] if mount is not None else "/",
        db,
        db,
    )


class HeldLock:
    """The server lock a ``server_lock`` block holds: ``check`` finds the lock file deleted or
    replaced under it (a cleanup script's ``rm *.lock``), which would let a second server start
    on the database, and takes the lock again on a new file."""

    def __init__(self, db: Path, path: Path, fd: int | None) -> None:
        self.db, self.path, self.fd = db, path, fd
        self.said: str | None = None  # what was said about a lost lock, once
        self.starting = False  # its file says so (``STARTING``) until ``started``
        self.doing = b""  # what else its file says it does (``KINDS``) until ``started``
        # The flocks held on the database file (``hold_file``): the first at start, or once a
        # new database is made; another when a file was put in place of the one held. Closed
        # when the server's block ends, never before (see the module docstring).
        self.files: list[int] = []
        self.held: set[tuple[int, int]] = set()  # the files of those flocks

    def hold_file(self, *, refuse: bool = False) -> None:
        """Take the flock of the file now at ``db`` when none was tried on it (a new database
        made after the lock was taken, or a file put in place of the one held); a server
        holding it under another name is said in an error, once (``refuse``: raised)."""
        if self.fd is None:
            return
        try:
            now = os.stat(self.db)
        except OSError:
            return
        if (now.st_dev, now.st_ino) in self.held:
            return
        self.held.add((now.st_dev, now.st_ino))  # tried once a file, whatever comes of it
        try:
            hold_file(self.db, self.files)
        except StoreError as exc:
            if refuse:
                raise
            self._say(logging.ERROR, str(exc))

    def started(self) -> None:
        """The server's database is open (made, upgraded): from here it writes to that file,
        and the lock file says so (its holder line's ``STARTING`` cut off: the line without
        its newline, then the newline; a reader between reads a server that serves)."""
        if self.fd is None or not (self.starting or self.doing):
            return
        end = STARTING if self.starting else self.doing
        self.starting, self.doing = False, b""
        with contextlib.suppress(OSError):  # in the room the longer line took
            said = os.pread(self.fd, 300, 0)
            if said.endswith(end + b"\n"):
                os.ftruncate(self.fd, len(said) - len(end) - 1)
                os.pwrite(self.fd, b"\n", len(said) - len(end) - 1)

    def check(self) -> None:
        """Whether the lock file is still the one held (two stats; call it now and then); if
        not, make it again and lock it, said once in a warning, or, when another server holds
        the new one already, an error naming it. A database file the server holds no flock of
        yet (a new one, made after the start) gets it (``hold_file``: a third stat). A holder
        line that cannot be written into the new file (a full disk) is one warning while it
        lasts, tried again at each check (the file stays empty till then), never an error that
        ends the server's watch (``watch_lock``)."""
        if self.fd is None:
            return
        self.hold_file()
        try:
            now = os.stat(self.path)
        except OSError:
            now = None
        held = os.fstat(self.fd)
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            if held.st_size > 0:
                return
            # made again, but its holder line not written yet: try again below
        else:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                self._say(
                    logging.WARNING,
                    f"the lock file {self.path} is gone and cannot be made again"
                    f" ({exc.strerror}): nothing stops a second server on {self.db}",
                )
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder_line(os.pread(fd, 300, 0)) or "unknown"
                os.close(fd)
                self._say(
                    logging.ERROR,
                    f"the lock file {self.path} was deleted while this server ran, and another"
                    f" hitl server or demo started on {self.db} ({holder}): two post every"
                    " question twice; stop one of them",
                )
                return
            os.close(self.fd)
            self.fd = fd  # locked: a second server is kept off, its holder line written or not
        try:
            _write_holder(self.fd, starting=self.starting or self.doing or False)
        except OSError as exc:
            # the start's wording (``_holder_problem``) less its "and start it again": this
            # server runs on, and writes the line at a check once there is room
            problem = _holder_problem(self.path, self.db, exc).removesuffix(" and start it again")
            self._say(
                logging.WARNING,
                "the lock file was deleted or replaced while this server ran; it is made again"
                f" and locked, but {problem} (a second server it refuses cannot be told who"
                " holds it); tried again every few seconds",
            )
            return
        self._say(
            logging.WARNING,
            f"the lock file {self.path} was deleted or replaced while this server ran (it keeps"
            " a second server off the database: do not delete it); it is made again",
        )

    def _say(self, level: int, line: str) -> None:
        if line != self.said:
            logger.log(level, "%s", line)
            self.said = line


# The end of the lock file's holder line while its `hitl serve` has not opened its database
# yet (``server_lock(starting=True)``): a `hitl import` beside it that finds the database
# empty, or older, makes or upgrades it (the server then finds it done) rather than taking it
# for a database deleted, or upgraded, under a running server (``other_server``). On the line
# itself, not a line of its own: an older slack-hitl quotes the file's text in its one-line
# refusals ("pid 812 on host, since …, starting"), and takes it for a server, as before.
STARTING = b", starting"
# The end of the holder line while the lock is held by what is no server (``server_lock``'s
# ``kind``): a `hitl restore` putting a backup in place, a `hitl demo` making its database
# (until its ``started``). Neither ends with ``STARTING``: a command beside them is refused as
# beside a server (an older slack-hitl quotes the line in its refusal, and reads it so too),
# in words that say what runs and to wait for it (``holder_words``).
KINDS = {"restore": b", restoring", "demo": b", demo starting up"}


def holder_words(holder: str) -> str | None:
    """What holds a database's server lock, from its holder line (``other_server``), in the
    words of a refusal when it is no server: a `hitl restore`, a `hitl demo` making its
    database, with what to do ("…: wait for it to finish, then run this command again"), for a
    refusal that reads "DB is in use: WORDS". None for a server (serving or starting), an
    older slack-hitl's line, or an unknown one: the refusal says a server."""
    if holder.endswith(KINDS["restore"].decode()):
        return (
            f"a hitl restore is putting a backup in place there ({holder}): wait for it to"
            " finish, then run this command again"
        )
    if holder.endswith(KINDS["demo"].decode()):
        return (
            f"a hitl demo is making its database there ({holder}): wait until it has started,"
            " then run this command again"
        )
    return None


def _holder_line(said: bytes) -> str:
    """Who holds a lock, as its file says: the first line ("pid 812 on host, since …")."""
    return said.decode("utf-8", "replace").strip().split("\n", 1)[0].strip()


def _write_holder(fd: int, *, starting: bool | bytes = False) -> None:
    """The holder line, with ``STARTING`` at its end when asked (or the end given: ``KINDS``),
    in one write: a reader sees a starting server as one from the first."""
    since = datetime.now(UTC).isoformat(timespec="seconds")
    line = f"pid {os.getpid()} on {socket.gethostname()}, since {since}".encode()
    end = STARTING if starting is True else starting or b""
    os.ftruncate(fd, 0)
    os.pwrite(fd, line + end + b"\n", 0)


def _holder_problem(path: Path, db: Path, exc: OSError) -> str:
    """Why a server cannot write who holds its lock into ``path``, in one line that says what
    to do (the OSError of a write names no file: "No space left on device" said nothing
    more)."""
    folder = path.parent
    if exc.errno == errno.ENOSPC:
        fix = f"the disk holding {folder} is full; free some space there and start it again"
    elif exc.errno == errno.EDQUOT:
        fix = f"the disk quota for {folder} is used up; free some space or raise the quota"
    elif exc.errno == errno.EFBIG:
        fix = "the file-size limit (`ulimit -f`) stops it; raise it and start it again"
    else:
        fix = f"check the disk holding {folder}"
    return (
        f"cannot write {path} ({exc.strerror or exc}), the lock that keeps a second server off"
        f" {db}: {fix}"
    )


@contextlib.contextmanager
def server_lock(
    db: Path, *, leave_no_file: bool = False, starting: bool = False, kind: str | None = None
) -> Iterator[HeldLock]:
    """Hold ``db``'s server lock for the block, or raise StoreError naming who holds it (a
    second hold, in this process too, is refused: each opens the file anew). With
    ``leave_no_file`` (a `hitl restore`, refused or not), a lock file this call made is removed
    at the end, while it is still held: a mistyped --db leaves nothing behind. With
    ``starting`` (`hitl serve`), the lock file says the server is starting until its
    ``started`` is called, once its database is open (``other_server``). With ``kind``
    ("restore", "demo": ``KINDS``), the lock file says what holds it (a demo: until
    ``started``), for refusals beside it to say so (``holder_words``)."""
    path = lock_path(Path(db).resolve())  # one lock whichever path (symlink) names the file
    if fcntl is None:
        yield HeldLock(Path(db), path, None)
        return
    made = created = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            made, created = leave_no_file, True
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
            holder = _holder_line(os.pread(fd, 300, 0)) or "unknown"
            if (words := holder_words(holder)) is not None:
                raise StoreError(f"{db} is in use: {words}") from None
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
        mine = HeldLock(Path(db), path, fd)
        mine.starting = starting
        mine.doing = KINDS[kind] if kind is not None and not starting else b""
        try:  # the database file's own lock: a server on another name of it (a hard link)
            mine.hold_file(refuse=True)
        except BaseException:
            _let_go(mine.files)
            if created:  # a refused start leaves no lock file of its own behind
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        try:
            _write_holder(fd, starting=starting or mine.doing or False)
        except OSError as exc:  # a full disk (ENOSPC): the first write a start makes
            _let_go(mine.files)
            if created:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise StoreError(_holder_problem(path, db, exc)) from None
        held = mine
        try:
            yield held
        finally:
            _let_go(held.files)  # after the block's connections to the file: they are closed
    finally:
        last = held.fd if held is not None and held.fd is not None else fd
        if made and held is not None:  # held: no one else has it (a refused one closes its own)
            with contextlib.suppress(OSError):
                found, own = os.stat(path), os.fstat(last)
                if (found.st_dev, found.st_ino) == (own.st_dev, own.st_ino):
                    path.unlink()
        os.close(last)  # drops the lock


def _held_here(probe: int, holder: str) -> bool:
    """Whether this process holds the flock of the lock file ``probe`` is open on (its own
    server: ``server_lock``), not only a process whose holder line carries this pid (in
    containers every one of them is pid 1). Linux tells it exactly: the descriptors of this
    process open on that file, one of them holding its lock (/proc/self/fdinfo's "lock:"
    line). Elsewhere the holder line's pid and host are all there is."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return holder.startswith(f"pid {os.getpid()} on {socket.gethostname()},")
    file = os.fstat(probe)
    for fd in fds:
        if fd == str(probe):
            continue
        with contextlib.suppress(OSError, ValueError):
            found = os.fstat(int(fd))
            if (found.st_dev, found.st_ino) != (file.st_dev, file.st_ino):
                continue
            said = Path(f"/proc/self/fdinfo/{fd}").read_text()
            for line in said.splitlines():
                fields = line.split()
                if fields[:1] == ["lock:"] and fields[2:3] == ["FLOCK"] and "WRITE" in fields:
                    return True
    return False


def other_server(db: Path, *, starting: bool = True) -> str | None:
    """Who holds ``db``'s server lock, when another process does (a running `hitl serve` or
    `hitl demo`: "pid 812 on host, since …"), else None. The probe is a shared lock taken and
    dropped at once; it is only made before an upgrade (see ``Store.migrate``). With
    ``starting`` False, a `hitl serve` still starting (its lock file says so: its database not
    opened yet, ``HeldLock.started``) is None too: it writes to no file yet."""
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
            holder = _holder_line(os.pread(fd, 300, 0))
            if _held_here(fd, holder):
                return None  # this process's own server, upgrading as it starts
            # Nothing written yet: a server in its first moment, between its flock and its
            # holder line (``server_lock`` writes it next, or gives the lock up: a start that
            # cannot write it is refused), no database open. A server that runs on with an
            # empty file is one whose lock file was deleted and could not be written again (a
            # full disk, warned of: ``HeldLock.check``), an upgrade beside it on that disk
            # would not get far either.
            if not starting and (not holder or holder.endswith(STARTING.decode())):
                return None
            return holder or "unknown"
        except OSError:
            return None
        return None
    finally:
        os.close(fd)
