"""A `hitl import` (or a `hitl serve`) beside a `hitl restore` onto a new path, or beside a `hitl
demo` making its database, was refused with a server's words: "… a hitl server or demo runs on
it …: was its database deleted or replaced while it ran? Stop it, put the database back …"
(an outside test of the new-database build). Refusing is right; the lock file now says what
holds it (", restoring", ", demo starting up": ``server_lock(kind=…)``), and the refusals read
it (``holder_words``): what runs, and to wait for it and run the command again."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import bot.demo.run as demo_run
import bot.store.restore as restore_module
from bot.cli import cli
from bot.demo.run import DemoOptions, load_data, running_demo
from bot.errors import StoreError
from bot.store import Store
from bot.store.lock import holder_words, lock_path, server_lock
from tests.bot.harness import Item
from tests.bot.test_new_database_race import hitl_import, lock_held_by_child

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no server lock on Windows")


def test_beside_a_restore_onto_a_new_path_an_import_and_a_server_are_told_to_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    backup = tmp_path / "backup.db"
    with Store.open(tmp_path / "old.db") as store:
        store.add_items([Item("a", "refund please", "billing")], "import")
    source, copy = sqlite3.connect(tmp_path / "old.db"), sqlite3.connect(backup)
    source.backup(copy)
    copy.close(), source.close()
    (tmp_path / "new").mkdir()
    db = tmp_path / "new" / "hitl.db"  # a new machine: nothing there yet

    seen: dict = {}
    in_use = restore_module.in_use

    def beside_the_restore(target: Path) -> bool:  # the restore holds the lock here
        if not seen:
            seen["line"] = lock_path(db.resolve()).read_text()
            seen["import"] = hitl_import(db, tmp_path)
            with pytest.raises(StoreError) as refused, server_lock(db, starting=True):
                pass
            seen["serve"] = str(refused.value)
        return in_use(target)

    monkeypatch.setattr(restore_module, "in_use", beside_the_restore)
    done = CliRunner().invoke(cli, ["--db", str(db), "restore", str(backup)], prog_name="hitl")
    assert done.exit_code == 0, done.output
    assert seen["line"].startswith(f"pid {os.getpid()} on ")
    assert seen["line"].endswith(", restoring\n") and seen["line"].count("\n") == 1
    holder = seen["line"].strip()
    words = (
        f"a hitl restore is putting a backup in place there ({holder}): wait for it to finish,"
        " then run this command again"
    )
    assert holder_words(holder) == words
    assert seen["serve"] == f"{db} is in use: {words}"
    imported = seen["import"]
    assert imported.returncode != 0
    assert f"Error: {db} is in use: {words}" in imported.stderr  # not "deleted or replaced"
    assert "Traceback" not in imported.stderr
    with Store.open(db, create=False) as store:  # the backup, restored; the import made nothing
        assert store.db.execute("SELECT count(*) FROM items").fetchone()[0] == 1
    assert not lock_path(db.resolve()).exists()


async def test_a_demo_says_it_starts_until_its_database_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    options = DemoOptions(db=tmp_path / "demo.db", port=0)
    backup = tmp_path / "backup.db"
    Store.open(backup).close()
    seen: dict = {}
    prepare = demo_run.prepare_database

    def beside_the_demo_start(db: Path) -> None:  # the demo holds the lock here
        seen["line"] = lock_path(db.resolve()).read_text()
        with pytest.raises(StoreError) as refused, server_lock(db, starting=True):
            pass
        seen["serve"] = str(refused.value)
        seen["restore"] = CliRunner().invoke(
            cli, ["--db", str(db), "restore", str(backup)], prog_name="hitl"
        )
        prepare(db)

    monkeypatch.setattr(demo_run, "prepare_database", beside_the_demo_start)
    async with running_demo(options, load_data(options), echo=lambda line: None, background=False):
        serving = lock_path(options.db.resolve()).read_text()
    holder = seen["line"].strip()
    assert holder.startswith(f"pid {os.getpid()} on ") and holder.endswith(", demo starting up")
    assert seen["serve"] == (
        f"{options.db} is in use: a hitl demo is making its database there ({holder}): wait"
        " until it has started, then run this command again"
    )
    assert seen["restore"].exit_code == 1
    # (in this process, the lock's own refusal: other_server takes this pid's for its own)
    assert seen["restore"].output.strip().splitlines()[-1] == (
        f"Error: {options.db} is in use: a hitl demo is making its database there ({holder}):"
        " wait until it has started, then run this command again"
    )
    # once its database is made it serves: a server's line, read as one
    assert serving == holder.removesuffix(", demo starting up") + "\n"
    assert holder_words(serving.strip()) is None


@pytest.mark.parametrize(
    "line",
    [
        "pid 812 on host, since 2026-12-01T10:00:00+00:00",  # a server that serves
        "pid 812 on host, since 2026-12-01T10:00:00+00:00, starting",  # one still starting
        "pid 812 on host",  # an older slack-hitl's, or one cut short
        "unknown",
        "",
    ],
)
def test_a_servers_line_and_older_lines_are_no_restore_nor_demo(line: str):
    assert holder_words(line) is None


def test_a_restore_beside_another_restore_is_told_to_wait_for_it(tmp_path: Path):
    """The lock held by another process's restore (its line: ", restoring")."""
    db, backup = tmp_path / "hitl.db", tmp_path / "backup.db"
    Store.open(backup).close()
    with lock_held_by_child(db, leave_no_file=True, kind="restore") as child:
        holder = lock_path(db.resolve()).read_text().strip()
        done = CliRunner().invoke(cli, ["--db", str(db), "restore", str(backup)], prog_name="hitl")
    assert child.returncode == 0
    assert holder.startswith(f"pid {child.pid} on ") and holder.endswith(", restoring")
    assert done.exit_code == 1
    assert done.output.strip().splitlines()[-1] == (
        f"Error: cannot restore {db} now: a hitl restore is putting a backup in place there"
        f" ({holder}): wait for it to finish, then run this command again"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db"]
