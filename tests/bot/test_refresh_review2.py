"""The refresh of the working model and the retrain against a second outside review (revlearn,
defects 2-5): after a rollback labels count by the order they were written in, not by the
clock; a pipeline rejected on the same labels is not trained again when a run of another
pipeline came between; a database another process writes to skips a refresh in one line (its
writes off the event loop) and never throws a finished refit away; and a `hitl retrain` from
the CLI waits for the refresh `hitl serve` is fitting instead of fitting beside it."""

from __future__ import annotations

import functools
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.learning import jobs, retrain
from bot.learning.jobs import Trainer, follow_champion, run_retrain, run_rollback
from bot.learning.rollback import begin_rollback, rollback
from bot.sandbox import FakeSlack
from bot.store import LabelMark, Store
from bot.store.core import process_started
from tests.bot.harness import Bot, Item
from tests.bot.test_refresh import answer_next, started
from tests.bot.test_retrain_pipeline_change import first_model, run


@pytest.fixture
def other_process():
    """A live process standing for another one (a CLI `hitl retrain`, a server): its pid names
    a lock's holder."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def owner_of(proc: subprocess.Popen, what: str) -> str:
    started_at = process_started(proc.pid)
    owner = f"{what} on {socket.gethostname()}:{proc.pid}:0123abcd"
    return f"{owner}:{started_at}" if started_at else owner


def take(store: Store, name: str, owner: str) -> None:
    now = datetime.now(UTC)
    until = now + timedelta(hours=1)
    assert store.acquire_lock(name, owner, retrain.iso_time(now), retrain.iso_time(until)) is None


# -- 2. after a rollback, labels count by the order they were written in ------------------------


def ahead() -> str:  # the clock while the batch was imported: 10 minutes ahead, set right later
    return (datetime.now(UTC) + timedelta(minutes=10)).isoformat(timespec="milliseconds")


@pytest.mark.parametrize("by", ["slack", "cli"])
async def test_after_a_rollback_labels_stamped_by_a_clock_ahead_do_not_count_as_new(
    fake_slack: FakeSlack, tmp_path: Path, by: str
):
    """v2 learned a batch imported while the clock ran 10 minutes ahead; NTP set it right and
    the admin rolled back to v1 within those minutes. The batch's labels counted as given
    after the rollback (by time), and one click later the working model was a refit on the
    rolled-back batch (r16)."""
    async for bot in await started(fake_slack, tmp_path, refresh_every=3):
        trainer = Trainer.of(bot.rt)
        await run_retrain(bot.rt, "cli")  # v1 on the 12 seed labels
        await trainer.settled()
        bad = [Item(f"w{n}", f"refund invoice payment card {n}", "bug") for n in range(3)]
        with Store.open(bot.rt.settings.db, clock=ahead) as importer:  # `hitl import`, ahead
            importer.add_items(bad, "import")
        assert (await run_retrain(bot.rt, "cli", force=True)).promoted  # v2 learned the batch
        await trainer.settled()
        if by == "slack":  # `/hitl rollback 1`
            plan = begin_rollback(bot.store, bot.rt.registry, 1, triggered_by="<@U0ADMIN>")
            await run_rollback(bot.rt, plan)
        else:  # `hitl rollback 1`, the champion watch follows it
            with Store.open(bot.rt.settings.db) as cli_store:
                rollback(cli_store, retrain.registry_for(bot.rt.settings), 1, triggered_by="cli")
            assert await follow_champion(bot.rt)
        assert bot.rt.model.version == 1
        seq = bot.store.db.execute("SELECT n FROM label_clock").fetchone()[0]
        await answer_next(bot)  # one label since the rollback
        await trainer.settled()
        assert (trainer.refreshes, bot.rt.model.version) == (0, 1), (
            f"one click after the rollback the working model is r{-bot.rt.model.version}"
        )
        detail = bot.store.last_run("rollback")["detail"]
        assert detail["label_seq"] == seq  # the count of label writes at the rollback
        for _ in range(2):  # three labels since the rollback: a refresh, on every label
            await answer_next(bot)
        await trainer.settled()
        assert trainer.refreshes == 1 and bot.rt.model.version == -18  # 12 + 3 bad + 3


def test_a_rollback_recorded_before_the_count_counts_by_its_time():
    with Store.memory() as store:
        with store.db.conn:
            store.db.execute(
                "INSERT INTO runs (kind, triggered_by, started_at, finished_at, status, detail)"
                " VALUES ('rollback', 'cli', ?, ?, 'ok', ?)",
                [
                    "2026-01-01T00:00:00.000+00:00",
                    "2026-01-01T00:00:01.000+00:00",
                    '{"version": 1}',
                ],
            )
        assert store.rolled_back_mark(1) == LabelMark(at="2026-01-01T00:00:01.000+00:00")
        assert store.rolled_back_mark(2) is None


# -- 3. a pipeline rejected on these labels is not trained again ---------------------------------


def test_a_rejected_pipeline_is_not_trained_again_after_a_run_of_another_pipeline(
    tmp_path: Path,
):
    """The server has HITL_PIPELINE=word_lr, a cron `hitl retrain` has not: each of the
    cron's "nothing new" runs made word_lr, rejected on these very labels, train again."""
    db = first_model(tmp_path)  # v1, word_char_auto on 12 labels
    rejected = run(db, "retrain", pipeline="word_lr").stdout
    assert rejected.startswith("Retrain v2: rejected"), rejected
    assert "nothing new" in run(db, "retrain").stdout  # the cron's, without HITL_PIPELINE
    again = run(db, "retrain", pipeline="word_lr").stdout
    assert again.startswith("Retrain (cli): nothing new: no labels since the last run"), again
    assert "an earlier run tried word_lr on them" in again
    assert "nothing new" in run(db, "retrain").stdout
    assert "nothing new" in run(db, "retrain", pipeline="word_lr").stdout
    with Store.open(db) as store:  # a label changes: word_lr is tried on the labels of now
        store.set_label("b0", "bug", user_id="U0ADMIN", reason="relabelled")
    later = run(db, "retrain", pipeline="word_lr").stdout
    assert later.startswith("Retrain v3: "), later


# -- 4. a busy database: a one-line skip, off the event loop; a finished refit is kept ----------


def busy_while(monkeypatch, name: str, seen: list[bool]) -> None:
    """``Store.<name>`` runs once while another connection holds the database's write lock
    (another process's long write), with a short wait for it; ``seen``: whether it ran on
    the event loop's thread (the main thread here)."""
    original = getattr(Store, name)

    def busy(self, *args, **kwargs):
        if seen:  # once
            return original(self, *args, **kwargs)
        seen.append(threading.current_thread() is threading.main_thread())
        other = sqlite3.connect(str(self.path), check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        self.set_busy_timeout(50)
        try:
            return original(self, *args, **kwargs)
        finally:
            other.rollback()
            other.close()

    monkeypatch.setattr(Store, name, busy)


def failures(caplog) -> list[str]:
    return [
        r.getMessage()[:200]
        for r in caplog.records
        if "failed" in r.getMessage() or r.exc_info is not None
    ]


async def champion_then_busy(bot: Bot, monkeypatch: pytest.MonkeyPatch, write: str):
    """A champion, its first check settled, then the store's ``write`` meeting a busy database
    (``busy_while``): the trainer, and whether each such write ran on the event loop."""
    await run_retrain(bot.rt, "cli")
    trainer = Trainer.of(bot.rt)
    await trainer.settled()
    on_loop: list[bool] = []
    busy_while(monkeypatch, write, on_loop)
    return trainer, on_loop


async def test_a_busy_database_at_the_version_record_skips_the_refresh_in_one_line(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch, caplog
):
    async for bot in await started(fake_slack, tmp_path, refresh_every=3):
        trainer, on_loop = await champion_then_busy(bot, monkeypatch, "take_refresh_version")
        with caplog.at_level(logging.INFO, logger="bot.learning.jobs"):
            for _ in range(3):  # a refresh is due: its version's record meets the busy database
                await answer_next(bot)
            await trainer.settled()
            assert failures(caplog) == [], failures(caplog)
            assert on_loop == [False], "the version was written on the event loop"
            assert caplog.text.count("a refresh waits: the database is busy") == 1
            assert trainer.refreshes == 0 and trainer.refresh_failures == 0
            assert trainer.refresh_retry_at is None  # no backoff: not a failed fit
            await answer_next(bot)  # the next label tries again
            await trainer.settled()
        assert trainer.refreshes == 1 and bot.rt.working.version == -16


async def test_a_busy_database_at_the_check_record_keeps_the_finished_refit(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch, caplog
):
    async for bot in await started(fake_slack, tmp_path, refresh_every=3):
        trainer, on_loop = await champion_then_busy(bot, monkeypatch, "record_stop_check")
        with caplog.at_level(logging.INFO, logger="bot.learning.jobs"):
            for _ in range(3):
                await answer_next(bot)
            await trainer.settled()
        assert failures(caplog) == [], failures(caplog)
        assert on_loop == [False], "the stop check was written on the event loop"
        assert caplog.text.count("could not store refresh r15's stop check") == 1
        assert trainer.refreshes == 1 and bot.rt.working.version == -15  # adopted all the same
        assert trainer.refresh_failures == 0


# -- 5. a CLI retrain waits for the refresh hitl serve is fitting --------------------------------


SERVE_REFRESH = "refresh of the working model by hitl serve"  # its holder in the locks table


def holder_of(path: Path, name: str) -> str | None:
    with closing(sqlite3.connect(str(path))) as conn:
        row = conn.execute("SELECT owner FROM locks WHERE name = ?", [name]).fetchone()
    return row[0] if row else None


async def test_a_refresh_holds_the_refresh_lock_while_it_fits(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch
):
    async for bot in await started(fake_slack, tmp_path, refresh_every=3):
        await run_retrain(bot.rt, "cli")
        trainer = Trainer.of(bot.rt)
        await trainer.settled()
        compute = retrain.compute_refresh
        during: list[str | None] = []

        def fit(plan, model, db=bot.rt.settings.db, during=during, compute=compute):
            during.append(holder_of(db, "refresh"))  # as another process sees it, in the fit
            return compute(plan, model)

        monkeypatch.setattr(retrain, "compute_refresh", fit)
        for _ in range(3):
            await answer_next(bot)
        await trainer.settled()
        assert trainer.refreshes == 1
        [holder] = during
        assert holder is not None, "another process cannot see the refresh that fits"
        assert holder.startswith(f"{SERVE_REFRESH} on ")
        assert f":{os.getpid()}:" in holder
        assert holder_of(bot.rt.settings.db, "refresh") is None  # released after the fit


async def test_a_refresh_that_finds_a_cli_retrain_begun_after_its_read_does_not_fit(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch, other_process, caplog
):
    """The CLI took the retrain lock between the refresh's read and its fit: one of the two
    waits (the refresh, here), never both fit."""
    async for bot in await started(fake_slack, tmp_path, refresh_every=3):
        await run_retrain(bot.rt, "cli")
        trainer = Trainer.of(bot.rt)
        await trainer.settled()
        read_plan = jobs._read_plan

        async def read_then_cli(rt, champion, read_plan=read_plan):
            plan = await read_plan(rt, champion)
            if holder_of(rt.settings.db, retrain.LOCK) is None:
                take(rt.store, retrain.LOCK, owner_of(other_process, "retrain by cli"))
            return plan

        monkeypatch.setattr(jobs, "_read_plan", read_then_cli)
        with caplog.at_level(logging.INFO, logger="bot.learning.jobs"):
            for _ in range(3):
                await answer_next(bot)
            await trainer.settled()
        assert trainer.refreshes == 0 and bot.rt.working is None
        assert "a refresh waits: a retrain by cli is already running" in caplog.text
        assert holder_of(bot.rt.settings.db, "refresh") is None  # nothing left held


def test_a_cli_retrain_waits_for_the_refresh_hitl_serve_is_fitting(
    tmp_path: Path, monkeypatch, other_process
):
    db = first_model(tmp_path)
    with Store.open(db) as store:
        store.set_label("b0", "bug", user_id="U0ADMIN", reason="relabelled")  # something new
        take(store, "refresh", owner_of(other_process, SERVE_REFRESH))
    slept: list[float] = []

    def refresh_ends(seconds: float) -> None:  # the server's refresh finishes meanwhile
        slept.append(seconds)
        assert holder_of(db, retrain.LOCK) is not None  # the CLI holds the retrain lock
        other_process.kill()  # its holder gone: it holds nothing
        other_process.wait()

    waits = getattr(retrain, "wait_for_refresh", None)  # (none before this fix)
    if waits is not None:
        wait = functools.partial(waits, sleep=refresh_ends)
        monkeypatch.setattr(retrain, "wait_for_refresh", wait)
    result = run(db, "retrain")
    assert result.exit_code == 0, result.output
    pid = other_process.pid
    line = f"waiting for hitl serve's refresh of the working model to finish (pid {pid})"
    assert result.stderr.count(line) == 1, result.stderr
    assert len(slept) == 1
    assert result.stdout.startswith("Retrain v2: "), result.stdout


def test_the_cli_waits_for_a_refresh_no_longer_than_it_is_expected_to_take(other_process):
    with Store.memory() as store:
        owner = owner_of(other_process, SERVE_REFRESH)
        now = datetime(2026, 1, 1, tzinfo=UTC)
        until = now + timedelta(minutes=5)
        assert (
            store.acquire_lock("refresh", owner, retrain.iso_time(now), retrain.iso_time(until))
            is None
        )
        clock = [now]
        said: list[str] = []

        def sleep(seconds: float) -> None:
            clock[0] += timedelta(seconds=seconds)

        retrain.wait_for_refresh(store, said.append, sleep=sleep, poll=60.0, clock=lambda: clock[0])
        assert clock[0] == until  # its expected end (the lock's expiry), then it goes on
        assert len(said) == 2 and said[0].startswith("waiting for hitl serve's refresh")
        pid = other_process.pid
        assert said[1].endswith(f"still fitting (pid {pid}) after 5 min; retraining beside it")
        other_process.kill()  # a holder that is gone holds nothing: no wait, nothing said
        other_process.wait()
        said.clear()
        retrain.wait_for_refresh(store, said.append, sleep=sleep, clock=lambda: clock[0])
        assert said == []
