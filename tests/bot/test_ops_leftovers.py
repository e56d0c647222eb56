"""What an outside tester's operations report left after its MEDIUM fixes: a server started
beside a database restored without its models says so; `hitl accuracy` reports the version a
damaged champion falls back to; a click after the database file was deleted says so, not
"read-only"; a refused `hitl serve` and a reading `hitl accuracy` leave nothing behind."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.sandbox import FakeSlack
from bot.store import Store, database_problem
from tests.bot.harness import Item, make_settings, start_bot
from tests.bot.test_cli_loop import labeled_file, run
from tests.bot.test_serve_process import free_port

# -- a server started without its models -------------------------------------------------------


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    """A database with a champion, v1, made by the CLI (outside the test's event loop)."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    return db


def server_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bot.server" and r.levelno == logging.WARNING
    ]


async def test_a_server_beside_a_database_restored_without_its_models_says_so_once(
    fake_slack: FakeSlack, trained: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    models = Path(f"{trained}.models")
    shutil.rmtree(models)  # the database restored on its own

    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        assert bot.rt.champion is None
    assert server_warnings(caplog) == [
        f"the database records model v1 (champion v1) but {models} has no files for it: restore"
        f" them from a backup of {models}, or `hitl retrain` trains a new model (v2); until"
        " then `hitl serve` serves no model"
    ]


async def test_a_server_whose_champion_file_is_damaged_with_no_fallback_says_so(
    fake_slack: FakeSlack, trained: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    models = Path(f"{trained}.models")
    (models / "v1.skops").write_bytes(b"damaged")

    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        assert bot.rt.champion is None
    assert server_warnings(caplog) == [
        f"no model is served: champion v1's file v1.skops in {models} was refused, and no"
        f" earlier version can stand in (see above): restore it from a backup of {models}, or"
        " `hitl retrain --force` trains a new model"
    ]


async def test_a_server_whose_models_are_all_there_warns_of_nothing(
    fake_slack: FakeSlack, trained: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        assert bot.rt.champion is not None
    assert server_warnings(caplog) == []


# -- `hitl accuracy` with the champion's metadata damaged --------------------------------------


def test_accuracy_with_damaged_champion_metadata_reports_the_version_served_instead(
    tmp_path: Path,
):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v2: promoted")
    (tmp_path / "hitl.db.models" / "v2.json").write_text("{broken")

    result = run(db, "accuracy")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Model v1 — ")
    assert lines[1] == (
        "Champion v2: its metadata (v2.json) is damaged, so v1, the newest earlier version, is"
        " the one a server loads"
    )
    assert "until then `hitl serve` serves v1, an earlier model" in result.stderr


# -- damaged metadata of an earlier version: said once ----------------------------------------


@pytest.fixture
def v1_damaged(trained: Path) -> Path:
    """Champion v2, and v1's metadata damaged (made outside the test's event loop)."""
    assert run(trained, "retrain", "--force").stdout.startswith("Retrain v2: promoted")
    (Path(f"{trained}.models") / "v1.json").write_text("{broken")
    return trained


def said_of(name: str, caplog: pytest.LogCaptureFixture, *more: str) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return [line for line in [*lines, *more] if name in line]


async def test_a_server_says_damaged_metadata_of_an_earlier_version_once(
    fake_slack: FakeSlack, v1_damaged: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """It was logged as the registry skipped it and again in the start's line of model
    problems."""
    caplog.clear()
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        assert bot.rt.champion is not None and bot.rt.champion.version == 2
    [line] = said_of("v1.json", caplog)
    assert line.endswith("is damaged (model v1 metadata is unreadable: Expecting property name"
                         " enclosed in double quotes: line 1 column 2 (char 1)): restore it from"
                         " a backup; until then v1 cannot be rolled back to")  # fmt: skip


def test_accuracy_says_damaged_metadata_of_an_earlier_version_once(
    v1_damaged: Path, caplog: pytest.LogCaptureFixture
):
    caplog.clear()
    result = run(v1_damaged, "accuracy")
    assert result.exit_code == 0
    [line] = said_of("v1.json", caplog, *result.stderr.splitlines())
    assert line.startswith("Warning: ") and "v1.json is damaged" in line


# -- a click after the database file was deleted under the server ------------------------------


def refused_write(tmp_path: Path, lose) -> tuple[Store, sqlite3.Error]:
    db = tmp_path / "hitl.db"
    store = Store.open(db)
    lose(db)
    assert store.check_file() is not None  # what the champion watch does every second
    with pytest.raises(sqlite3.Error) as caught:
        store.add_items([Item("x1", "a new item")], "import")
    return store, caught.value


def test_a_write_after_the_database_file_was_deleted_says_deleted_not_read_only(tmp_path: Path):
    db = tmp_path / "hitl.db"
    store, exc = refused_write(tmp_path, Path.unlink)
    try:
        said = str(database_problem(db, exc))  # as bot/slack/app.py calls it
    finally:
        store.close()
    assert said == (
        f"{db} was deleted or moved away while hitl had it open, so writes to it are refused"
        f" (they would be lost): put the database back at {db} (or move what is left there"
        " away to start afresh) and restart hitl serve"
    )


def test_a_write_after_the_database_file_was_replaced_names_the_stores_reason(tmp_path: Path):
    db = tmp_path / "hitl.db"

    def replace(path: Path) -> None:
        path.unlink()
        sqlite3.connect(path).close()  # another file at the path

    store, exc = refused_write(tmp_path, replace)
    try:
        said = str(database_problem(db, exc, lost=store.lost))
    finally:
        store.close()
    assert said.startswith(
        f"{db} was replaced by another file while the server had it open, so writes to it are"
        " refused (they would be lost)"
    )
    assert "read-only" not in said


# -- refused and reading commands leave nothing behind ------------------------------------------


def foreign(tmp_path: Path) -> Path:
    path = tmp_path / "foreign.db"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE users (id, name); CREATE TABLE orders (x);")
    conn.close()
    return path


def test_a_refused_serve_leaves_no_lock_file_nor_models_folder(tmp_path: Path):
    db = foreign(tmp_path)
    env = {
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "secret",
        "HITL_CHANNEL": "C0123ABCD",
        "HITL_PORT": str(free_port()),  # the port is tried first: not 3000, any program's
    }
    result = CliRunner().invoke(cli, ["--db", str(db), "serve"], env=env, prog_name="hitl")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {db} is not a slack-hitl database (it has tables orders, users); point"
        " --db/HITL_DB at another file\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db"]


def test_hitl_accuracy_creates_no_models_folder(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    shutil.rmtree(tmp_path / "hitl.db.models")  # restored without it

    result = run(db, "accuracy")
    assert result.exit_code == 0
    assert result.stdout.startswith("No model yet.")
    assert "has no files for it" in result.stderr
    assert not (tmp_path / "hitl.db.models").exists()
