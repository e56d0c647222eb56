"""A database path hitl cannot use, told in one line that names it and the way out, before
SQLite touches it (an outside test of the shell, findings 10, 13 and 14):

- a device, a named pipe (``HITL_DB=/dev/null``): it was "the disk failed … check the disk",
  and SQLite left a world-writable ``/dev/null-journal``;
- a file this user may not read (another user's, mode 0600): it was called "read-only";
- a relative path (the default ``hitl.db``, ``-o out.jsonl``) while the folder hitl runs in
  was deleted: it was "Error: No such file or directory", naming nothing."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = [
    "stats",
    "export",
    "import items.txt",
    "labels show",
    "models",
    "accuracy",
    "retrain",
    "restore backup.db",
]


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, prog_name="hitl")


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with an item file and a backup to restore, as the commands above need."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "items.txt").write_text("one item\n")
    assert run("--db", "backup.db", "import", "items.txt").exit_code == 0
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS)
def test_a_named_pipe_as_the_database_is_refused_in_one_line(inputs: Path, command: str):
    """Run as a child, with a bound: a FIFO opened for reading waits for a writer. (Old code:
    "the disk failed to read or write it (disk I/O error); check the disk"; `hitl restore`
    waited for ever.)"""
    fifo = inputs / "db.fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HITL_DB": str(fifo)}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bot", *command.split()],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"hitl {command} with HITL_DB a FIFO did not end within 120 s")
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {fifo} is a named pipe (FIFO), not a database file: hitl keeps its data in a"
        " file (and its journal beside it); point --db/HITL_DB at a file (such as ./hitl.db)\n"
    )
    assert sorted(p.name for p in inputs.iterdir()) == ["backup.db", "db.fifo", "items.txt"]


@pytest.mark.parametrize("command", ["stats", "import items.txt"])
def test_dev_null_as_the_database_is_refused_and_nothing_is_written_in_dev(
    inputs: Path, command: str
):
    """(Old code: "check the disk", and /dev/null-journal, mode 0666, left in /dev.)"""
    journal = Path("/dev/null-journal")
    there = journal.exists()
    try:
        result = run(*command.split(), env={"HITL_DB": "/dev/null"})
        assert result.exit_code == 1
        assert result.stderr == (
            "Error: /dev/null is a character device, not a database file: hitl keeps its data in"
            " a file (and its journal beside it); point --db/HITL_DB at a file (such as"
            " ./hitl.db)\n"
        )
        assert journal.exists() == there
    finally:
        if journal.exists() and not there:  # the old code's, removed
            journal.unlink()


def _without_read_access() -> list[str] | None:
    """A command prefix that runs hitl as a user who may not read a file another user owns
    with mode 0600: as root, root without the capabilities that ignore file modes (util-linux
    setpriv drops them from the bounding set: what root then execs has none); as anyone else,
    nothing (the file is made unreadable to its owner instead). None when neither works."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
    works = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    return prefix if works.returncode == 0 else None


def test_a_database_this_user_cannot_read_is_said_so_not_read_only(tmp_path: Path):
    """Another user's database, mode 0600: "permission denied", its owner and mode, and the
    way out. (Old code: "… is read-only: hitl needs write access to the file and its folder".)
    As root the file is given to uid 65534 and hitl runs without CAP_DAC_OVERRIDE (setpriv);
    as another user it is that user's own file, mode 0000."""
    prefix = _without_read_access()
    if prefix is None:
        pytest.skip("running as root without setpriv, or one that cannot drop capabilities")
    db = tmp_path / "a.db"
    (tmp_path / "items.txt").write_text("one item\n")
    assert run("--db", str(db), "import", str(tmp_path / "items.txt")).exit_code == 0
    if os.geteuid() == 0:
        os.chown(db, 65534, -1)
        os.chmod(db, 0o600)
        owner = pwd.getpwuid(65534).pw_name
        mode = "0600"
        fix = (
            f"run hitl as {owner}, or have {owner} (or root) give this user read and write"
            " access to it (chown or chmod)"
        )
    else:
        os.chmod(db, 0o000)
        owner = pwd.getpwuid(os.geteuid()).pw_name
        mode = "0000"
        fix = f"give yourself access: chmod u+rw {db}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HITL_DB": str(db)}
    try:
        for command in (["stats"], ["import", str(tmp_path / "items.txt")], ["export"]):
            done = subprocess.run(
                [*prefix, sys.executable, "-m", "bot", *command],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 1, done.stderr
            assert done.stderr == (
                f"Error: {db}: permission denied: hitl cannot read it (owned by {owner}, mode"
                f" {mode}); {fix}\n"
            )
    finally:
        os.chmod(db, 0o600)


def _in_a_deleted_folder(folder: Path, *args: str, db: str | None) -> subprocess.CompletedProcess:
    """`hitl ARGS` run in ``folder``, which is deleted once it runs there (as a deploy replaces
    a release folder, or `rm -rf` in another shell); PWD names it, as the shell sets it."""
    folder.mkdir()
    program = (
        "import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]);"
        " sys.argv = ['hitl', *sys.argv[2:]]; from bot.cli import main; main()"
    )
    env = {k: v for k, v in os.environ.items() if k != "HITL_DB"}
    env |= {"PYTHONPATH": str(ROOT), "PWD": str(folder), **({"HITL_DB": db} if db else {})}
    return subprocess.run(
        # -P: no '' (the folder, once gone) first on sys.path, as for the `hitl` script; with it,
        # Python 3.13.0 raises SystemError for any missing module attribute (its check whether a
        # module in the current folder shadows the standard library cannot read that folder), so
        # `import socket` failed before hitl ran
        [sys.executable, "-P", "-c", program, str(folder), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("db", [None, "rel.db"])
@pytest.mark.parametrize("command", ["import", "stats"])
def test_a_relative_database_in_a_deleted_folder_names_it_and_the_fix(
    tmp_path: Path, db: str | None, command: str
):
    """(Old code: "Error: No such file or directory"; `stats`: "no database at hitl.db
    (nothing imported here yet)".)"""
    items = tmp_path / "items.txt"
    items.write_text("one item\n")
    args = ["import", str(items)] if command == "import" else ["stats"]
    gone = tmp_path / "release"
    done = _in_a_deleted_folder(gone, *args, db=db)
    name = db or "hitl.db"
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: {name}: the folder hitl runs in ({gone}) was deleted or moved away, so {name}"
        " cannot be found from it: cd to a folder that exists, or point --db/HITL_DB at an"
        " absolute path\n"
    )


def test_export_to_a_relative_file_in_a_deleted_folder_names_it_and_the_fix(tmp_path: Path):
    """(Old code: "Error: No such file or directory".)"""
    db = tmp_path / "hitl.db"
    (tmp_path / "items.txt").write_text("one item\n")
    assert run("--db", str(db), "import", str(tmp_path / "items.txt")).exit_code == 0
    gone = tmp_path / "release"
    done = _in_a_deleted_folder(gone, "export", "-o", "out.jsonl", db=str(db))
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: the folder hitl runs in ({gone}) was deleted or moved away, so out.jsonl"
        " cannot be found from it: cd to a folder that exists\n"
    )


def test_a_relative_file_to_import_in_a_deleted_folder_names_it_and_the_fix(tmp_path: Path):
    """(Old code: "items.txt: cannot read the file (No such file or directory); check the
    path", though the path is right: the folder it is found from is gone.)"""
    gone = tmp_path / "release"
    done = _in_a_deleted_folder(gone, "import", "items.txt", db=str(tmp_path / "hitl.db"))
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: items.txt: the folder hitl runs in ({gone}) was deleted or moved away, so"
        " items.txt cannot be found from it: cd to a folder that exists, or give the file's"
        " absolute path\n"
    )
