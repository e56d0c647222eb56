"""`hitl export -o` never writes over the database it reads, and an import that rejects every
row removes only a database nobody else wrote to (outside code review, reader4 #1 and #2)."""

from __future__ import annotations

import os
import sqlite3
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

import bot.cli
from bot.cli import cli
from bot.store import Store


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], prog_name="hitl")


def items_in(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def labeled_db(tmp_path: Path) -> Path:
    db = tmp_path / "hitl.db"
    source = tmp_path / "in.jsonl"
    source.write_text('{"id":"a","text":"one","label":"x"}\n{"id":"b","text":"two"}\n')
    assert run(db, "import", str(source), "-q").exit_code == 0
    return db


@pytest.mark.parametrize(
    "name",
    [
        "hitl.db",  # the slip shell completion offers
        "sub/../hitl.db",  # another spelling of it
        "link.jsonl",  # a symlink to it
        "hard.jsonl",  # a hard link to it
        "hitl.db-wal",
        "hitl.db-shm",
        "hitl.db.server.lock",
        "hitl.db.models/labels.jsonl",
    ],
)
def test_an_export_to_the_database_or_a_file_of_it_is_refused_in_one_line(
    labeled_db: Path, name: str, monkeypatch: pytest.MonkeyPatch
):
    folder = labeled_db.parent
    monkeypatch.chdir(folder)
    (folder / "sub").mkdir()
    (folder / "hitl.db.models").mkdir()
    (folder / "link.jsonl").symlink_to("hitl.db")
    os.link(labeled_db, folder / "hard.jsonl")
    before = labeled_db.read_bytes()

    refused = run(Path("hitl.db"), "export", "-o", name)

    assert refused.exit_code == 1, refused.output
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"Error: cannot write {name}: it is ")
    assert "hitl.db" in line and line.endswith("name another file (labels.jsonl)")
    assert labeled_db.read_bytes() == before
    assert items_in(labeled_db) == 2
    assert run(Path("hitl.db"), "export", "-o", "labels.jsonl").exit_code == 0  # any other


def test_an_import_that_rejects_every_row_keeps_a_new_database_another_import_filled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "new.db"
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\n,x\n,y\n")  # every row: no text
    real = bot.cli.import_rows

    def beside_another_import(*args, **kwargs):
        summary = real(*args, **kwargs)
        with Store.open(db) as other:  # another import into the same new file, meanwhile
            item = types.SimpleNamespace(id="good1", text="a real ticket", meta={}, label="bug")
            other.add_items([item], "import")
        return summary

    monkeypatch.setattr(bot.cli, "import_rows", beside_another_import)
    refused = run(db, "import", str(bad), "-q")

    assert refused.exit_code == 1
    assert "every row of bad.csv was rejected" in refused.stderr
    assert db.exists() and items_in(db) == 1  # the other import's row is kept


def test_an_import_that_rejects_every_row_still_leaves_no_file_for_a_mistyped_db(tmp_path: Path):
    db = tmp_path / "typo.db"
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\n,x\n")

    assert run(db, "import", str(bad), "-q").exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
