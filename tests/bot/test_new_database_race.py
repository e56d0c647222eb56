"""`hitl serve` and `hitl import` started together on a database file that is not there yet (a
first deploy, a new HITL_DB). The import was refused with "X is empty (a new database), but a
hitl server or demo runs on it … was its database deleted or replaced while it ran?", and the
server could say the team's database might be lost ("an empty file (0 bytes …)"): each took
the other's making of the database for a deleted one. Store.migrate decided on what it read
before it held the write lock, the server held its lock before its database was made, and a
new database stood at 0 bytes while it was made.

Each race is held at its exact point: a process paused inside its creating transaction (a
line on its stdout says so, one on its stdin lets it go on), or an import run to its end
between the server taking its lock and opening its database. Every wait is bounded: a child
that fails ends, and the test fails on what it printed."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

import bot.store.core as core
from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.store import Store
from bot.store.lock import check_names, lock_path
from bot.store.migrations import KNOWN_MIGRATIONS, migrations
from tests.bot.harness import LABELS, make_settings, start_bot
from tests.processes import line_of as next_line

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HITL_LABELS": ",".join(LABELS)}
WAIT = 60.0  # seconds, at most, for a child's line or its end


@contextmanager
def lock_held_by_child(db: Path, **lock: object) -> Iterator[subprocess.Popen]:
    """Another process holding ``db``'s server lock (``server_lock(db, **lock)``: a server's,
    a restore's) while the block runs: a child that takes it, says so, and lets go at the
    block's end (killed after ``WAIT`` seconds if it does not)."""
    args = "".join(f", {key}={value!r}" for key, value in lock.items())
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from bot.store.lock import server_lock\n"
        f"with server_lock(Path({str(db)!r}){args}):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert line_of(child) == "held\n"
        yield child
    finally:
        try:
            child.communicate(b"go on\n", timeout=WAIT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(WAIT)


def items_file(tmp_path: Path) -> Path:
    path = tmp_path / "items.csv"
    path.write_text("id,text\nT-1,refund please\nT-2,the app crashes\n")
    return path


def hitl_import(db: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """`hitl import` in a process of its own, as a cron job or a deploy step runs it."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "--db", str(db), "import", str(items_file(tmp_path))],
        env=ENV,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def built_at(db: Path) -> list[str]:
    """The database at ``db`` (its name, when a file is there) and the names new databases
    are built under beside it (``.hitl.db.new-…``, while a process builds one)."""
    return sorted(
        p.name
        for p in db.parent.iterdir()
        if p.name == db.name or p.name.startswith(".hitl.db.new-")
    )


def line_of(child: subprocess.Popen) -> str:
    """The child's next line on stdout, or what it printed before it ended, or "" after
    ``WAIT`` seconds (``tests.processes.line_of``)."""
    return next_line(child.stdout, time.monotonic() + WAIT)


@contextmanager
def paused_in_create_new(code: str) -> Iterator[subprocess.Popen]:
    """A Python process running ``code`` in which the new database's schema, once made
    (``create_new``, inside its transaction, not committed), waits for a line on stdin, after
    printing "creating". Yields it once it printed that; it is let go and waited for at the
    end (killed if it does not end in ``WAIT`` seconds)."""
    script = (
        "import sys\n"
        "import bot.store.core as core\n"
        "made = core.create_new\n"
        "def paused(db, at):\n"
        "    made(db, at)\n"
        "    print('creating', flush=True)\n"
        "    sys.stdin.readline()\n"
        "core.create_new = paused\n"
    ) + code
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        said = line_of(child)
        if said != "creating\n":
            child.kill()
            _, err = child.communicate(timeout=WAIT)
            pytest.fail(f"the child did not pause in create_new: {said!r} {err.decode()[-2000:]}")
        yield child
    finally:
        if child.returncode is None:  # not waited for by the test
            try:
                child.communicate(b"go on\n", timeout=WAIT)
            except (subprocess.TimeoutExpired, ValueError):  # stuck, or its stdin written
                child.kill()
                child.wait(WAIT)


def test_an_import_that_looks_while_a_server_makes_the_database_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A file of 0 bytes (as `touch`, or an older slack-hitl's first open, leaves it) that a
    server (one whose lock file does not say it starts: `hitl demo`, an older server) is
    making the database in. The import reads it (nothing applied) while the server's creating
    transaction is open, and only then asks for the write lock: the server commits meanwhile.
    The import waits for it, finds nothing left to do, and imports (it was refused, 30 times
    in 30: the refusal was decided on what it read before the lock)."""
    db = tmp_path / "hitl.db"
    db.touch()
    code = (
        "from pathlib import Path\n"
        "from bot.store import Store\n"
        "from bot.store.lock import server_lock\n"
        f"with server_lock(Path({str(db)!r})):\n"
        f"    store = Store.open(Path({str(db)!r}))\n"
        "    print('open', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    store.close()\n"
    )
    met: list[str] = []  # what the server said once let go, at the import's write lock
    with paused_in_create_new(code) as server:
        configure = core._configure

        def release_at_the_write_lock(database: Database, memory: bool) -> None:
            configure(database, memory)

            def trace(sql: str) -> None:  # the import is about to ask for the write lock
                if sql.startswith("BEGIN IMMEDIATE") and not met:
                    server.stdin.write(b"commit\n")
                    server.stdin.flush()
                    met.append(line_of(server))  # "open": the server's commit is in

            database.conn.set_trace_callback(trace)

        monkeypatch.setattr(core, "_configure", release_at_the_write_lock)
        result = CliRunner().invoke(
            cli,
            ["--db", str(db), "import", str(items_file(tmp_path))],
            env={"HITL_LABELS": ",".join(LABELS)},
            prog_name="hitl",
        )
        monkeypatch.undo()
        assert met == ["open\n"]  # the import met the server's transaction at its write lock
        assert result.exit_code == 0, result.output
        assert "read 2 rows, imported 2 " in result.output
    with Store.open(db) as store:
        assert store.schema_version() == list(KNOWN_MIGRATIONS)
        assert store.count_items()["new"] == 2


@contextmanager
def an_import_as_the_server_starts(db: Path, tmp_path: Path) -> Iterator[list]:
    """A `hitl import` run to its end after the (real) server took its lock and looked at the
    file, before its Store.open: what it gave is in the list, with the server's lock file as
    the import found it."""
    ran: list = []
    opened = Store.open.__func__

    def open_after_an_import(cls, path, *args, **kwargs):
        if Path(path) == db and not ran:
            ran.append(lock_path(db.resolve()).read_text())
            ran.append(hitl_import(db, tmp_path))
        return opened(cls, path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Store, "open", classmethod(open_after_an_import))
        yield ran


@pytest.mark.parametrize("there", ["nothing", "a file of 0 bytes"])
async def test_an_import_while_a_server_starts_makes_the_database_the_server_serves(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture, there: str
):
    """The server holds its lock, its database not made yet (its lock file says it starts, on
    its one line: an older hitl quotes it in one line): the import makes it and imports (it
    was refused: "was its database deleted or replaced while it ran?"). The server finds it
    made and serves it, and says nothing of a lost database in a file of 0 bytes: it did not
    make the database in one."""
    settings = make_settings(fake_slack, tmp_path)
    if there != "nothing":
        settings.db.touch()  # a file of 0 bytes, as an older slack-hitl's first open leaves it
    with (
        caplog.at_level(logging.WARNING),
        an_import_as_the_server_starts(settings.db, tmp_path) as ran,
    ):
        async for bot in start_bot(fake_slack, settings):
            said, imported = ran
            assert imported.returncode == 0, imported.stderr
            assert "read 2 rows, imported 2 " in imported.stdout
            assert said.startswith(f"pid {os.getpid()} on ")
            assert said.endswith(", starting\n") and said.count("\n") == 1
            assert bot.store.count_items()["new"] == 2
            assert lock_path(settings.db.resolve()).read_text() == said.replace(", starting", "")
    said = [r.getMessage() for r in caplog.records]
    assert not [line for line in said if "0 bytes" in line or "deleted or replaced" in line]
    if there == "nothing":  # HITL_DB mistyped is still said, in true words
        assert [line for line in said if "another hitl command made a new database" in line]
        assert not [line for line in said if "created a new, empty database" in line]


async def test_an_upgrade_beside_a_server_still_starting_is_made_once(
    fake_slack: FakeSlack, tmp_path: Path
):
    """An older database; a new server starting on it (its lock taken, the database not
    opened yet) and a new `hitl import` at once: the import upgrades it (it was refused:
    "needs an upgrade …, but a hitl server or demo runs on it: stop it first"); the server
    then finds nothing to upgrade. An older server that serves it still refuses the upgrade
    (test_store.test_an_upgrade_waits_until_no_server_runs_on_the_database)."""
    settings = make_settings(fake_slack, tmp_path)
    old = Database(settings.db)
    migrations.apply(old, stop_before="m019_post_attempts")
    old.conn.close()
    with an_import_as_the_server_starts(settings.db, tmp_path) as ran:
        async for bot in start_bot(fake_slack, settings):
            _, imported = ran
            assert imported.returncode == 0, imported.stderr
            assert bot.store.schema_version() == list(KNOWN_MIGRATIONS)
            assert bot.store.count_items()["new"] == 2


async def test_a_new_database_never_stands_at_0_bytes(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """An import making the new database, paused with its schema made and not committed:
    nothing is at the database's path yet (it stood there at 0 bytes, and a server starting
    then said the team's database might be lost: "an empty file (0 bytes …)"). A server that
    starts meanwhile makes its own and serves it; the import, let go, finds it there and
    imports into it."""
    settings = make_settings(fake_slack, tmp_path)
    code = (
        "from bot.cli import cli\n"
        f"cli(['--db', {str(settings.db)!r}, 'import', {str(items_file(tmp_path))!r}],"
        " prog_name='hitl')\n"
    )
    with caplog.at_level(logging.WARNING), paused_in_create_new(code) as importing:
        building = built_at(settings.db)  # it is built beside its path, nothing at the path
        assert "hitl.db" not in building and any(n.startswith(".hitl.db.new-") for n in building)
        async for bot in start_bot(fake_slack, settings):
            out, err = await asyncio.to_thread(importing.communicate, b"go on\n", WAIT)
            assert importing.returncode == 0, err.decode()
            assert "read 2 rows, imported 2 " in out.decode()
            assert bot.store.count_items()["new"] == 2
    said = [r.getMessage() for r in caplog.records]
    assert [line for line in said if "created a new, empty database" in line]
    assert not [line for line in said if "0 bytes" in line]
    assert built_at(settings.db) == ["hitl.db"]
    assert os.stat(settings.db).st_mode & 0o777 == 0o600


async def test_an_import_is_still_refused_when_a_serving_servers_database_was_deleted(
    fake_slack: FakeSlack, tmp_path: Path
):
    """What the refusal is for (it passes on the old code too): a server that serves (its
    database open, its lock file no longer saying it starts) writes to the file it opened; one
    put at its path, or made there by the import, would never be read by it. Nothing is left
    at the path, or beside it, by the refused import."""
    settings = make_settings(fake_slack, tmp_path)
    async for _bot in start_bot(fake_slack, settings):
        said = lock_path(settings.db.resolve()).read_text()
        assert said.startswith(f"pid {os.getpid()} on ") and said.count("\n") == 1
        assert "starting" not in said
        for name in (settings.db.name, settings.db.name + "-wal", settings.db.name + "-shm"):
            settings.db.with_name(name).unlink(missing_ok=True)
        refused = hitl_import(settings.db, tmp_path)
        assert refused.returncode != 0
        assert (
            f"{settings.db} is empty (a new database), but a hitl server or demo runs on it"
            f" (pid {os.getpid()} on "
        ) in refused.stderr
        assert "was its database deleted or replaced while it ran?" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert built_at(settings.db) == []  # nothing made at its path, nor left beside it


def test_the_name_a_new_database_was_built_under_is_no_hard_link(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A new database is built under a name of its own, linked in place, and that name is then
    removed: a process opening the database in between finds two names, and no hard link to
    warn of. A name that is one is still warned of."""
    db = tmp_path / "hitl.db"
    Store.open(db).close()
    os.link(db, tmp_path / f".hitl.db.new-{os.getpid()}-0a1b2c3d")  # a build under way
    with caplog.at_level(logging.WARNING):
        check_names(db)
        assert not [r for r in caplog.records if "names (hard links" in r.getMessage()]
        (tmp_path / f".hitl.db.new-{os.getpid()}-0a1b2c3d").rename(tmp_path / "copy.db")
        check_names(db)
    assert [r for r in caplog.records if "has 2 names (hard links" in r.getMessage()]
