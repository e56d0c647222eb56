"""What hitl says, and what it leaves behind, when the disk or the database's file cannot take
what it writes: an import that fills the disk says how many rows it kept (running it again is
safe), in one line and no traceback; an import whose process is gone does not stay "running";
a database path that is a directory, or a new file in a read-only folder, is named as such."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bot.cli import State, cli, friendly_errors
from bot.errors import StoreError
from bot.ingest import Row, RowError, import_rows
from bot.store import Store

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, prog_name="hitl", env=env)


# -- an import that fills the disk ---------------------------------------------------------------


REJECTED = 150  # rows the import refuses: their messages make the run's record a few pages long
GOOD = 4000


def rows_until_the_disk_fills(store: Store, fill_after: int) -> Iterator[Row | RowError]:
    """``REJECTED`` refused rows, then ``GOOD`` good ones; once ``fill_after`` good ones were
    read the database may grow no more (``max_page_count``, this connection's), as on a full
    disk: the batch being read fails when it is written, and so does the run's record."""
    for line in range(1, REJECTED + 1):
        yield RowError(line, 'column "text" is missing or empty (every row needs a text)')
    for n in range(1, GOOD + 1):
        yield Row(line=REJECTED + n, id=f"r{n}", text=f"item number {n}: my card was charged")
        if n == fill_after:
            pages = store.db.execute("PRAGMA page_count").fetchone()[0]
            store.db.execute(f"PRAGMA max_page_count = {pages}")


def test_an_import_that_fills_the_disk_says_what_it_kept_and_a_rerun_imports_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    db = tmp_path / "hitl.db"
    source = tmp_path / "big.jsonl"
    caplog.set_level(logging.WARNING)
    with Store.open(db) as store, pytest.raises(StoreError) as caught:
        # two batches of 1,000 are committed; the third does not fit
        import_rows(
            store, source, rows_until_the_disk_fills(store, 2500), triggered_by="cli:big.jsonl"
        )
    assert str(caught.value) == (
        f"{db}: the disk is full; free some space and try again. 2,000 rows, through line 2,150"
        " of big.jsonl, are stored: once that is fixed, run the same import again;"
        " it skips them as duplicates and imports the rest"
    )
    # Even the run's record did not fit: one line says so, without a traceback.
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.exc_info is None and "\n" not in warning.getMessage()
    assert warning.getMessage() == (
        "could not record import run 1 as failed (database or disk is full):"
        " the next import or retrain will"
    )
    with Store.open(db) as store:  # a new connection: room again
        assert store.count_items()["new"] == 2000
        again = import_rows(
            store, source, rows_until_the_disk_fills(store, -1), triggered_by="cli:big.jsonl"
        )
        assert (again.imported, again.duplicates, again.rejected) == (2000, 2000, REJECTED)
        assert store.count_items()["new"] == GOOD


# -- an import whose process is gone -------------------------------------------------------------


def start_an_import_and_die(db: Path) -> None:
    """Another process starts an import run and ends before it finishes it (killed, or its
    last write did not fit on the disk)."""
    code = (
        "import os, sys\n"
        "from bot.store import Store\n"
        "store = Store.open(sys.argv[1])\n"
        "store.start_run('import', triggered_by='cli:big.jsonl')\n"
        "os._exit(9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(db)], cwd=ROOT, check=False)
    assert done.returncode == 9


def test_a_later_import_ends_an_import_run_whose_process_is_gone_as_failed(tmp_path: Path):
    db = tmp_path / "hitl.db"
    start_an_import_and_die(db)
    with Store.open(db) as store:
        [stuck] = store.runs("import")
        assert stuck["status"] == "running"
        process = stuck["detail"]["process"]
        pid = process.split(":")[1]
        assert pid.isdecimal() and int(pid) != os.getpid()
        mine = store.start_run("import", triggered_by="test")  # this process runs: kept
    more = tmp_path / "more.txt"
    more.write_text("one more item\n")
    assert run("--db", str(db), "import", str(more)).exit_code == 0
    with Store.open(db) as store:
        runs = {r["id"]: r for r in store.runs("import")}
    assert runs[stuck["id"]]["status"] == "failed"
    assert runs[stuck["id"]]["finished_at"] is not None
    assert runs[stuck["id"]]["detail"] == {
        "process": process,
        "reason": f"it ended before it finished (its process, {process}, is gone)",
    }
    assert runs[mine]["status"] == "running"  # its process (this one) still runs
    assert [r["status"] for r in runs.values() if r["id"] not in (stuck["id"], mine)] == ["ok"]


# -- a database path that is a directory, or in a folder no one may write ------------------------


@pytest.mark.parametrize("command", ["stats", "import items.txt", "export"])
def test_hitl_db_naming_a_directory_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    (tmp_path / "items.txt").write_text("one item\n")
    result = run(*command.split(), env={"HITL_DB": "adir"})
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: adir: cannot open it (unable to open database file): it is a directory, not a"
        " database file; point --db/HITL_DB at a file (such as adir/hitl.db)\n"
    )


def test_a_database_in_the_current_folder_names_that_folder_not_a_dot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "items.txt").write_text("one item\n")
    assert run("--db", "hitl.db", "import", "items.txt").exit_code == 0
    with click.Context(cli, obj=State(Path("hitl.db"))), pytest.raises(click.ClickException) as c:
        with friendly_errors():  # a write the file refuses (as a read-only file does)
            conn = sqlite3.connect("file:hitl.db?mode=ro", uri=True)
            try:
                conn.execute("INSERT INTO runs (kind, started_at, status) VALUES ('x', 't', 'r')")
            finally:
                conn.close()
    assert c.value.message == (
        f"hitl.db is read-only: hitl needs write access to the file and its folder {tmp_path}"
        " (SQLite keeps hitl.db-wal and hitl.db-shm beside it)"
    )


def test_a_new_database_in_a_read_only_folder_says_the_folder_is_read_only(tmp_path: Path):
    """/proc/self: a folder in which no one may create a file, root included (root ignores
    chmod, so a folder made read-only with it would not do)."""
    items = tmp_path / "items.txt"
    items.write_text("one item\n")
    result = run("--db", "/proc/self/new.db", "import", str(items))
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: cannot create /proc/self/new.db: its folder /proc/self is read-only (hitl"
        " creates new.db, new.db-wal and new.db-shm there); make the folder writable or point"
        " --db/HITL_DB at a file in another folder\n"
    )


def test_a_database_in_a_folder_no_one_may_write_says_how_to_read_a_copy(tmp_path: Path):
    """A backup mount or a snapshot: hitl needs to write beside the database, so the commands
    that only read refused it, saying only that (an outside operations test). The line says
    how to read a copy. (/proc/self stands for such a folder, its status for the file: no one
    may write there, root included; the refusal is SQLite's own, from a write to a file
    opened read-only.)"""
    from bot.store import database_problem

    db = tmp_path / "hitl.db"
    refused = read_only_refusal(db)
    # an existing file in it (the message names the folder and the file as they are)
    line = str(database_problem(Path("/proc/self/status"), refused))
    assert line == (
        "/proc/self/status is read-only: hitl needs write access to the file and its folder"
        " /proc/self (SQLite keeps status-wal and status-shm beside it); to read it from here,"
        ' copy it (`sqlite3 /proc/self/status ".backup /tmp/status"`) and point --db at the'
        " copy"
    )
    assert "copy it" not in str(database_problem(db, refused))  # a folder one may write


def read_only_refusal(db: Path) -> sqlite3.OperationalError:
    """SQLite's own refusal of a write to a database ``db`` (made here) opened read-only."""
    Store.open(db).close()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError) as refused:
            conn.execute("INSERT INTO runs (kind, started_at, status) VALUES ('x', 't', 'r')")
    finally:
        conn.close()
    return refused.value
