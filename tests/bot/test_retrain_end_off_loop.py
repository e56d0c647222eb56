"""A retrain's end (recording its model, its run's end and the lock's release; then its prune,
its streak and its stop check) ran on the event loop of `hitl serve`, on the served connection:
another process holding the database's write lock (a `hitl import`, a large `hitl delete`)
stalled every request for the loop's busy timeout, so a click was answered after 3.7 s, past
Slack's 3 s (review "rvrt2", F1); and a lock held just over that 2 s threw the finished model
away, where the retrain's start waits 10 s (F2). The end now runs in a worker thread on a
connection of its own (``Store.apart``: 10 s), and ``finish`` waits twice before the model is
given up. A promotion's run recorded "pruned": [] since the prune moved after ``finish`` (F3).

Deterministic: the lock is a real second connection's BEGIN IMMEDIATE, taken once the model
files are written and released only after the click was answered (the end's connections wait
for it for as long as the test needs); the lock errors of F2 are injected, counted."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

from bot.learning import retrain, stopping
from bot.learning.jobs import Trainer, run_retrain
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.harness import Bot, has_buttons, make_settings, seed, start_bot
from tests.bot.test_learning import UNLABELED, bot, labeled_items  # noqa: F401 - the fixture
from tests.bot.test_retrain_full_disk2 import LockFromTheModelFiles, folder_says
from tests.bot.test_retrain_write_fail import model_files
from tests.fake_slack import CHANNEL

WAITS_LONG_MS = 600_000  # the end's connections: they wait for the lock until it is released


async def test_a_click_is_answered_while_the_retrains_end_waits_for_another_writer(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    await run_retrain(bot.rt, "cli")
    await Trainer.of(bot.rt).settled()
    await bot.dispatcher.fill()
    message = next(m for m in bot.posted() if has_buttons(m))
    loop_thread = threading.get_ident()

    real_apart = Store.apart

    def apart(store: Store) -> Store:  # the end's wait lasts until the test releases the lock
        own = real_apart(store)
        own.set_busy_timeout(WAITS_LONG_MS)
        return own

    monkeypatch.setattr(Store, "apart", apart)
    held = LockFromTheModelFiles(bot.rt.settings.db)
    monkeypatch.setattr(retrain, "compute", held)
    entered, ended = threading.Event(), threading.Event()
    threads: dict[str, set[int]] = {"finish": set(), "stop check": set()}
    real_finish, real_record = retrain.finish, stopping.record

    def finish(*args: object, **kwargs: object) -> retrain.Outcome:
        threads["finish"].add(threading.get_ident())
        entered.set()
        try:
            return real_finish(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            ended.set()

    def record(*args: object, **kwargs: object) -> None:
        threads["stop check"].add(threading.get_ident())
        real_record(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(retrain, "finish", finish)
    monkeypatch.setattr(stopping, "record", record)
    trainer = Trainer.of(bot.rt)
    try:
        retraining = asyncio.create_task(run_retrain(bot.rt, "<@U0ADMIN>", force=True))
        await asyncio.to_thread(entered.wait, 120)
        assert entered.is_set() and held.holder is not None
        # Slack's click, while the retrain's end waits for the other writer's lock
        response = await bot.action(bot.button_payload(message, "U0ANA", "bug"))
        assert response.status in (200, 503)  # acknowledged: stored, or "try again"
        assert not ended.is_set()  # it was answered while the end still waited
        assert not retraining.done()
    finally:
        held.release()
    outcome = await retraining
    assert (outcome.status, outcome.version) == ("promoted", 2)  # the lock did not cost it
    assert bot.fake.messages(CHANNEL)[-1]["text"].startswith("*Retrain v2: promoted ✅*")
    assert threads["finish"] and loop_thread not in threads["finish"]
    assert threads["stop check"] and loop_thread not in threads["stop check"]
    assert bot.store.champion_version() == 2 and bot.store.db["locks"].count == 0
    assert trainer.retraining == 0


def lock_error() -> sqlite3.OperationalError:
    """What SQLite raises when another process held the write lock past the busy timeout."""
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
    return error


class LockedAtTheEnd:
    """The first ``times`` write transactions of ``finish`` (the retrain's end) are refused as
    when another process held the write lock past the busy timeout; each ``finish`` is seen
    with the busy timeout of the connection it runs on."""

    def __init__(self, times: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.left = times
        self.waits: list[int] = []
        inside = threading.local()
        real_finish, real_immediate = retrain.finish, Store._immediate

        def finish(store: Store, *args: object, **kwargs: object) -> retrain.Outcome:
            self.waits.append(store.db.execute("PRAGMA busy_timeout").fetchone()[0])
            inside.finish = True
            try:
                return real_finish(store, *args, **kwargs)  # type: ignore[arg-type]
            finally:
                inside.finish = False

        @contextlib.contextmanager
        def immediate(store: Store):  # noqa: ANN202
            if getattr(inside, "finish", False) and self.left > 0:
                self.left -= 1
                raise lock_error()
            with real_immediate(store):
                yield

        monkeypatch.setattr(retrain, "finish", finish)
        monkeypatch.setattr(Store, "_immediate", immediate)


async def test_a_lock_held_past_one_wait_does_not_throw_the_finished_model_away(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """A lock held 2.5 s (a `hitl delete` of 50k ids) was "v2 could not be recorded …, so it
    is not kept: its files were deleted": the end waited the event loop's 2 s, once."""
    await run_retrain(bot.rt, "cli")
    locked = LockedAtTheEnd(1, monkeypatch)
    outcome = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert (outcome.status, outcome.version) == ("promoted", 2), outcome.reason
    assert locked.left == 0
    assert locked.waits == [10_000, 10_000]  # the worker's connection's wait, twice
    assert folder_says(bot) == [(1, "retired"), (2, "champion")]
    assert bot.rt.champion.version == 2 and bot.store.champion_version() == 2
    assert bot.store.runs("retrain")[0]["status"] == "promoted"
    assert bot.store.db["locks"].count == 0


async def test_a_lock_held_past_both_waits_gives_the_model_up_and_says_why(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    await run_retrain(bot.rt, "cli")
    before = model_files(bot)
    locked = LockedAtTheEnd(2, monkeypatch)
    outcome = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert outcome.status == "failed"
    assert outcome.reason.startswith("v2 could not be recorded in the database (")
    assert "is locked" in outcome.reason and "so it is not kept" in outcome.reason
    assert locked.waits == [10_000, 10_000, 0]  # its failure's record waits no more
    assert model_files(bot) == before and folder_says(bot) == [(1, "champion")]
    assert bot.rt.champion.version == 1 and bot.store.champion_version() == 1
    assert bot.store.runs("retrain")[0]["status"] == "failed"  # recorded: the lock was free
    assert bot.store.db["locks"].count == 0
    assert bot.fake.messages(CHANNEL)[-1]["text"].startswith(
        f"*Retrain (<@U0ADMIN>) did not produce a model:* {outcome.reason}."
    )


async def test_a_promoted_retrains_run_names_the_model_files_it_deleted(
    fake_slack: FakeSlack, tmp_path: Path
):
    """HITL_KEEP_MODELS=0: v2's promotion deletes v1's files, and its run said "pruned": []
    (``finish`` wrote it before the prune)."""
    seed(tmp_path / "hitl.db", labeled_items() + UNLABELED)
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), max_open=2, keep_models=0
    )
    async for running in start_bot(fake_slack, settings):
        first = await run_retrain(running.rt, "cli")
        assert (first.status, first.pruned) == ("promoted", [])
        outcome = await run_retrain(running.rt, "<@U0ADMIN>", force=True)
        assert (outcome.status, outcome.version, outcome.pruned) == ("promoted", 2, [1])
        assert model_files(running) == ["v1.json", "v2.json", "v2.skops"]
        [second, first_run] = running.store.runs("retrain")[:2]
        assert (second["status"], second["detail"]["pruned"]) == ("promoted", [1])
        assert first_run["detail"]["pruned"] == []
        assert second["detail"]["version"] == 2 and "watermark" in second["detail"]
