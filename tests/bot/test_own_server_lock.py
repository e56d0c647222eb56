"""Whether the server lock's holder is this process's own server (``other_server``): only when
this process holds the lock. Inside containers every process is pid 1, so a `hitl import` that
is pid 1 of its container read the holder line of a server that is pid 1 of another ("pid 1
on server-ctr, since …") as its own: it upgraded the database under the serving server, or
made a new one where the server's was deleted. Here another process holds the lock with a
holder line that carries this process's pid, as that server's does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlite_utils import Database

from bot.errors import StoreError
from bot.store import Store
from bot.store.lock import lock_path, other_server, server_lock
from bot.store.migrations import KNOWN_MIGRATIONS, migrations
from tests.bot.test_new_database_race import line_of

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60  # seconds, at most, for the holder's end


@contextmanager
def held_by_another(db: Path, line: str) -> Iterator[None]:
    """``db``'s server lock held by another process whose holder line is ``line`` (a serving
    server's: no ", starting"); let go at the end."""
    code = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(lock_path(db.resolve()))!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        f"os.pwrite(fd, {line.encode()!r}, 0)\n"
        "print('held', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        said = line_of(child)  # at most WAIT seconds
        if said != "held\n":
            child.kill()
            pytest.fail(f"the lock was not held: {said!r} {child.communicate(timeout=WAIT)}")
        yield
    finally:
        try:
            child.communicate(b"go\n", timeout=WAIT)
        except (subprocess.TimeoutExpired, ValueError):
            child.kill()
            child.wait(WAIT)


def serving_line() -> str:
    """A serving server's holder line with this process's pid, as another pid 1 writes it."""
    return f"pid {os.getpid()} on {socket.gethostname()}, since 2026-12-06T06:00:00+00:00\n"


def older_database(db: Path) -> None:
    old = Database(db)
    migrations.apply(old, stop_before="m019_post_attempts")
    old.conn.close()


def test_another_process_holding_the_lock_with_this_pid_refuses_the_upgrade(tmp_path: Path):
    db = tmp_path / "hitl.db"
    older_database(db)
    with held_by_another(db, serving_line()):
        assert other_server(db, starting=False) == serving_line().strip()
        with pytest.raises(StoreError, match="needs an upgrade to this slack-hitl"):
            Store.open(db)
    with Store.open(db) as store:  # once that server is gone
        assert store.schema_version() == list(KNOWN_MIGRATIONS)


def test_another_process_holding_the_lock_with_this_pid_refuses_a_new_database(tmp_path: Path):
    db = tmp_path / "hitl.db"
    with held_by_another(db, serving_line()):
        with pytest.raises(StoreError, match=r"is empty \(a new database\), but a hitl server"):
            Store.open(db)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["hitl.db.server.lock"]


def test_this_processs_own_server_upgrades_and_makes_its_database(tmp_path: Path):
    db = tmp_path / "hitl.db"
    older_database(db)
    with server_lock(db):
        assert other_server(db, starting=False) is None
        with Store.open(db) as store:
            assert store.schema_version() == list(KNOWN_MIGRATIONS)
    new = tmp_path / "new.db"
    with server_lock(new), Store.open(new) as store:
        assert store.made_new
        assert store.schema_version() == list(KNOWN_MIGRATIONS)


def test_the_refusal_of_an_upgrade_of_one_migration_says_it_in_the_singular(tmp_path: Path):
    """A database one migration behind (the previous release's, the usual upgrade) beside a
    serving server: the refusal said "(1 migrations)"."""
    db = tmp_path / "hitl.db"
    old = Database(db)
    migrations.apply(old, stop_before=KNOWN_MIGRATIONS[-1])
    old.conn.close()
    with held_by_another(db, serving_line()):
        with pytest.raises(StoreError) as refused:
            Store.open(db)
    assert "needs an upgrade to this slack-hitl (1 migration), but a hitl server" in str(
        refused.value
    )
