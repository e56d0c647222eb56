"""A models folder moved or deleted under a running `hitl serve`: the server says so once and
keeps the model it has (refreshes refit in memory and go on), and `hitl retrain` from the CLI
refuses as the server's own `/hitl retrain` does, instead of making a new folder and
promoting an ungated first model beside the champion the database records."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.learning.jobs import Trainer, run_retrain, sync_champion
from bot.store import Store
from tests.bot.harness import Bot
from tests.bot.test_cli_loop import labeled_file, run
from tests.bot.test_refresh import answer_next, bot, versions  # noqa: F401 - bot: the fixture
from tests.bot.test_store import another_server


async def answer_three(bot: Bot) -> None:  # noqa: F811
    for _ in range(3):
        await answer_next(bot)
    await Trainer.of(bot.rt).settled()


async def test_refreshes_go_on_from_the_model_in_memory_and_say_the_moved_folder_once(
    bot: Bot,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    await run_retrain(bot.rt, "cli")
    trainer = Trainer.of(bot.rt)
    # The new champion's first check (its count of labels, read from its metadata) before the
    # folder moves: without the folder, the champion's creation time, to the second, stands
    # in for its read, and an answer in that second would count as trained (one label late).
    trainer.wake()
    await trainer.settled()
    folder = bot.rt.settings.models_dir
    caplog.set_level(logging.INFO)
    folder.rename(tmp_path / "models.aside")  # `mv hitl.db.models elsewhere`

    await answer_three(bot)
    await answer_three(bot)

    assert trainer.refreshes == 2  # neither stopped for the folder
    assert bot.rt.working.version == -18 and versions(bot) == {-18}
    assert bot.rt.champion.version == 1
    said = [r for r in caplog.records if "models folder" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in said] == [
        (
            "WARNING",
            f"the models folder cannot be read (No such file or directory: {folder}): refreshes"
            " go on from v1, the model in memory, but a retrain or rollback needs the folder:"
            " put it back",
        )
    ]  # once, not at every refresh
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]

    (tmp_path / "models.aside").rename(folder)  # put back: nothing more to say
    await answer_three(bot)
    assert trainer.refreshes == 3
    assert len([r for r in caplog.records if "models folder" in r.getMessage()]) == 1
    folder.rename(tmp_path / "models.aside")  # moved again: said again
    await answer_three(bot)
    assert trainer.refreshes == 4
    assert len([r for r in caplog.records if "models folder" in r.getMessage()]) == 2


async def test_with_the_folder_gone_before_the_first_check_an_answer_in_the_champions_second_counts(
    bot: Bot,  # noqa: F811
    tmp_path: Path,
):
    # The champion's metadata (where its training read the labels) was read from the folder at
    # the first refresh check; with the folder gone before it (a `hitl retrain` from cron
    # promoted v1, the server loaded it, then the folder moved), the champion's creation time,
    # to the second, stood in, and the answers given in that second counted as trained: the
    # first refresh came one label late. The metadata read with its file is kept with the
    # champion in memory now.
    retrained = await asyncio.to_thread(run, bot.rt.settings.db, "retrain")  # beside the server
    assert retrained.exit_code == 0, retrained.output
    assert await sync_champion(bot.rt)  # as its champion watch does
    champion = bot.rt.champion
    assert champion.version == 1
    second = champion.created_at[:19]  # its time has no finer part
    bot.store.now = lambda: f"{second}.500+00:00"  # the answers come in that second
    bot.rt.settings.models_dir.rename(tmp_path / "models.aside")  # before any check

    await answer_three(bot)

    assert Trainer.of(bot.rt).refreshes == 1, "three answers, one refresh"
    assert bot.rt.working is not None and bot.rt.working.n_train == champion.n_train + 3


def test_cli_retrain_refuses_while_a_server_runs_without_its_models_folder(tmp_path: Path):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    (tmp_path / "hitl.db.models").rename(tmp_path / "models.aside")
    assert run(db, "import", str(labeled_file(tmp_path, "b"))).exit_code == 0  # something new

    with another_server(db):  # a `hitl serve` on this database, its folder moved under it
        refused = run(db, "retrain")
        models = run(db, "models")

    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == (
        "Error: the models folder hitl.db.models (beside the database) is missing: was it"
        " deleted or moved? Put it back, or create an empty hitl.db.models to start a new"
        " model, then retrain again\n"
    )
    assert not (tmp_path / "hitl.db.models").exists()  # no new folder, no ungated model
    # `hitl models` gives the same advice, not "`hitl retrain` trains a new model (v2)"
    assert models.stderr == (
        "Warning: the models folder hitl.db.models (beside the database) is missing: was it"
        " deleted or moved? Put it back, or create an empty hitl.db.models to start a new"
        " model, then retrain again; `hitl serve` serves the model it loaded meanwhile\n"
    )
    with Store.open(db) as store:
        assert [(m["version"], m["status"]) for m in store.models()] == [(1, "champion")]
        assert [r["status"] for r in store.runs("retrain")] == ["promoted"]
        assert store.db["locks"].count == 0
    # With no server running it is a database restored without its folder: as `hitl models`
    # advises, a retrain trains a new model (tests/bot/test_restore.py).
    assert run(db, "retrain").stdout.startswith("Retrain v2: promoted")


def test_cli_rollback_without_its_models_folder_refuses_and_makes_no_folder(tmp_path: Path):
    # it made an empty folder before refusing, after which `hitl retrain` beside the server
    # no longer refused and promoted an ungated first model
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    (tmp_path / "hitl.db.models").rename(tmp_path / "models.aside")
    refused = run(db, "rollback", "1")
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == (
        "Error: cannot roll back: the models folder hitl.db.models (beside the database) is"
        " missing: was it deleted or moved? Put it back, then roll back again\n"
    )
    assert not (tmp_path / "hitl.db.models").exists()
