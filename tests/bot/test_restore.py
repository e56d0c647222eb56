"""A models folder that is gone, older than the database, or damaged: what retrains, `hitl
models` and a server do then (restores from backups, folders deleted or moved by mistake)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from bot.learning import retrain
from bot.learning.jobs import run_retrain
from tests.bot.harness import Bot
from tests.bot.test_cli_loop import labeled_file, run
from tests.bot.test_learning import bot, labeled_items, retrain_told  # noqa: F401 - bot: the fixture

# -- the models folder deleted or moved under `hitl serve` -------------------------------------


async def test_a_slack_retrain_without_the_models_folder_says_so_and_leaves_no_lock(bot: Bot):  # noqa: F811
    await run_retrain(bot.rt, "cli")
    models_dir = bot.rt.settings.models_dir
    shutil.rmtree(models_dir)
    bot.store.add_items(labeled_items("N"), "import")  # something new to train on

    _, [text] = await retrain_told(bot)

    assert "the models folder hitl.db.models (beside the database) is missing" in text
    assert "labels so far" not in text  # it stopped before reading them: not "0 labels"
    assert bot.store.db["locks"].count == 0
    assert [r["status"] for r in bot.store.runs("retrain")] == ["failed", "promoted"]
    models_dir.mkdir()  # the fix: put it back, or start again from an empty one
    again = await run_retrain(bot.rt, "cli")
    assert (again.status, again.version) == ("promoted", 2)  # not "nothing new", not v1 again


async def test_an_error_after_the_lock_is_taken_ends_the_run_and_frees_the_lock(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    registry = retrain.registry_for(bot.rt.settings)

    def gone() -> None:
        raise FileNotFoundError(2, "No such file or directory", str(registry.root))

    monkeypatch.setattr(registry, "champion", gone)
    with pytest.raises(FileNotFoundError):
        retrain.begin(bot.store, bot.rt.settings, registry, triggered_by="cli")
    [run_] = bot.store.runs("retrain")
    assert run_["status"] == "failed" and "FileNotFoundError" in run_["detail"]["reason"]
    assert bot.store.db["locks"].count == 0
    monkeypatch.undo()
    assert isinstance(retrain.begin(bot.store, bot.rt.settings, registry, triggered_by="cli"),
                      retrain.Plan)  # fmt: skip


# -- a database restored without its models, or with an older models folder -------------------


def test_a_database_restored_without_its_models_folder_is_said_and_retrains(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    shutil.rmtree(tmp_path / "hitl.db.models")  # the database restored on its own

    models = run(db, "models")
    assert models.exit_code == 0
    [header, row] = models.stdout.splitlines()
    assert row.split()[:2] == ["v1", "champion"]
    assert row.endswith(f"(files missing in {tmp_path / 'hitl.db.models'})")
    assert models.stderr.splitlines() == [
        f"Warning: the database records model v1 (champion v1) but {tmp_path / 'hitl.db.models'}"
        f" has no files for it: restore them from a backup of {tmp_path / 'hitl.db.models'}, or "
        "`hitl retrain` trains a new model (v2)",
        "Warning: until then `hitl serve` serves no model",
    ]
    assert "has no files for it" in run(db, "accuracy").stderr

    again = run(db, "retrain")  # no labels since, but no model either: it trains
    assert again.stdout.startswith("Retrain v2: promoted"), again.stdout


def test_a_restore_without_the_models_folder_names_the_one_made_with_the_backup(tmp_path: Path):
    """Backed up as README says (the database, then its folder as `<backup>.models`) and
    restored where the folder is lost: the restore said only "restore them from a backup of
    hitl.db.models", not that the backup's own folder has them, nor how to put it back."""
    db, backups = tmp_path / "hitl.db", tmp_path / "backups"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    backups.mkdir()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"VACUUM INTO '{backups / 'b.db'}'")
    shutil.copytree(tmp_path / "hitl.db.models", backups / "b.db.models")
    shutil.rmtree(tmp_path / "hitl.db.models")

    done = run(db, "restore", str(backups / "b.db"))
    assert done.exit_code == 0, done.output
    models, copy = tmp_path / "hitl.db.models", backups / "b.db.models"
    assert done.stderr.splitlines()[-2:] == [
        f"Warning: the database records model v1 (champion v1) but {models} has no files for"
        f" it; {copy} (beside the backup) has them: `cp -a {copy} {models}`",
        "Warning: until then `hitl serve` serves no model",
    ]
    subprocess.run(["cp", "-a", str(copy), str(models)], check=True)  # the command it gave
    assert run(db, "models").stderr == ""

    shutil.rmtree(models)
    models.mkdir()  # an empty folder in its place: cp would copy into it
    done = run(db, "restore", str(backups / "b.db"))
    assert done.stderr.splitlines()[-2] == (
        f"Warning: the database records model v1 (champion v1) but {models} has no files for"
        f" it; {copy} (beside the backup) has them: remove the empty {models} first, then run"
        f" `cp -a {copy} {models}`"
    )


def test_a_retrain_beside_an_older_models_folder_numbers_above_the_database(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    shutil.copytree(tmp_path / "hitl.db.models", tmp_path / "backup")  # v1 only
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v2: promoted")
    shutil.rmtree(tmp_path / "hitl.db.models")
    shutil.copytree(tmp_path / "backup", tmp_path / "hitl.db.models")

    rows = run(db, "models").stdout.splitlines()[1:]  # one champion: the folder's, served
    assert [r.split()[:2] for r in rows] == [["v1", "champion"], ["v2", "retired"]]
    assert rows[1].endswith("; the database's champion, not served)")
    assert run(db, "retrain", "--force").stdout.startswith("Retrain v3: promoted")


# -- damaged champion metadata -----------------------------------------------------------------


def test_damaged_metadata_of_the_only_model_is_listed_not_no_models_yet(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    (tmp_path / "hitl.db.models" / "v1.json").write_text("{broken")

    models = run(db, "models")
    assert models.exit_code == 0
    [header, row] = models.stdout.splitlines()
    assert row.split()[:2] == ["v1", "champion"]  # the database's row of it
    assert "(metadata v1.json unreadable: model v1 metadata is unreadable: " in row
    assert models.stderr.splitlines()[0].startswith(
        f"Warning: {tmp_path / 'hitl.db.models' / 'v1.json'} is damaged (model v1 metadata"
    )
    assert models.stderr.splitlines()[0].endswith(
        ": restore it from a backup, or `hitl retrain` trains a new model (v2)"
    )
    again = run(db, "retrain")  # as advised: it trains
    assert again.stdout.startswith("Retrain v2: promoted"), again.stdout


# -- a full disk after the promotion -----------------------------------------------------------


def test_a_retrain_that_promoted_then_could_not_score_says_its_model_is_the_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0

    async def full(*args, **kwargs) -> int:
        exc = sqlite3.OperationalError("database or disk is full")
        exc.sqlite_errorname = "SQLITE_FULL"
        raise exc

    monkeypatch.setattr(retrain, "score_items", full)  # the disk fills while scoring
    done = run(db, "retrain")
    assert done.exit_code == 1
    assert done.stdout.startswith("Retrain v1: promoted")
    assert done.stderr.splitlines()[-1] == (
        f"Error: v1 is the champion, but scoring the waiting items stopped ({db}: the disk is "
        "full; free some space and try again); items not scored yet keep the previous model's "
        "scores until `hitl serve` scores them (it does at start)"
    )
