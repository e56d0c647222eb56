"""Resources that run out, told as what they are (an outside test of disk full, damaged files
and limits):

- a full disk under a stopped server's database: SQLite cannot make ``hitl.db-shm`` beside it
  (SQLITE_IOERR_SHMSIZE), and every command said "ran out of memory … ulimit -v";
- a model's ``vN.json`` that is valid JSON but not a version's metadata (a list, null, fields
  of the wrong type) crashed `hitl serve` at start and `hitl models/accuracy/retrain` with a
  traceback;
- `hitl serve` started on a full disk said only "Error: No space left on device";
- at the open-files limit (`ulimit -n`) clicks were refused with "the disk failed … check the
  disk" or permission advice.

The limits are real, in a child process (RLIMIT_FSIZE makes SQLite's write of the -shm fail
as a full disk does; RLIMIT_NOFILE runs the descriptors out), so no test needs root or a
mount; a full disk is told from a file-size limit by the free space, which the "full" runs
set out of reach (``problems.SHM_ROOM``)."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli_errors import os_problem
from bot.errors import StoreError
from bot.sandbox import FakeSlack
from bot.store import database_problem, lock
from tests.bot.harness import Item, make_settings, seed, start_bot
from tests.bot.test_cli_loop import run
from tests.bot.test_serve_process import free_port, serve_env


def child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def failed(name: str, text: str = "disk I/O error") -> sqlite3.OperationalError:
    """An error as SQLite raises it (Python sets ``sqlite_errorname``)."""
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorname = name  # type: ignore[attr-defined]
    return exc


# -- a full disk under the database: the -shm SQLite cannot make --------------------------------

STATS_UNDER_A_FILE_SIZE_LIMIT = """
import resource, sys
import bot.cli
import bot.store.problems as problems
if sys.argv[2] == "full":
    problems.SHM_ROOM = 2**62  # less room than that: the disk is full
resource.setrlimit(resource.RLIMIT_FSIZE, (16384, resource.RLIM_INFINITY))
sys.argv = ["hitl", "--db", sys.argv[1], "stats"]
bot.cli.main()
"""


def stopped_server_db(tmp_path: Path) -> Path:
    """A database as a stopped server leaves it: no -wal, no -shm beside it."""
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "refund please"), Item("b", "app crashes")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hitl.db"]
    assert db.stat().st_size > 16384  # so the limit lets it be read, but not a -shm made
    return db


def test_a_full_disk_under_the_database_is_told_as_a_full_disk_not_memory(tmp_path: Path):
    db = stopped_server_db(tmp_path)
    done = child(STATS_UNDER_A_FILE_SIZE_LIMIT, str(db), "full")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"Error: {db}: the disk holding it is full: SQLite cannot write hitl.db-shm beside it"
        " (disk I/O error, SQLITE_IOERR_SHMSIZE), which every command needs, reading ones too;"
        f" free some space in {tmp_path} and try again; what was stored is kept"
    ]


def test_a_shm_the_file_size_limit_stops_is_not_told_as_memory_either(tmp_path: Path):
    db = stopped_server_db(tmp_path)
    done = child(STATS_UNDER_A_FILE_SIZE_LIMIT, str(db), "room")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"Error: {db}: SQLite cannot write hitl.db-shm beside it (disk I/O error,"
        " SQLITE_IOERR_SHMSIZE), though the disk has room: a disk quota or the file-size limit"
        " (`ulimit -f`) stops it; raise them for hitl, or check the disk holding"
        f" {tmp_path}; what was stored is kept"
    ]
    assert run(db, "stats").exit_code == 0  # without the limit: nothing was lost


@pytest.mark.parametrize("name", ["SQLITE_IOERR_NOMEM", "SQLITE_IOERR_SHMMAP"])
def test_a_failed_allocation_still_says_memory(tmp_path: Path, name: str):
    said = str(database_problem(tmp_path / "hitl.db", failed(name)))
    assert said.startswith("ran out of memory (") and "ulimit -v" in said


# -- a model's vN.json that is JSON, but not a version's metadata ------------------------------

# a whole file, or fields changed in the file the registry wrote
SHAPES = {
    "a list": [1, 2, 3],
    "null": None,
    "a number": 42,
    "a string": "v2",
    "metrics null": {"metrics": None},
    "sha256 null": {"sha256": None},
    "n_train null": {"n_train": None},
    "created_at a number": {"created_at": 5},
    "label_set null": {"label_set": None},
    "history null": {"history": None},
    "accuracy a string": {"metrics": {"accuracy": "high", "macro_f1": 0.5}},
}


def damage(two_models: Path, shape: object) -> Path:
    path = Path(f"{two_models}.models") / "v2.json"
    if isinstance(shape, dict):
        shape = {**json.loads(path.read_text()), **shape}
    path.write_text(json.dumps(shape))
    return path


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_a_champions_metadata_of_the_wrong_shape_is_refused_by_the_cli(
    two_models: Path,
    shape: object,
):
    damage(two_models, shape)
    for command in ("models", "accuracy"):
        done = run(two_models, command)
        assert done.exception is None or isinstance(done.exception, SystemExit), (
            command,
            done.exception,
        )
        assert "Traceback" not in done.output
    listed = run(two_models, "models")
    assert "(metadata v2.json unreadable: model v2 metadata is unreadable: " in listed.stdout
    assert "`hitl rollback 1` makes v1 the champion" in listed.stderr
    retrained = run(two_models, "retrain", "--force")
    assert retrained.exception is None or isinstance(retrained.exception, SystemExit), (
        retrained.exception
    )


async def test_a_server_starts_on_a_champions_metadata_of_the_wrong_shape_and_serves_v1(
    fake_slack: FakeSlack,
    two_models: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    damage(two_models, [1, 2, 3])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        assert bot.rt.champion is not None and bot.rt.champion.version == 1
    said = [r.getMessage() for r in caplog.records if r.name == "model.registry"]
    assert any(
        "model v2 metadata is unreadable: it holds a list, not an object of fields" in line
        for line in said
    ), said


# -- `hitl serve` started on a full disk: its lock file ----------------------------------------

SERVE_UNDER_A_FILE_SIZE_LIMIT = """
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
sys.argv = ["bot", "serve"]
runpy.run_module("bot", run_name="__main__")
"""


def test_serve_that_cannot_write_its_lock_file_names_it_and_the_fix(
    fake_slack: FakeSlack, tmp_path: Path
):
    db = tmp_path / "hitl.db"
    seed(db, [Item("a", "refund please")])
    env = serve_env(fake_slack, db, free_port())
    done = subprocess.run(
        [sys.executable, "-c", SERVE_UNDER_A_FILE_SIZE_LIMIT],
        env=env, capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"Error: cannot write {db}.server.lock (File too large), the lock that keeps a second"
        f" server off {db}: the file-size limit (`ulimit -f`) stops it; raise it and start it"
        " again"
    )
    assert not Path(f"{db}.server.lock").exists()  # a refused start leaves none of its own


def test_a_full_disk_at_the_lock_file_says_the_disk_is_full_and_lets_the_lock_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def full(fd: int, *, starting: bool = False) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as os.pwrite's: no file

    db = tmp_path / "hitl.db"
    monkeypatch.setattr(lock, "_write_holder", full)
    with pytest.raises(StoreError) as refused, lock.server_lock(db):
        pass
    assert str(refused.value) == (
        f"cannot write {tmp_path}/hitl.db.server.lock (No space left on device), the lock that"
        f" keeps a second server off {db}: the disk holding {tmp_path} is full; free some space"
        " there and start it again"
    )
    assert not Path(f"{db}.server.lock").exists()
    monkeypatch.undo()
    with lock.server_lock(db):  # nothing left held
        pass


def test_an_os_error_without_a_file_still_says_what_to_do():
    assert os_problem(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) == (
        "No space left on device; the disk is full: free some space and try again"
    )
    assert os_problem(OSError(errno.EACCES, os.strerror(errno.EACCES), "/x")) == (
        "/x: Permission denied"
    )


# -- the open-files limit ----------------------------------------------------------------------

AT_THE_OPEN_FILES_LIMIT = """
import asyncio, os, resource, sqlite3, sys
from pathlib import Path
from bot.store import Store, database_problem

db = Path(sys.argv[1])
store = Store.open(db)
taken = []

def exhaust():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
    try:
        while True:
            taken.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass

async def main():
    exhaust()
    try:
        await store.synced()
    except sqlite3.Error as exc:
        print("fsync:", database_problem(db, exc))
        print("write_problem:", store.write_problem)
    try:
        sqlite3.connect(db)
    except sqlite3.Error as exc:
        failure = exc
        print("open:", database_problem(db, exc))
    for fd in taken[:2]:  # the burst's other requests let theirs go: near the limit still
        os.close(fd)
    print("near:", database_problem(db, failure))

asyncio.run(main())
"""


def test_at_the_open_files_limit_the_limit_is_named_not_the_disk(tmp_path: Path):
    db = tmp_path / "hitl.db"
    done = child(AT_THE_OPEN_FILES_LIMIT, str(db))
    assert done.returncode == 0, done.stderr
    fix = (
        "raise the limit (`ulimit -n` in the shell that starts hitl, or LimitNOFILE= in its"
        " systemd unit), or lower the load"
    )
    fsync = (
        f"{db}: hitl is at its limit of open files (Too many open files, opening hitl.db-wal to"
        " flush it to disk): what was written is kept but could not be flushed, so it was not"
        f" acknowledged (a retry is stored once); {fix}"
    )
    opened = (
        f"{db}: cannot open it (unable to open database file): hitl is at its limit of open"
        f" files; {fix}"
    )
    assert done.stdout.splitlines() == [
        f"fsync: {fsync}",
        f"write_problem: {fsync}",
        f"open: {opened}",
        f"near: {opened}",
    ]


def test_a_file_sqlite_cannot_open_below_the_limit_keeps_its_advice(tmp_path: Path):
    db = tmp_path / "hitl.db"
    db.write_bytes(b"")
    said = str(database_problem(db, failed("SQLITE_CANTOPEN", "unable to open database file")))
    assert said == (
        f"{db}: cannot open it (unable to open database file); hitl needs to read and write the"
        f" file and its folder {tmp_path}"
    )


def test_an_fsync_that_fails_on_the_disk_still_says_the_disk():
    from bot.store.core import NotSynced

    exc = NotSynced("fsync failed: [Errno 5] Input/output error")
    exc.os_error = OSError(errno.EIO, os.strerror(errno.EIO))  # type: ignore[attr-defined]
    assert str(database_problem("/srv/hitl.db", exc)) == (
        "/srv/hitl.db: the disk failed to read or write it (fsync failed: [Errno 5]"
        " Input/output error); check the disk"
    )


def test_a_full_disk_behind_a_symlinked_database_names_the_real_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """HITL_DB a symlink into a full disk: SQLite's -shm is beside the real file, so the
    free space is looked for there, and that folder is named (second review of this round:
    the symlink's folder, with room, was named, and the full disk told as a quota)."""
    from bot.store import database_problem, problems

    real = tmp_path / "disk" / "hitl.db"
    real.parent.mkdir()
    real.touch()
    link = tmp_path / "work" / "hitl.db"
    link.parent.mkdir()
    link.symlink_to(real)
    full = {real.parent}  # only the real folder's disk is full
    usage = problems.shutil.disk_usage

    def disk_usage(folder):
        found = usage(folder)
        return found._replace(free=0) if Path(folder) in full else found

    monkeypatch.setattr(problems.shutil, "disk_usage", disk_usage)
    exc = sqlite3.OperationalError("disk I/O error")
    exc.sqlite_errorname = "SQLITE_IOERR_SHMSIZE"  # type: ignore[attr-defined]
    said = str(database_problem(link, exc))
    assert "the disk holding it is full" in said, said
    assert f"free some space in {real.parent} " in said, said
