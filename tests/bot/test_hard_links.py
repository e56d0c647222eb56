"""A database file with more than one name (hard links: `ln hitl.db prod.db`, a `cp -al`
snapshot folder), as real `hitl serve` and `hitl` processes meet it. SQLite keeps a -wal and
-shm per name, so two processes writing the file through two names damage it: a second server
on another name refuses to start, a CLI command through another name than the server's is
refused, and a file with two names is warned of (bot/store/lock.py)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from tests.bot.harness import Item, make_settings, seed, start_bot
from tests.bot.test_serve_process import CHECKOUT, free_port, read_until, serve_env

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the file's lock is Linux's")

ITEMS = [Item("a", "refund please"), Item("b", "app crashes"), Item("c", "hello")]


def linked(tmp_path: Path) -> tuple[Path, Path]:
    """A seeded database, and a second name of it in another folder (as `cp -al` makes)."""
    (tmp_path / "live").mkdir()
    (tmp_path / "snapshot").mkdir()
    db = tmp_path / "live" / "hitl.db"
    seed(db, ITEMS)
    link = tmp_path / "snapshot" / "hitl.db"
    os.link(db, link)
    return db, link


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "HITL_"))}
    env["PYTHONPATH"] = str(CHECKOUT)
    env["HITL_LABELS"] = "billing,bug,greeting"
    return subprocess.run(
        [sys.executable, "-m", "bot", "--db", str(db), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=db.parent,
    )


def names_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "names (hard links" in line]


async def ended_or_listening(process: asyncio.subprocess.Process) -> str:
    """Its stderr up to "listening on", or to its end: a server that starts is seen at once,
    with no wait for a timeout."""
    seen: list[str] = []
    assert process.stderr is not None
    while True:
        line = (await process.stderr.readline()).decode()
        seen.append(line)
        if not line or "listening on" in line:
            return "".join(seen)


async def test_a_second_server_on_another_name_of_the_database_refuses_naming_the_first(
    fake_slack: FakeSlack, tmp_path: Path
):
    db, link = linked(tmp_path)
    started: list[asyncio.subprocess.Process] = []

    async def start(path: Path) -> asyncio.subprocess.Process:
        env = {**serve_env(fake_slack, path, free_port()), "PYTHONPATH": str(CHECKOUT)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", env=env, stderr=asyncio.subprocess.PIPE
        )
        started.append(process)
        return process

    try:
        first = await start(db)
        seen: list[str] = []
        await asyncio.wait_for(read_until(first.stderr, "listening on", seen), 60)
        second = await start(link)
        said = await asyncio.wait_for(ended_or_listening(second), 60)
        assert "listening on" not in said, said
        assert await asyncio.wait_for(second.wait(), 60) == 1
        [line] = said.strip().splitlines()
        assert line.startswith(
            f"Error: {link} is in use by another hitl server or demo under another name, {db}"
            f" (a hard link to the same file; pid {first.pid} on "
        ), line
        assert ", since " in line  # the first's lock file, as a second on one path quotes it
        assert "SQLite keeps a journal per name" in line
        assert line.endswith("Stop that one first, or give this one another database (--db or"
                             " HITL_DB)")  # fmt: skip
        assert not link.with_name("hitl.db.server.lock").exists()  # the refused start's
        assert first.returncode is None  # the first one goes on
        [warning] = names_warnings("".join(seen))  # and it said the file has two names, once
        assert f"{db} has 2 names" in warning
        # Stopped cleanly: its log is copied back into the file and removed (one killed would
        # leave it beside its own name only, for a start through another name not to see)
        first.terminate()
        assert await asyncio.wait_for(first.wait(), 60) == 0
        third = await start(link)  # the other name, now the only server on the file
        await asyncio.wait_for(read_until(third.stderr, "listening on", []), 60)
        third.terminate()
        assert await asyncio.wait_for(third.wait(), 60) == 0
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
                await process.wait()
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_a_command_through_another_name_than_the_servers_is_refused(
    fake_slack: FakeSlack, tmp_path: Path
):
    """`hitl import --db prod.db` beside a server on hitl.db would write the one file through
    a second journal: refused in one line naming the server and its name; through the
    server's own name it runs (with the warning)."""
    db, link = linked(tmp_path)
    csv = tmp_path / "more.csv"
    csv.write_text("id,text\nm1,my card was charged twice\nm2,login fails\n")
    # The server in this process (the app `hitl serve` runs, its lock taken as it starts);
    # the commands it refuses are processes of their own (a server's interpreter: ~1.2 s of CPU)
    settings = make_settings(fake_slack, tmp_path, db=db, labels=("billing", "bug", "greeting"))
    async for _server in start_bot(fake_slack, settings):
        refused = await asyncio.to_thread(cli, link, "import", str(csv))
        assert refused.returncode == 1, refused
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith(
            f"Error: {link} is the database a hitl server or demo writes under another name,"
            f" {db} (a hard link to the same file; pid {os.getpid()} on "
        ), line
        assert f"Use that name (--db {db})" in line
        assert "never ln or cp -al" in line
        done = await asyncio.to_thread(cli, db, "import", str(csv))
        assert done.returncode == 0, done
        [warning] = names_warnings(done.stderr)
        assert f"{db} has 2 names" in warning
    with closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = {row[0] for row in con.execute("SELECT id FROM items")}
    assert {"m1", "m2"} <= ids  # once, through the server's name


def test_a_database_with_two_names_is_warned_of_with_what_to_do(tmp_path: Path):
    db, link = linked(tmp_path)
    ran = cli(link, "stats")
    assert ran.returncode == 0, ran
    [warning] = names_warnings(ran.stderr)
    assert "WARNING" in warning
    assert f"{link} has 2 names (hard links, made by ln or cp -al: not copies" in warning
    assert "SQLite keeps a journal (-wal) per name" in warning
    assert f"-xdev -samefile {link}` lists them all" in warning
    assert f'sqlite3 {link} ".backup copy.db"' in warning
    link.unlink()  # one name again: nothing said
    ran = cli(db, "stats")
    assert ran.returncode == 0, ran
    assert names_warnings(ran.stderr) == []
