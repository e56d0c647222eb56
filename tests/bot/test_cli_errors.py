"""What `hitl` says when the database, an output path or the disk is not as it expects: one line
naming the file and what to do, never a traceback; and `hitl export -o` replaces only what can be
replaced (a regular file), writing a FIFO, a device or /dev/stdout as it is."""

from __future__ import annotations

import gc
import os
import re
import sqlite3
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bot.cli import State, cli, friendly_errors
from tests.bot.test_cli_loop import labeled_file

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, prog_name="hitl")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with 12 decided labels."""
    path = tmp_path / "hitl.db"
    assert run("--db", str(path), "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    return path


def exported(db: Path) -> str:
    return run("--db", str(db), "export").stdout


# -- a database that is locked, read-only or another program's --------------------------------


@contextmanager
def another_writer(db: Path) -> Iterator[None]:
    """Another process's write transaction (the sqlite3 shell's, a backup tool's). Out of WAL
    mode, as such a tool may leave the file, SQLite reports the lock to hitl at once instead of
    after its 10 s busy timeout: opening must turn WAL back on, which the writer blocks."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("PRAGMA journal_mode = DELETE")
    other.execute("BEGIN IMMEDIATE")
    other.execute(
        "INSERT INTO runs (kind, started_at, status, detail) VALUES ('x', 't', 'r', '{}')"
    )
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.mark.parametrize("command", ["import {more}", "labels set ab0 bug", "retrain"])
def test_a_locked_database_is_one_line_saying_to_try_again(db: Path, tmp_path: Path, command: str):
    # A file with rows: its reader is open when the store turns out to be locked, and is
    # closed then, not left to garbage collection (whose ResourceWarning lands on a later test).
    more = tmp_path / "more.txt"
    more.write_text("one more item\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with another_writer(db):
            result = run("--db", str(db), *command.format(more=more).split())
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {db} is locked by another process writing to it (a hitl import or serve?); "
        "try again when it is done\n"
    )


def _read_only_write(db: Path) -> None:
    """A write on a connection that may only read: SQLite's own "attempt to write a readonly
    database", as a file hitl may not write gives once it is open."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        conn.execute(
            "INSERT INTO runs (kind, started_at, status, detail) VALUES ('x', 't', 'r', '{}')"
        )
    finally:
        conn.close()


def _busy_write(db: Path) -> None:
    """A write that finds another connection writing and does not wait (a busy timeout of 0)."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("fail", "expected"),
    [
        (
            _read_only_write,
            "{db} is read-only: hitl needs write access to the file and its folder {folder} "
            "(SQLite keeps hitl.db-wal and hitl.db-shm beside it)",
        ),
        (
            _busy_write,
            "{db} is locked by another process writing to it (a hitl import or serve?); "
            "try again when it is done",
        ),
    ],
)
def test_a_database_error_raised_inside_a_command_is_one_line_naming_the_database(
    db: Path, fail, expected: str
):
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # for _busy_write; a read-only write fails before it looks
    try:
        with click.Context(cli, obj=State(db)), pytest.raises(click.ClickException) as caught:
            with friendly_errors():
                fail(db)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert caught.value.message == expected.format(db=db, folder=db.parent)


def test_a_read_only_command_on_another_programs_database_changes_nothing(tmp_path: Path):
    app = tmp_path / "app.db"
    conn = sqlite3.connect(app)
    conn.executescript("CREATE TABLE users (id, name); CREATE TABLE orders (id);")
    conn.close()
    result = run("--db", str(app), "stats")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {app} is not a slack-hitl database (it has tables orders, users); "
        "point --db/HITL_DB at another file\n"
    )
    conn = sqlite3.connect(app)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master ORDER BY name")] == [
        "orders",
        "users",
    ]
    conn.close()


def test_hitl_models_creates_no_models_folder(db: Path):
    result = run("--db", str(db), "models")
    assert result.stdout == "No models yet: `hitl retrain` trains the first one.\n"
    assert not Path(f"{db}.models").exists()  # a read-only folder would have failed here


def test_a_system_error_inside_a_command_is_one_line_naming_the_path(db: Path):
    Path(f"{db}.models").write_text("not a folder")  # where the models folder should be
    result = run("--db", str(db), "retrain")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {db}.models: File exists\n"


# -- hitl export -o: what is replaced and what is written as it is ------------------------------


def test_export_through_a_symlink_replaces_its_target_and_keeps_the_link(db: Path, tmp_path: Path):
    target = tmp_path / "target.jsonl"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target.name)
    result = run("--db", str(db), "export", "-o", str(link))
    assert result.stderr == f"wrote 12 labels to {link}\n"
    assert link.is_symlink() and os.readlink(link) == "target.jsonl"
    assert target.read_text() == exported(db)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the replaced file's mode is kept


def test_export_to_a_new_file_is_its_owners_only_as_the_database_is(db: Path, tmp_path: Path):
    previous = os.umask(0o027)
    try:
        run("--db", str(db), "export", "-o", str(tmp_path / "new.jsonl"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o600  # texts, user ids


def test_export_to_a_fifo_writes_into_it(db: Path, tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the writer need not wait
    try:
        result = run("--db", str(db), "export", "-o", str(fifo))
        received = os.read(reader, 1 << 16).decode()  # 12 labels fit in the pipe's buffer
    finally:
        os.close(reader)
    assert result.exit_code == 0
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the FIFO, not a regular file in its place
    assert received == exported(db)


def test_export_to_a_file_descriptors_name_writes_to_it_and_appends(db: Path, tmp_path: Path):
    # What /dev/stdout is: a link to /proc/self/fd/1. Here fd N of a pipe and of a file opened
    # for appending (`hitl export -o /dev/stdout | wc`, `hitl export -o /dev/stdout >> all.jsonl`).
    read_end, write_end = os.pipe()
    appended = tmp_path / "all.jsonl"
    appended.write_text("first\n")
    append_fd = os.open(appended, os.O_WRONLY | os.O_APPEND)
    try:
        for fd in (write_end, append_fd):
            out = tmp_path / f"out{fd}"
            out.symlink_to(f"/proc/self/fd/{fd}")
            assert run("--db", str(db), "export", "-o", str(out)).exit_code == 0
            assert out.is_symlink()
        os.close(write_end)
        piped = os.read(read_end, 1 << 16).decode()
    finally:
        os.close(read_end)
        os.close(append_fd)
    assert piped == exported(db)
    assert appended.read_text() == "first\n" + exported(db)


# -- output paths that cannot be written ----------------------------------------------------------


def test_export_to_a_path_that_cannot_be_written_is_one_line(db: Path, tmp_path: Path):
    in_the_way = tmp_path / "labels.jsonl"
    in_the_way.write_text("a file, not a folder")
    output = in_the_way / "out.jsonl"
    result = run("--db", str(db), "export", "-o", str(output))
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write {output}: Not a directory\n"
    assert in_the_way.read_text() == "a file, not a folder"


def test_export_into_a_folder_that_does_not_exist_is_one_line_naming_it(db: Path, tmp_path: Path):
    # The missing folders were created and "wrote 12 labels" said: a mistyped path went unseen.
    output = tmp_path / "no" / "such" / "out.jsonl"
    result = run("--db", str(db), "export", "-o", str(output))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: cannot write {output}: the folder {output.parent} does not exist; create it "
        "or fix the path\n"
    )
    assert not (tmp_path / "no").exists()


def test_a_chart_without_a_model_says_that_no_chart_was_saved(db: Path, tmp_path: Path):
    chart = tmp_path / "chart.png"
    result = run("--db", str(db), "accuracy", "--chart", str(chart))
    assert result.stdout.startswith("No model yet.")
    assert result.stderr == f"no chart saved to {chart}: there is no model to chart yet\n"
    assert not chart.exists()


def test_a_chart_that_cannot_be_saved_is_one_line_naming_it(db: Path, tmp_path: Path):
    assert run("--db", str(db), "retrain").exit_code == 0
    chart = tmp_path / "no" / "such" / "chart.png"
    result = run("--db", str(db), "accuracy", "--chart", str(chart))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: cannot save the chart to {chart}: the folder {chart.parent} does not exist;"
        " create it or fix the path\n"
    )


# -- the size of a model file, as measured -----------------------------------------------------


def test_help_and_readme_give_the_measured_model_file_size():
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    row = re.search(r"^\| model file MiB \| [\d.]+ \| ([\d.]+) \|", results, re.M)
    assert row, "RESULTS.md's Model footprint table has a 'model file MiB' row"
    size = f"{round(float(row.group(1)))} MiB at 1,000 labels"  # "now", 1,000 labels, 89 classes
    help_text = " ".join(run("models", "--help").stdout.split())
    text = (ROOT / "README.md").read_text()
    readme = " ".join(text.split())
    [keep_models] = [line for line in text.splitlines() if line.startswith("| `HITL_KEEP_MODELS`")]
    assert f"about {size} in 89 classes" in help_text
    assert f"{size} in 89 classes" in keep_models
    assert f"A model file is a few MiB ({size} and 89 labels to choose from" in readme
    assert not re.search(r"100.400 MB|about 10 MB", help_text + readme)
