"""A rollback whose models folder cannot be written (read-only, a full disk) says so in one
line, as a retrain does: which folder, why, which version stays the champion and what to do.
It said the system's error naming a temporary file in `hitl rollback` ("Error:
…/hitl.db.models/.v1.json.upg81ro7.tmp: Read-only file system"), and "Something went wrong on
our side" with a traceback in the log after `/hitl rollback`.

The tests run as root here, which a read-only folder's mode does not stop, so the registry's
writes fail as ``mkstemp`` fails in a read-only folder (EROFS, naming the temporary file)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import model.registry as registry_module
from bot.learning import retrain
from tests.bot.harness import Bot
from tests.bot.test_cli_loop import labeled_file, run
from tests.bot.test_learning import bot, rollback_reply, rollback_report, two_models  # noqa: F401

READ_ONLY = os.strerror(errno.EROFS)


def read_only(monkeypatch: pytest.MonkeyPatch, *, after: int = 0) -> None:
    """Every write to the models folder after the first ``after`` fails as in a read-only
    folder."""
    real = registry_module._atomic_write
    writes = [0]

    def write(path: Path, data: bytes) -> None:
        writes[0] += 1
        if writes[0] > after:
            raise OSError(errno.EROFS, READ_ONLY, str(path.parent / f".{path.name}.x1y2.tmp"))
        real(path, data)

    monkeypatch.setattr(registry_module, "_atomic_write", write)


def test_a_cli_rollback_in_a_read_only_models_folder_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "hitl.db"
    assert run(db, "import", str(labeled_file(tmp_path, "a"))).exit_code == 0
    assert run(db, "retrain").exit_code == 0
    assert run(db, "retrain", "--force").exit_code == 0
    read_only(monkeypatch)
    result = run(db, "rollback", "1")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: cannot roll back: cannot write a model file in {tmp_path / 'hitl.db.models'}:"
        " Read-only file system; v2 stays the champion and nothing else was changed (make the"
        " models folder writable, then `hitl rollback 1` again)\n"
    )
    monkeypatch.undo()
    assert run(db, "models").stdout.splitlines()[2].split()[:2] == ["v2", "champion"]
    assert run(db, "rollback", "1").stdout == "v1 is the champion again.\n"


async def test_a_slack_rollback_in_a_read_only_models_folder_says_what_to_do(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    await two_models(bot)
    read_only(monkeypatch)
    assert (await rollback_reply(bot, "rollback 1")).startswith("Rolling back to v1")
    assert await rollback_report(bot) == (
        f"Cannot roll back: cannot write a model file in {bot.rt.settings.models_dir}:"
        " Read-only file system; v2 stays the champion and nothing else was changed (make the"
        " models folder writable, then `/hitl rollback 1` again)"
    )
    assert bot.store.champion_version() == bot.rt.champion.version == 2
    assert bot.store.runs("rollback")[0]["status"] == "failed"
    assert bot.store.db["locks"].count == 0


async def test_a_rollback_cut_short_after_marking_its_version_says_it_is_the_champion(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """The version's metadata is written, the old champion's is not: the version is the
    champion (the newest promotion), which the reply and the database say."""
    await two_models(bot)
    read_only(monkeypatch, after=1)
    assert (await rollback_reply(bot, "rollback 1")).startswith("Rolling back to v1")
    assert await rollback_report(bot) == (
        f"Cannot roll back: v1 is the champion, but v2's metadata in"
        f" {bot.rt.settings.models_dir} could not be marked retired: Read-only file system"
        " (make the models folder writable; the next retrain or rollback marks it)"
    )
    assert retrain.registry_for(bot.rt.settings).champion().version == 1
    assert bot.store.champion_version() == 1
    assert bot.store.db["locks"].count == 0
