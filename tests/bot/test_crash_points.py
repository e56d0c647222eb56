"""What a process killed or stopped at a bad moment leaves, and what the server and the next
retrain make of it: a promotion cut short, a retrain killed before its decision, a refresh and
a retrain the server's stop ends (from an outside crash test: SIGKILL and SIGTERM of `hitl
serve` and the CLI). Each crash point is reached deterministically: the registry's own steps up
to it, or a fault at the operating system's edge (``os.replace`` failing as on a full disk)."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from bot.learning import retrain
from bot.learning.jobs import STOPPED_REPORT, Trainer, run_retrain
from bot.sandbox import FakeSlack
from bot.store import Store
from model import ModelRegistry, TextClassifier
from tests.bot.harness import Bot, make_settings, seed, start_bot
from tests.bot.test_learning import bot, labeled_items  # noqa: F401 - bot: the fixture
from tests.fake_slack import CHANNEL


def registry_of(bot: Bot) -> ModelRegistry:  # noqa: F811
    return retrain.registry_for(bot.rt.settings)


def cut_promotion(tmp_path: Path) -> tuple[Path, ModelRegistry]:
    """What a `hitl retrain` killed mid-promotion by the code before fc311c6 left: v1 retired,
    v2 still a candidate, the database naming v1 its champion."""
    db = tmp_path / "hitl.db"
    items = labeled_items()
    seed(db, items)
    registry = ModelRegistry(tmp_path / "hitl.db.models")
    classifier = TextClassifier().fit([i.text for i in items], [i.label for i in items])
    v1 = registry.promote(registry.save(classifier, n_train=len(items)).version)
    with Store.open(db) as store:
        store.record_model(v1.to_dict())
    registry.save(classifier, n_train=len(items), reason="promoted: macro-F1 0.9→0.9")
    registry.set_status(1, "retired")  # the old promotion's first write; killed here
    return db, registry


async def test_a_server_finding_no_champion_serves_the_one_the_database_names(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A `hitl retrain` killed mid-promotion by the code before this fix: v1 retired, v2 still
    a candidate, the database naming v1. The server served no model and said nothing."""
    db, registry = cut_promotion(tmp_path)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))

    with caplog.at_level(logging.WARNING):
        async for running in start_bot(fake_slack, settings):
            assert running.rt.champion is not None and running.rt.champion.version == 1
            assert running.store.champion_version() == 1

    [said] = [r.getMessage() for r in caplog.records if "no champion" in r.getMessage()]
    assert said == (
        f"no champion in {registry.root} (a promotion was cut short): v1, the champion the"
        " database names, is the champion again"
    )
    assert registry.champion().version == 1


async def test_a_retrain_cut_short_before_its_decision_leaves_no_promoted_candidate(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """Killed after it saved v2, before it marked it champion: v2 stayed a "candidate" with the
    reason "promoted: macro-F1 …" for good. Its reason is now written with its status, and
    the next retrain rejects a candidate left so."""
    await run_retrain(bot.rt, "cli")
    registry = registry_of(bot)
    real = os.replace

    def full_disk_at_the_decision(src, dst) -> None:
        if Path(dst).name == "v2.json" and (registry.root / "v2.json").exists():
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", full_disk_at_the_decision)
    failed = await run_retrain(bot.rt, "cli", force=True)
    assert failed.status == "failed" and "No space left" in failed.reason
    monkeypatch.undo()
    left = registry.get(2)
    assert (left.status, left.reason) == ("candidate", "")
    assert registry.champion().version == 1

    again = await run_retrain(bot.rt, "cli", force=True)

    assert (again.status, again.version) == ("promoted", 3)
    left = registry.get(2)
    assert (left.status, left.reason) == ("rejected", retrain.UNDECIDED)
    [row] = [m for m in bot.store.models() if m["version"] == 2]
    assert (row["status"], row["reason"]) == ("rejected", retrain.UNDECIDED)


async def test_a_retrain_the_servers_stop_ends_says_so(bot: Bot):  # noqa: F811
    """It was recorded "retrain failed: CancelledError: " (or FitStopped), and the admin who
    asked was never told."""
    trainer = Trainer.of(bot.rt)
    trainer.worker = retrain.FitWorker()
    trainer.closing = True  # what the server's stop does: no new work, the fit worker closed
    trainer.worker.close()

    with pytest.raises(retrain.FitStopped):
        await run_retrain(bot.rt, "U0ADMIN")

    [run_] = bot.store.runs("retrain")
    assert run_["status"] == "failed"
    assert run_["detail"]["reason"] == "stopped: the server was shutting down (FitStopped)"
    assert [m["text"] for m in bot.fake.messages(CHANNEL)][-1] == STOPPED_REPORT
    assert bot.store.db["locks"].count == 0


def test_a_cli_retrain_finding_no_champion_compares_with_the_one_the_database_names(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The same cut-short promotion, met by `hitl retrain` instead of the server: it compared
    the new model with no champion (the database named v1) and promoted it unchecked."""
    from click.testing import CliRunner

    from bot.cli import cli

    db, registry = cut_promotion(tmp_path)

    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(cli, ["--db", str(db), "retrain", "--force"])
    assert result.exit_code == 0, result.output
    assert any("v1, the champion the database names" in r.getMessage() for r in caplog.records)
    v3 = registry.get(3)
    assert v3.status == "champion" and registry.get(1).status == "retired"
    with Store.open(db) as store:
        run = store.last_run("retrain", ["promoted"])
    assert run["detail"]["previous_version"] == 1  # compared with v1 (was: with none)


async def test_a_server_starting_sweeps_the_temporary_files_a_killed_write_left(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A server killed while it wrote a model file left `.vN.skops.*.tmp` (up to the model's
    size) until the next retrain's save, a night later; the next start sweeps it."""
    seed(tmp_path / "hitl.db", labeled_items())
    models = tmp_path / "hitl.db.models"
    models.mkdir()
    left = models / ".v1.skops.4242.tmp"
    left.write_bytes(b"\0" * 1024)
    hour_ago = left.stat().st_mtime - 2 * 3600
    os.utime(left, (hour_ago, hour_ago))
    fresh = models / ".v2.skops.4243.tmp"  # seconds old: perhaps a `hitl retrain` writing it
    fresh.write_bytes(b"\0")
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    async for running in start_bot(fake_slack, settings):
        assert running.rt.champion is None
    assert sorted(p.name for p in models.iterdir()) == [fresh.name]
