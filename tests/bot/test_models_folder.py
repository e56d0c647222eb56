"""The models folder out of step with the database (an outside operations test): a champion
whose model file is missing or damaged, a folder restored from an older backup than the
database, a database restored beside a newer folder, and a database renamed away from its
folder. `hitl models` says each with a fix that works, `hitl retrain` trains when it must, and
`hitl serve` says it once at start."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from bot.learning.jobs import sync_champion
from bot.sandbox import FakeSlack
from tests.bot.harness import make_settings, start_bot
from tests.bot.test_cli_loop import labeled_file, run
from tests.processes import copy_database


def make_two_models(tmp_path: Path) -> Path:
    """A database whose champion is v2, v1 retired (files of both kept), made by the CLI."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v2: promoted")
    return db


def rows(db: Path) -> list[list[str]]:
    """`hitl models`'s rows as [version, status, …]."""
    return [r.split() for r in run(db, "models").stdout.splitlines()[1:]]


def server_warnings(caplog: pytest.LogCaptureFixture, name: str = "bot.server") -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == name and r.levelno == logging.WARNING
    ]


def backup(db: Path, to: Path) -> None:
    """`sqlite3 db ".backup to"`: a consistent copy."""
    source, copy = sqlite3.connect(db), sqlite3.connect(to)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()


def rename(db: Path, to: Path) -> None:
    """`mv hitl.db team.db` (its -wal and -shm too, should they be there)."""
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            Path(f"{db}{suffix}").rename(f"{to}{suffix}")


def restore(copy: Path, db: Path) -> None:
    """A restore with the server stopped: the copy in place, no log of the file it replaced."""
    shutil.copyfile(copy, db)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


# -- the champion's model file missing or damaged, its vN.json intact -------------------------


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda f: f.write_bytes(f.read_bytes()[:4000]), "damaged: sha256 mismatch"),
        (Path.unlink, "missing"),
    ],
    ids=["truncated", "deleted"],
)
def test_a_champion_file_missing_or_damaged_is_marked_with_its_fix(
    two_models: Path, damage, said: str
):
    models = Path(f"{two_models}.models")
    damage(models / "v2.skops")

    listed = run(two_models, "models")
    assert listed.exit_code == 0
    [v1, v2] = listed.stdout.splitlines()[1:]
    assert v1.split()[:2] == ["v1", "retired"] and "(file" not in v1
    assert v2.split()[:2] == ["v2", "champion"]
    assert v2.endswith(f"(file {said})")
    detail = said.replace(": ", " (") + ")" if ":" in said else said
    assert listed.stderr.splitlines() == [
        f"Warning: champion v2's model file {models / 'v2.skops'} is {detail}, so `hitl serve`"
        f" serves v1 instead: restore v2.skops from a backup of {models}, make v1 the champion"
        " (`hitl rollback 1`), or `hitl retrain --force` trains a new model (v3)"
    ]


def test_a_retrain_trains_when_the_champions_file_cannot_be_loaded(two_models: Path):
    (Path(f"{two_models}.models") / "v2.skops").write_bytes(b"damaged")

    again = run(two_models, "retrain")  # no label is new, but the champion cannot be served

    assert "nothing new" not in again.stdout
    assert again.stdout.startswith("Retrain v3: "), again.stdout
    assert run(two_models, "retrain").stdout.startswith("Retrain (cli): nothing new")


def test_the_rollback_a_damaged_champion_file_advises_works(two_models: Path):
    (Path(f"{two_models}.models") / "v2.skops").unlink()

    assert run(two_models, "rollback", "1").stdout == "v1 is the champion again.\n"
    assert [r[:2] for r in rows(two_models)] == [["v1", "champion"], ["v2", "retired"]]
    assert run(two_models, "models").stderr == ""  # v2's file is gone, but nothing serves it


async def test_a_server_says_a_damaged_champion_file_once_with_its_fix(
    fake_slack: FakeSlack, two_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    models = Path(f"{two_models}.models")
    (models / "v2.skops").write_bytes(b"damaged")

    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        assert bot.rt.champion is not None and bot.rt.champion.version == 1
        # the database names v2, the server serves v1: the champion watch loads it again
        await sync_champion(bot.rt)
        assert bot.rt.champion.version == 1
    assert server_warnings(caplog) == [
        f"champion v2's model file {models / 'v2.skops'} is damaged (sha256 mismatch), so"
        f" `hitl serve` serves v1 instead: restore v2.skops from a backup of {models}, make v1"
        " the champion (`hitl rollback 1`), or `hitl retrain --force` trains a new model (v3)"
    ]
    registry = server_warnings(caplog, "model.registry")
    assert len(registry) == len(set(registry)) == 2, registry  # refused, and what serves: once


# -- the models folder restored from an older backup than the database ------------------------


@pytest.fixture
def older_folder(tmp_path: Path) -> Path:
    """The folder holds v1, the champion; the database records v1, v2 retired and v3 champion."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    shutil.copytree(tmp_path / "hitl.db.models", tmp_path / "folder-backup")
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v2: promoted")
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v3: promoted")
    shutil.rmtree(tmp_path / "hitl.db.models")
    shutil.copytree(tmp_path / "folder-backup", tmp_path / "hitl.db.models")
    return db


def test_a_folder_older_than_the_database_lists_one_champion_and_a_retrain_trains(
    older_folder: Path,
):
    models = Path(f"{older_folder}.models")
    listed = run(older_folder, "models")

    # the folder's champion is the one served; the database's has no files
    assert [r.split()[:2] for r in listed.stdout.splitlines()[1:]] == [
        ["v1", "champion"],
        ["v2", "retired"],
        ["v3", "retired"],
    ]
    assert listed.stdout.splitlines()[3].endswith(
        f"(files missing in {models}; the database's champion, not served)"
    )
    assert listed.stderr.splitlines() == [
        f"Warning: the database records models v2, v3 (champion v3) but {models} has no files for"
        f" them: restore them from a backup of {models}, or `hitl retrain` trains a new model"
        f" (v4); meanwhile `hitl serve` serves v1 from {models}, a folder older than the database"
    ]

    again = run(older_folder, "retrain")  # as advised: it trains, though no label is new
    assert again.stdout.startswith("Retrain v4: "), again.stdout
    after = run(older_folder, "models")  # v2 and v3 can be rolled back to once restored
    assert after.stderr.splitlines() == [
        f"Warning: the database records models v2, v3 but {models} has no files for them:"
        f" restore them from a backup of {models} to roll back to them"
    ]
    assert run(older_folder, "retrain").stdout.startswith("Retrain (cli): nothing new")


# -- a database restored beside a newer models folder -------------------------------------------


@pytest.fixture(scope="module")
def restored_before_v2_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database restored from a backup that knows v1; v2 was trained after it on labels
    the restore undid."""
    tmp_path = tmp_path_factory.mktemp("restored-before-v2")
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    backup(db, tmp_path / "backup.db")
    assert run(db, "import", str(labeled_file(tmp_path, "b"))).exit_code == 0
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v2: promoted")
    restore(tmp_path / "backup.db", db)
    return db


@pytest.fixture
def restored_before_v2(restored_before_v2_made: Path, tmp_path: Path) -> Path:
    """``restored_before_v2_made``, a copy of each test's own."""
    return copy_database(restored_before_v2_made, tmp_path)


def newer_folder_warning(models: Path) -> str:
    return (
        f"{models} holds model v2 (champion v2), which the database does not record, trained"
        " on labels newer than any in the database (was the database restored from an older"
        " backup?): `hitl serve` serves v2 and records it; `hitl rollback 1` makes v1, the"
        " database's champion, the champion again, or with the server stopped move v2.json"
        f" and v2.skops out of {models}"
    )


def test_a_database_restored_beside_a_newer_models_folder_is_told(restored_before_v2: Path):
    models = Path(f"{restored_before_v2}.models")

    listed = run(restored_before_v2, "models")

    assert listed.stderr.splitlines() == [f"Warning: {newer_folder_warning(models)}"]
    assert run(restored_before_v2, "rollback", "1").stdout == "v1 is the champion again.\n"
    assert run(restored_before_v2, "models").stderr == ""


async def test_a_server_beside_a_newer_models_folder_says_so_once_before_it_records_it(
    fake_slack: FakeSlack,
    restored_before_v2: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    models = Path(f"{restored_before_v2}.models")
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        assert bot.rt.champion is not None and bot.rt.champion.version == 2
        assert bot.store.champion_version() == 2  # recorded, as the warning says
    assert server_warnings(caplog) == [newer_folder_warning(models)]


def test_a_models_folder_the_database_lags_with_the_labels_it_has_is_no_restore(
    tmp_path: Path,
):
    """A retrain killed after its promotion, before it recorded it: its model trained on
    labels the database has, and the server records it without a word."""
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    backup(db, tmp_path / "backup.db")
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v2: promoted")
    restore(tmp_path / "backup.db", db)  # as if v2 had not been recorded

    assert run(db, "models").stderr == ""


# -- a database renamed (or copied) without its models folder --------------------------------


@pytest.fixture(scope="module")
def trained_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("trained")
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    return db


@pytest.fixture
def trained(trained_made: Path, tmp_path: Path) -> Path:
    """``trained_made``, a copy of each test's own."""
    return copy_database(trained_made, tmp_path)


def test_a_renamed_database_is_told_to_rename_its_models_folder(trained: Path, tmp_path: Path):
    team = tmp_path / "team.db"
    rename(trained, team)

    listed = run(team, "models")

    assert listed.stderr.splitlines() == [
        f"Warning: the database records model v1 (champion v1) but {tmp_path / 'team.db.models'}"
        f" has no files for it; {tmp_path / 'hitl.db.models'} beside it has them (was the"
        " database renamed from hitl.db?): rename hitl.db.models to team.db.models",
        "Warning: until then `hitl serve` serves no model",
    ]
    (tmp_path / "hitl.db.models").rename(tmp_path / "team.db.models")  # as advised
    assert run(team, "models").stderr == ""


def test_a_copied_database_is_told_to_copy_the_models_folder(trained: Path, tmp_path: Path):
    team = tmp_path / "team.db"
    backup(trained, team)  # hitl.db still uses hitl.db.models

    assert (
        f"{tmp_path / 'hitl.db.models'} beside it has them (was the database copied from"
        " hitl.db?): copy hitl.db.models to team.db.models"
    ) in run(team, "models").stderr


def test_a_models_folder_beside_with_other_models_is_not_named(trained: Path, tmp_path: Path):
    """Another database's folder, whose v1 is another model (another sha256): not named."""
    other = tmp_path / "other"
    other.mkdir()
    data = labeled_file(other, "b")
    with data.open("a") as f:  # more labels than hitl.db's: another model
        f.write('{"id": "more", "text": "refund my card twice", "label": "billing"}\n')
    assert run(other / "x.db", "import", str(data)).exit_code == 0
    assert run(other / "x.db", "retrain").exit_code == 0
    shutil.rmtree(tmp_path / "hitl.db.models")
    shutil.copytree(other / "x.db.models", tmp_path / "x.db.models")

    said = run(trained, "models").stderr
    assert "beside it has them" not in said
    assert "restore them from a backup" in said


async def test_a_server_on_a_renamed_database_names_the_folder_beside_it(
    fake_slack: FakeSlack, trained: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    team = tmp_path / "team.db"
    rename(trained, team)

    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path, db=team)):
        assert bot.rt.champion is None
    assert server_warnings(caplog) == [
        f"the database records model v1 (champion v1) but {tmp_path / 'team.db.models'} has no"
        f" files for it; {tmp_path / 'hitl.db.models'} beside it has them (was the database"
        " renamed from hitl.db?): rename hitl.db.models to team.db.models (remove the empty"
        " team.db.models first); until then `hitl serve` serves no model"
    ]
