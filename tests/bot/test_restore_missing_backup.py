"""`hitl restore` of a mistyped backup path: it said the file was "not an SQLite file", and left
an empty file under that name (the look at what changed since the backup attached the path
read-write, and SQLite made it). Now it says there is no such file, and makes none."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from tests.bot.harness import Item, seed


def test_a_backup_path_that_names_no_file_is_refused_as_such_and_not_made(tmp_path: Path):
    db, missing = tmp_path / "hitl.db", tmp_path / "hitl-monday.db"
    seed(db, [Item("T-1", "refund please")])
    done = CliRunner().invoke(cli, ["--db", str(db), "restore", str(missing)], prog_name="hitl")
    assert done.exit_code == 1
    assert done.output.strip().splitlines()[-1] == (
        f"Error: cannot restore from {missing}: no such file"
    )
    assert not missing.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hitl.db"]
