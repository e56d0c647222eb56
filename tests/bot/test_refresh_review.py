"""The refresh of the working model against an outside review (learnrev, defects 1-3): after a
rollback the first refresh waits for HITL_REFRESH_EVERY labels given since the rollback, also in
a restarted server; a refresh never fits while another process holds the database's retrain
lock; and a restarted server's refresh of other labels never takes the version an earlier
server's refresh scored the queue under."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.learning import retrain
from bot.learning.jobs import Trainer, follow_champion, run_retrain, run_rollback
from bot.learning.rollback import begin_rollback, rollback
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Item, start_bot
from tests.bot.test_learning import labeled_items
from tests.bot.test_refresh import answer_next, started


@pytest.mark.parametrize("by", ["slack", "cli"])
async def test_after_a_rollback_the_first_refresh_waits_for_the_step_of_new_labels(
    fake_slack: FakeSlack, tmp_path: Path, by: str
):
    """`/hitl rollback 1` (or `hitl rollback 1`, which the champion watch follows) after v2
    learned a bad batch: one click later the working model was a refit on every label, the
    batch included, and it asked and answered (a refresh counted every label since v1's
    training read as new). Labels count from the rollback, in a restarted server too; the
    refresh that comes then reads every label, as a retrain does."""
    async for bot in await started(fake_slack, tmp_path, refresh_every=3):
        trainer = Trainer.of(bot.rt)
        await run_retrain(bot.rt, "cli")  # v1 on the 12 seed labels
        await trainer.settled()  # the check its end starts: nothing new
        bad = [Item(f"w{n}", f"refund invoice payment card {n}", "bug") for n in range(3)]
        bot.store.add_items(bad, "import")
        assert (await run_retrain(bot.rt, "cli", force=True)).promoted  # v2 learned the batch
        await trainer.settled()
        if by == "slack":
            plan = begin_rollback(bot.store, bot.rt.registry, 1, triggered_by="<@U0ADMIN>")
            await run_rollback(bot.rt, plan)  # as `/hitl rollback 1` does
        else:  # as `hitl rollback 1` does, on its own connection; the watch follows it
            with Store.open(bot.rt.settings.db) as cli:
                rollback(cli, retrain.registry_for(bot.rt.settings), 1, triggered_by="cli")
            assert await follow_champion(bot.rt)
        assert bot.rt.champion.version == 1 and bot.rt.model.version == 1
        await answer_next(bot)  # one label since the rollback
        await trainer.settled()
        assert (trainer.refreshes, bot.rt.model.version) == (0, 1), bot.rt.model.version
    settings = bot.rt.settings
    async for again in start_bot(fake_slack, settings):  # restarted: the count is kept
        trainer = Trainer.of(again.rt)
        trainer.wake()  # as `hitl serve` does at start
        await trainer.settled()
        assert (trainer.refreshes, again.rt.model.version) == (0, 1)
        for _ in range(2):  # three labels since the rollback: a refresh, on every label
            await answer_next(again)
        await trainer.settled()
        assert trainer.refreshes == 1 and again.rt.model.version == -18  # 12 + 3 bad + 3


@pytest.fixture
def cli_process():
    """A process standing for a CLI `hitl retrain` (its pid names the lock's holder)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def test_a_refresh_waits_while_another_process_holds_the_retrain_lock(
    fake_slack: FakeSlack, tmp_path: Path, cli_process: subprocess.Popen, caplog
):
    """README: "a retrain under way takes precedence and a refresh waits for it or is
    skipped". A `hitl retrain` from the CLI (cron) held the database's lock, and the server
    refitted beside it all the same: two full fits at once. A holder that is gone holds
    nothing: the next label refreshes."""
    async for bot in await started(fake_slack, tmp_path, refresh_every=3):
        owner = f"retrain by cli on {socket.gethostname()}:{cli_process.pid}:0123abcd"
        now = datetime.now(UTC)
        taken = bot.store.acquire_lock(
            retrain.LOCK, owner, retrain.iso_time(now), retrain.iso_time(now + timedelta(hours=1))
        )
        assert taken is None
        trainer = Trainer.of(bot.rt)
        with caplog.at_level(logging.INFO, logger="bot.learning.jobs"):
            for _ in range(3):  # a refresh is due
                await answer_next(bot)
                await trainer.settled()
        assert trainer.refreshes == 0 and bot.rt.working is None
        assert caplog.text.count("a refresh waits: a retrain by cli is already running") == 1
        cli_process.kill()  # the CLI's retrain ended (its lock row left behind: killed)
        cli_process.wait()
        await answer_next(bot)
        await trainer.settled()
        assert trainer.refreshes == 1 and bot.rt.working.version == -16


def waiting(store: Store) -> list[tuple[str, str, int, str]]:
    return store.db.execute(
        "SELECT id, text, model_version, predicted_label FROM items WHERE status != 'resolved'"
        " ORDER BY id"
    ).fetchall()


async def test_a_restarted_servers_refresh_of_other_labels_takes_its_own_version(
    fake_slack: FakeSlack, tmp_path: Path
):
    """A server's refresh r13 scored the queue; while it was down the 12 seed labels were
    swapped between the two classes (still 13 labels). The next server's refresh, another
    model, took -13 again, and the scorer, which skips an item stored under its version, left
    the first model's guesses claiming to be the second's. A refit of the same labels keeps
    the version (tests/bot/test_refresh.py, the restarted server)."""
    async for bot in await started(fake_slack, tmp_path, refresh_every=3):
        await answer_next(bot)  # no champion: the first label refreshes, the first model
        await Trainer.of(bot.rt).settled()
        assert bot.rt.working.version == -13
        assert {row[2] for row in waiting(bot.store)} == {-13}
    settings = bot.rt.settings
    swap = {"billing": "bug", "bug": "billing"}
    with Store.open(settings.db) as store:
        for item in labeled_items():
            store.set_label(item.id, swap[item.label], user_id="U0ADMIN", reason="swapped")
    async for again in start_bot(fake_slack, settings):
        trainer = Trainer.of(again.rt)
        trainer.wake()  # as `hitl serve` does at start
        await trainer.settled()
        working = again.rt.working
        rows = waiting(again.store)
        guesses = [str(g) for g in working.classifier.predict([row[1] for row in rows])]
        stale = [row for row, g in zip(rows, guesses, strict=True) if row[3] != g]
        assert stale == [], f"{len(stale)} items claim model {working.version}, guessed by r13"
        assert trainer.refreshes == 1 and working.version == -14
        assert {row[2] for row in rows} == {-14}
