"""A database restored under the running server by copying a backup over it (``cp backup.db
hitl.db``: the same file, the same inode), and a click whose fsync fails.

Before, the file check compared only (device, inode): a copy put over the file was never seen,
/healthz said ok, clicks were acked, and the server's write-ahead log (the old file's pages)
was applied over the copy, which ended damaged. Now the checkpointer keeps a generation in the
file's header that only goes up (``bot.store.core.FileWatch``), and a copy made before the last
checkpoint holds a lower one: said once, writes refused, /healthz 503; and no checkpoint copies
the old log into it.

A click whose fsync failed (a disk error, the log's file gone) was acked 200 with a traceback;
now it is not stored as far as Slack knows: 503, one line, and Slack's retry is stored once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.learning.jobs import Trainer
from bot.store import Checkpointer, Store
from bot.store import core as store_core
from tests.bot.harness import Bot, Item
from tests.bot.test_db_file_faults import AUTH, bot, errors  # noqa: F401 - bot: the fixture


async def health(running: Bot) -> int:
    return (await running.http.get("/healthz")).status


def server_checkpointer(store: Store) -> Checkpointer:
    """The server's checkpointer (bot/server.py), run by the test instead of every second."""
    watch = getattr(store, "file_watch", None)  # (a slack-hitl before FileWatch had none)
    checkpointer = Checkpointer(store.db, watch()) if watch else Checkpointer(store.db)
    checkpointer.take_over()
    return checkpointer


def copy_in_place(source: Path, db: Path) -> None:
    """``cp source db``: the bytes of ``source`` written into the file at ``db`` (same inode)."""
    inode = db.stat().st_ino
    shutil.copyfile(source, db)
    assert db.stat().st_ino == inode


def same_bytes(one: Path, other: Path) -> bool:
    return one.read_bytes() == other.read_bytes()


def add(store: Store, prefix: str, n: int) -> None:
    store.add_items([Item(f"{prefix}{i}", f"{prefix} text number {i}") for i in range(n)], "t")


async def test_a_backup_copied_over_the_running_servers_database_is_said_once_and_refused(
    bot: Bot,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
):
    db = Path(bot.rt.settings.db)
    checkpointer = server_checkpointer(bot.store)
    checkpointer.run()
    backup = db.with_name("backup.db")
    with (  # a backup made with SQLite's backup API
        contextlib.closing(sqlite3.connect(db)) as source,
        contextlib.closing(sqlite3.connect(backup)) as copy,
    ):
        source.backup(copy)
    assert await bot.dispatcher.fill() >= 1
    [message, *_] = bot.posted()
    response = await bot.action(bot.button_payload(message, "U0ANA", bot.first_label(message)))
    assert response.status == 200
    await bot.settled()  # its redraw after the ack, too
    # and the refresh the click may start: one reading while the file is overwritten meets a
    # malformed page first and says "damaged", which the health check then repeats (a full
    # run, fast enough, hit it once)
    await Trainer.of(bot.rt).settled()
    checkpointer.run()  # the click goes into the file
    checkpointer.run()
    assert await health(bot) == 200  # the server's own writes are not a restore
    assert errors(caplog) == []

    copy_in_place(backup, db)  # the restore, while the server runs
    assert await health(bot) == 503
    said = errors(caplog)
    assert len(said) == 1 and said[0].exc_info is None
    line = said[0].getMessage()
    assert f"{db} was overwritten in place while the server had it open" in line
    assert "stop hitl serve before copying the backup again" in line
    assert "refuses writes" in line
    assert checkpointer.run() == (0, 0, 0)  # the old log is not copied over the restored file
    assert same_bytes(db, backup)
    response = await bot.http.post("/api/items", json={"items": [{"text": "x"}]}, headers=AUTH)
    assert response.status == 503
    [_, second, *_] = bot.posted()
    caplog.clear()
    response = await bot.action(bot.button_payload(second, "U0ANB", bot.first_label(second)))
    assert response.status == 503  # a click is not acked: it would not be kept
    [refused] = [r.getMessage() for r in errors(caplog)]
    assert "was overwritten in place" in refused and "read-only" not in refused
    assert await health(bot) == 503
    assert len([r for r in errors(caplog) if "refuses writes" in r.getMessage()]) == 0  # once


def test_the_file_itself_put_back_as_it_was_earlier_is_told(tmp_path: Path):
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        checkpointer = server_checkpointer(store)
        add(store, "a", 50)
        checkpointer.run()
        assert store.check_file() is None
        earlier = db.read_bytes()  # the file a minute ago
        add(store, "b", 50)
        checkpointer.run()
        assert store.check_file() is None
        db.write_bytes(earlier)  # in place, as cp does
        problem = store.check_file()
        assert problem is not None and "was overwritten in place" in problem
        assert store.check_file() is None  # said once
        with pytest.raises(sqlite3.Error):
            add(store, "c", 1)  # writes are refused
        with pytest.raises(StoreError, match="was overwritten in place"):
            store.apart()  # no connection of its own on the mixed file either


def test_a_backup_from_before_the_server_started_is_told(tmp_path: Path):
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        add(store, "a", 20)
    backup = tmp_path / "backup.db"
    shutil.copyfile(db, backup)
    with Store.open(db) as store:
        add(store, "b", 20)  # a `hitl import` while no server ran
    with Store.open(db) as store:  # the server starts
        checkpointer = server_checkpointer(store)
        checkpointer.run()
        assert store.check_file() is None
        copy_in_place(backup, db)
        assert store.check_file() is not None


def test_an_unchanged_idle_server_writes_nothing_to_its_file(tmp_path: Path):
    # the generation goes up only when pages went into the file: an idle server leaves it as is
    db = tmp_path / "hitl.db"
    with Store.open(db) as store:
        checkpointer = server_checkpointer(store)
        add(store, "a", 5)
        checkpointer.run()
        checkpointer.run()
        before = (db.stat().st_mtime_ns, db.read_bytes())
        touched = checkpointer.touched
        for _ in range(3):
            checkpointer.run()
            assert store.check_file() is None
        assert (db.stat().st_mtime_ns, db.read_bytes()) == before
        assert checkpointer.touched == touched


def test_writes_and_checkpoints_of_other_processes_beside_the_server_are_no_restore(
    tmp_path: Path,
):
    """A `hitl import` of thousands of rows beside the server checkpoints on its own (its log
    passes 1,000 pages), and another connection in the server's process writes too: the file
    changes under the server many times over, never as a copy."""
    db = tmp_path / "hitl.db"
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "id,text\n"
        + "".join(f"n{i},a fairly long text for row {i} {'x' * 200}\n" for i in range(20000))
    )
    with Store.open(db) as store:
        checkpointer = server_checkpointer(store)
        checkpointer.run()
        start = store.file_watch().seen
        cli = [sys.executable, "-m", "bot", "--db", str(db), "import", str(rows)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        importing = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with Store.open(db) as other:  # a worker thread's connection, or `hitl labels ...`
            n = 0
            while importing.poll() is None or n < 5:
                n += 1
                add(other, f"o{n}-", 300)
                checkpointer.run()
                assert store.check_file() is None, n
        out, err = importing.communicate()
        assert importing.returncode == 0, err.decode()[-500:]
        assert b"imported 20,000" in out
        checkpointer.run()
        assert store.check_file() is None
        assert store.file_watch().seen > start  # the generation went up, never down
        assert store.count_items()["new"] >= 20000


# -- a click whose fsync fails ------------------------------------------------------------------


async def test_a_click_whose_fsync_fails_gets_503_and_its_retry_is_stored_once(
    bot: Bot,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    assert await bot.dispatcher.fill() >= 1
    [message, *_] = bot.posted()
    payload = bot.button_payload(message, "U0ANA", bot.first_label(message))

    def failing(path: str) -> float:
        raise OSError(errno.EIO, "Input/output error", path)

    monkeypatch.setattr(store_core, "_fsync", failing)
    response = await bot.action(payload)
    assert response.status == 503  # Slack shows the person the click failed, and retries
    said = errors(caplog)
    assert len(said) == 1 and said[0].exc_info is None, [r.getMessage() for r in said]
    line = said[0].getMessage()
    assert "written but not known to be on disk, so not acknowledged" in line
    assert "fsync failed" in line and "Input/output error" in line
    assert "request failed" not in line

    monkeypatch.undo()  # the disk works again: Slack's retry of the same click
    response = await bot.action(payload)
    assert response.status == 200
    await bot.settled()
    answers = [a for a in bot.store.iter_answers() if a["user_id"] == "U0ANA"]
    assert len(answers) == 1, answers
