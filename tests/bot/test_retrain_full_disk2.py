"""A retrain in `hitl serve` that wrote its model files and then met a full disk (the database's
writes after it: recording the model, the run's end and the lock's release; then its stop check
or the scoring of the waiting items) was silent: no report, nothing told to the admin who asked,
the run "running" and its lock held, so every later `/hitl retrain` was refused "already
running" and the nightly one skipped until a restart; the models folder named v2 the champion
while the database and the server kept v1 (review "rv", F5). A failed retrain whose end the
full disk kept from the database refused `hitl retrain` from cron (another process) as
"already running" until the server itself retrained (F1). A promotion whose first write failed
left v2.json and v2.skops on the full disk while the report said "nothing else was changed"
(F6).

The disk fills deterministically: ``retrain.compute`` runs the real one (the model files are
written) and then the database's writes fail as SQLite fails them on a full disk
(``FullAfterWrite``), or the registry's writes of one file fail as ``write`` does (ENOSPC)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import model.registry as registry_module
from bot.learning import retrain, stopping
from bot.learning.jobs import Trainer, run_retrain, scheduled_retrain, scorer_of
from bot.sandbox import FakeSlack
from bot.store import Store
from tests.bot.child_tasks import FULL, REAL_COMPUTE
from tests.bot.harness import Bot, make_settings, seed, start_bot
from tests.bot.test_learning import (  # noqa: F401 - the fixture
    UNLABELED,
    bot,
    labeled_items,
    retrain_told,
)
from tests.bot.test_retrain_write_fail import DiskFullEverywhere, model_files, said, traced
from tests.fake_slack import CHANNEL

ROOT = Path(__file__).resolve().parents[2]


def disk_full() -> sqlite3.OperationalError:
    """What SQLite raises for a write on a full disk."""
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    return error


class FullAfterWrite:
    """``retrain.compute`` (in the test's process: the ``bot`` fixture fits in a thread) that
    fills the disk once its model files are written: from then on the database refuses the
    writes that record a retrain (its models, the run's end, the lock's release), until
    ``room()``: on every connection to it (patched on ``store``'s class), as the retrain's end
    writes on one of its own (``Store.apart``), in a worker thread."""

    WRITES = ("record_model", "finish_run", "release_lock")

    def __init__(self, store: object, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        for name in self.WRITES:
            monkeypatch.setattr(type(store), name, self._refused(getattr(type(store), name)))

    def _refused(self, real):  # noqa: ANN001, ANN202
        def write(*args: object, **kwargs: object) -> object:
            if self.full:
                raise disk_full()
            return real(*args, **kwargs)

        return write

    def __call__(self, *args: object) -> retrain.Computed:
        done = REAL_COMPUTE(*args)  # type: ignore[arg-type]
        self.full = True
        return done

    def room(self) -> None:
        self.full = False


def folder_says(bot: Bot) -> list[tuple[int, str]]:  # noqa: F811
    registry = retrain.registry_for(bot.rt.settings)
    return [(v.version, v.status) for v in registry.versions()]


def not_kept(bot: Bot, again: str = "`/hitl retrain`") -> str:  # noqa: F811
    return (
        f"v2 could not be recorded in the database ({bot.rt.settings.db}: the disk is full;"
        " free some space and try again), so it is not kept: its files were deleted and v1"
        f" stays the champion; then {again} again"
    )


async def test_a_retrain_whose_model_the_full_disk_keeps_from_the_database_is_reported(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    await run_retrain(bot.rt, "cli")
    before = model_files(bot)
    disk = FullAfterWrite(bot.store, monkeypatch)
    monkeypatch.setattr(retrain, "compute", disk)
    caplog.set_level(logging.INFO)
    trainer = Trainer.of(bot.rt)
    _, told = await retrain_told(bot, "retrain --force")
    assert told == []  # the report goes to the channel
    assert trainer.task is not None
    await asyncio.wait_for(asyncio.shield(trainer.task), 60)
    assert trainer.task.exception() is None  # it raised "database or disk is full": unread
    assert disk.full
    reason = not_kept(bot)
    report = bot.fake.messages(CHANNEL)[-1]["text"]
    assert report.startswith(f"*Retrain (<@U0ADMIN>) did not produce a model:* {reason}.")
    assert report.endswith("Model v1 stays. cc <@U0ADMIN>")
    [line] = said(caplog)
    assert (line.levelno, line.getMessage()) == (logging.ERROR, f"retrain failed: {reason}")
    assert not traced(line)
    # the folder, the database and the server keep v1 (the folder named v2 the champion)
    assert model_files(bot) == before
    assert folder_says(bot) == [(1, "champion")]
    assert bot.rt.champion.version == 1 and bot.store.champion_version() == 1
    failed_run = bot.store.runs("retrain")[0]
    assert failed_run["status"] == "running"  # the full disk refused its end too

    disk.room()  # room again: the next /hitl retrain is not refused "already running"
    monkeypatch.setattr(retrain, "compute", REAL_COMPUTE)
    _, told = await retrain_told(bot, "retrain --force")
    assert told == []
    await asyncio.wait_for(asyncio.shield(trainer.task), 60)
    assert bot.fake.messages(CHANNEL)[-1]["text"].startswith("*Retrain v2: promoted ✅*")
    [recorded] = [r for r in bot.store.runs("retrain") if r["id"] == failed_run["id"]]
    assert (recorded["status"], recorded["detail"]["reason"]) == ("failed", reason)
    assert bot.store.db["locks"].count == 0
    assert bot.rt.champion.version == 2 and folder_says(bot) == [(1, "retired"), (2, "champion")]


async def test_the_nightly_retrain_the_full_disk_stops_after_its_model_files_reports_it(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """It logged "scheduled retrain failed" with a traceback and posted nothing; the next
    night was refused as busy, which a scheduled retrain does not announce."""
    await run_retrain(bot.rt, "cli")
    disk = FullAfterWrite(bot.store, monkeypatch)
    monkeypatch.setattr(retrain, "compute", disk)
    caplog.set_level(logging.INFO)
    bot.store.add_items(labeled_items("N"), "import")
    await scheduled_retrain(bot.rt)
    reason = not_kept(bot)
    report = bot.fake.messages(CHANNEL)[-1]["text"]
    assert report.startswith(f"*Retrain (schedule) did not produce a model:* {reason}.")
    assert report.endswith("cc <@U0ADMIN>")
    [line] = said(caplog)
    assert line.getMessage() == f"retrain failed: {reason}" and not traced(line)
    assert folder_says(bot) == [(1, "champion")] and bot.store.champion_version() == 1

    disk.room()
    monkeypatch.setattr(retrain, "compute", REAL_COMPUTE)
    await scheduled_retrain(bot.rt)  # the next night: the same labels, not tried yet
    assert bot.fake.messages(CHANNEL)[-1]["text"].startswith("*Retrain v2: promoted ✅*")
    assert bot.store.runs("retrain")[0]["status"] == "promoted"


async def test_a_promoted_retrain_whose_scoring_the_full_disk_stops_is_reported_promoted(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """Recorded, then the disk filled as the waiting items were scored with the new model:
    ``ScoringStopped`` ended the task, unread; no report."""
    await run_retrain(bot.rt, "cli")
    scorer = scorer_of(bot.rt)

    async def rescore() -> int:
        raise disk_full()

    monkeypatch.setattr(scorer, "rescore", rescore)
    caplog.set_level(logging.INFO)
    trainer = Trainer.of(bot.rt)
    _, told = await retrain_told(bot, "retrain --force")
    assert told == []
    await asyncio.wait_for(asyncio.shield(trainer.task), 60)
    assert trainer.task.exception() is None
    report = bot.fake.messages(CHANNEL)[-1]["text"]
    assert report.startswith("*Retrain v2: promoted ✅*")
    stopped = (
        f"but scoring the waiting items with it stopped ({bot.rt.settings.db}: the disk is full;"
        " free some space and try again): those not scored yet keep v1's scores until the"
        " server scores them"
    )
    assert stopped in report
    [line] = said(caplog)
    assert line.getMessage() == (
        f"retrain v2 promoted, but scoring the waiting items stopped: {bot.rt.settings.db}: the"
        " disk is full; free some space and try again"
    )
    assert not traced(line)
    assert bot.store.champion_version() == 2 and bot.rt.champion.version == 2
    assert bot.store.runs("retrain")[0]["status"] == "promoted"
    assert bot.store.db["locks"].count == 0


async def test_a_promoted_retrain_whose_stop_check_the_full_disk_refuses_is_reported(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """Recorded, then writing its stop check failed: raised past the report."""
    await run_retrain(bot.rt, "cli")
    refused: list[int] = []

    def record(*_args: object, **_kwargs: object) -> None:
        refused.append(1)
        raise disk_full()

    monkeypatch.setattr(stopping, "record", record)
    caplog.set_level(logging.INFO)
    trainer = Trainer.of(bot.rt)
    await retrain_told(bot, "retrain --force")
    await asyncio.wait_for(asyncio.shield(trainer.task), 60)
    assert refused and trainer.task.exception() is None
    assert bot.fake.messages(CHANNEL)[-1]["text"].startswith("*Retrain v2: promoted ✅*")
    [line] = said(caplog)
    assert line.getMessage() == (
        f"retrain v2: its stop check could not be recorded ({bot.rt.settings.db}: the disk is"
        " full; free some space and try again); the next retrain's is"
    )
    assert not traced(line)
    assert bot.rt.champion.version == 2 and bot.store.db["locks"].count == 0


async def test_a_first_write_of_the_promotion_the_full_disk_refuses_leaves_no_model_file(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """Room for v2's files but not for marking v2.json champion: v2 stayed a candidate, with
    its model file, on the full disk, while the report said "nothing else was changed". Its
    metadata stays (marked pruned), so the next retrain rejects it as never decided."""
    await run_retrain(bot.rt, "cli")
    before = model_files(bot)
    real = registry_module._atomic_write

    def write(path: Path, data: bytes) -> None:
        if path.name == "v2.json" and b'"champion"' in data:
            raise OSError(errno.ENOSPC, FULL)
        real(path, data)

    monkeypatch.setattr(registry_module, "_atomic_write", write)
    outcome = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    root = retrain.registry_for(bot.rt.settings).root
    assert (outcome.status, outcome.reason) == (
        "failed",
        f"cannot write a model file in {root}: {FULL}; v1 stays the champion and nothing else"
        " was changed (free space or raise the file-size limit, then `/hitl retrain` again)",
    )
    assert model_files(bot) == sorted([*before, "v2.json"])  # v2.skops is gone
    registry = retrain.registry_for(bot.rt.settings)
    left = registry.get(2)
    assert (left.status, bool(left.pruned_at)) == ("candidate", True)
    assert registry.champion().version == 1 and bot.store.champion_version() == 1
    monkeypatch.setattr(registry_module, "_atomic_write", real)
    again = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert (again.status, again.version) == ("promoted", 3)
    assert registry.get(2).reason == retrain.UNDECIDED


def cli_retrain(db: Path) -> subprocess.CompletedProcess[str]:
    """`hitl retrain --force` in a process of its own, as cron runs it beside `hitl serve`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITL_")}
    env |= {"PYTHONPATH": str(ROOT), "HITL_LABELS": "billing,bug"}
    return subprocess.run(
        [sys.executable, "-m", "bot", "--db", str(db), "retrain", "--force"],
        capture_output=True,
        text=True,
        env=env,
        cwd=db.parent,
        timeout=300,
    )


async def test_cron_retrains_after_a_failure_the_full_disk_kept_from_the_database(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """The server's failed retrain could not release its lock; once there is room, `hitl
    retrain` from cron was refused "already running … try again when it is done" until the
    server itself retrained or refreshed: that its retrain had ended was in its memory only."""
    await run_retrain(bot.rt, "cli")
    disk = DiskFullEverywhere(bot.store, monkeypatch)
    monkeypatch.setattr(retrain, "compute", disk)
    failed = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert failed.status == "failed" and disk.full
    assert bot.store.db["locks"].count == 1  # the release was refused
    [failed_run] = [r for r in bot.store.runs("retrain") if r["status"] == "running"]
    disk.room()  # the operator frees space; the server does nothing meanwhile

    cron = await asyncio.to_thread(cli_retrain, bot.rt.settings.db)
    assert cron.returncode == 0, cron.stdout + cron.stderr
    assert "Retrain v2: promoted" in cron.stdout
    runs = {r["id"]: r for r in bot.store.runs("retrain")}
    assert runs[failed_run["id"]]["status"] == "failed"
    assert runs[failed_run["id"]]["detail"]["reason"] == retrain.ENDED_AWAY  # not "gone"
    assert bot.store.db["locks"].count == 0
    db = bot.rt.settings.db
    assert not [p for p in db.parent.iterdir() if p.name.startswith(f"{db.name}.retrain-ended")]

    # the server's next retrain records what it knows of that run, and is not refused
    monkeypatch.setattr(retrain, "compute", REAL_COMPUTE)
    again = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert again.status == "promoted" and again.version == 3
    recorded = next(r for r in bot.store.runs("retrain") if r["id"] == failed_run["id"])
    assert (recorded["status"], recorded["detail"]["reason"]) == ("failed", failed.reason)
    retrain.UNRECORDED.clear()
    retrain.ENDED_OWNERS.clear()


async def test_keep_models_0_and_a_model_the_database_refuses_keep_the_champion_before_it(
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """HITL_KEEP_MODELS=0 (README's advice after erasing a label): the retrain pruned the
    files beyond it before the database recorded its model, so v1's file (retired by v2's
    promotion) was deleted; the database then refused v2, whose files were taken back. The
    folder held no model at all (v1.json, pruned): after a restart the server served none,
    while the report said v1 stays the champion (review "rvrt", R1)."""
    seed(tmp_path / "hitl.db", labeled_items() + UNLABELED)
    settings = make_settings(
        fake_slack, tmp_path, labels=("billing", "bug"), max_open=2, keep_models=0
    )
    try:
        async for running in start_bot(fake_slack, settings):
            await run_retrain(running.rt, "cli")
            disk = FullAfterWrite(running.store, monkeypatch)
            monkeypatch.setattr(retrain, "compute", disk)
            trainer = Trainer.of(running.rt)
            _, told = await retrain_told(running, "retrain --force")
            assert told == [] and trainer.task is not None
            await asyncio.wait_for(asyncio.shield(trainer.task), 60)
            assert disk.full and running.rt.champion.version == 1
            report = running.fake.messages(CHANNEL)[-1]["text"]
            reason = not_kept(running)
            left = (folder_says(running), model_files(running))
            disk.room()
            monkeypatch.setattr(retrain, "compute", REAL_COMPUTE)
        async for restarted in start_bot(fake_slack, settings):  # the server starts again
            assert restarted.rt.champion is not None  # it served no model at all
            assert restarted.rt.champion.version == 1
            assert restarted.store.champion_version() == 1
        assert left == ([(1, "champion")], ["v1.json", "v1.skops"])  # v1's file was pruned
        assert report.startswith(f"*Retrain (<@U0ADMIN>) did not produce a model:* {reason}.")
    finally:
        for key in [k for k in retrain.UNRECORDED if k[0] == settings.db]:
            retrain.UNRECORDED.pop(key)
        retrain.ENDED_OWNERS.difference_update(
            {e for e in retrain.ENDED_OWNERS if e[0] == settings.db}
        )


async def test_a_promotion_keeps_its_files_beyond_keep_models_until_it_is_recorded(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """The files beyond HITL_KEEP_MODELS go once the database recorded the promotion: none is
    deleted before ``finish``, and the report names those deleted after it."""
    await run_retrain(bot.rt, "cli")
    real_finish = retrain.finish
    seen: list[list[str]] = []

    def finish(*args: object, **kwargs: object) -> retrain.Outcome:
        seen.append(model_files(bot))
        return real_finish(*args, **kwargs)

    real_begin = retrain.begin

    def begin(*args: object, **kwargs: object) -> object:
        plan = real_begin(*args, **kwargs)
        if isinstance(plan, retrain.Plan):
            plan.keep_models = 0
        return plan

    monkeypatch.setattr(retrain, "finish", finish)
    monkeypatch.setattr(retrain, "begin", begin)
    outcome = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert (outcome.status, outcome.version, outcome.pruned) == ("promoted", 2, [1])
    assert seen == [["v1.json", "v1.skops", "v2.json", "v2.skops"]]  # v1's file, until then
    assert model_files(bot) == ["v1.json", "v2.json", "v2.skops"]


class LockFromTheModelFiles:
    """Another writer takes the database's write lock (a connection of its own, BEGIN
    IMMEDIATE) as soon as the retrain's model files are written (``retrain.compute``, in a
    thread: the ``bot`` fixture fits in one) and holds it until ``release()``."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.holder: sqlite3.Connection | None = None

    def __call__(self, *args: object) -> retrain.Computed:
        done = REAL_COMPUTE(*args)  # type: ignore[arg-type]
        self.holder = sqlite3.connect(self.db, isolation_level=None, check_same_thread=False)
        self.holder.execute("BEGIN IMMEDIATE")
        return done

    def release(self) -> None:
        if self.holder is not None:
            self.holder.execute("ROLLBACK")
            self.holder.close()
            self.holder = None


class HeldLock(LockFromTheModelFiles):
    """Another process's write (a long `hitl import`, a backup) holding the database's write
    lock from when the retrain's model files are written until ``release()``; and every write
    transaction of the retrain's connections of their own (``Store.apart``: its end writes on
    one, in a worker thread), with the busy timeout it waited for the lock and whether the
    database refused it. Those connections wait as long as the server's (the test's 50 ms)."""

    def __init__(self, bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
        super().__init__(bot.rt.settings.db)
        self.writes: list[tuple[int, bool]] = []
        served = bot.store
        waits = served.db.execute("PRAGMA busy_timeout").fetchone()[0]
        real = Store._immediate
        real_apart = Store.apart

        @contextlib.contextmanager
        def immediate(store: Store):  # noqa: ANN202
            waited = store.db.execute("PRAGMA busy_timeout").fetchone()[0]
            try:
                with real(store):
                    yield
            except sqlite3.OperationalError:
                if store is not served:
                    self.writes.append((waited, True))
                raise
            if store is not served:
                self.writes.append((waited, False))

        def apart(store: Store) -> Store:
            own = real_apart(store)
            own.set_busy_timeout(waits)
            return own

        monkeypatch.setattr(Store, "_immediate", immediate)
        monkeypatch.setattr(Store, "apart", apart)


async def test_a_locked_database_stalls_the_retrain_for_one_busy_timeout_not_three(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """Another process held the write lock past the busy timeout as the retrain recorded its
    model: ``finish`` waited for it, then ``_not_kept``'s ``finish`` and ``_not_recorded``'s
    release of the lock each waited again, on the event loop of `hitl serve` (10 s each;
    review "rvrt", R2). ``finish`` waits twice (``END_TRIES``: a lock held a little long does
    not throw the model away; in a worker thread since, review "rvrt2", F2); the writes after
    its refusal do not wait."""
    await run_retrain(bot.rt, "cli")
    bot.store.set_busy_timeout(50)
    held = HeldLock(bot, monkeypatch)
    monkeypatch.setattr(retrain, "compute", held)
    try:
        outcome = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    finally:
        held.release()
    assert outcome.status == "failed" and "is locked" in outcome.reason
    waits = [waited for waited, refused in held.writes if refused and waited]
    assert waits == [50, 50]  # finish's two tries; not _not_kept's finish nor the release
    assert len([1 for _, refused in held.writes if refused]) == 4
    assert bot.store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 50  # as it was
    assert folder_says(bot) == [(1, "champion")] and bot.rt.champion.version == 1
    monkeypatch.setattr(retrain, "compute", REAL_COMPUTE)
    again = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)  # the lock is taken over
    assert (again.status, again.version) == ("promoted", 2)  # v2 was never recorded
    assert bot.store.db["locks"].count == 0


async def test_a_model_recorded_before_the_database_reports_an_error_keeps_its_files(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """``finish`` committed, then raised (as a COMMIT whose fsync failed may, its pages in the
    log): the retrain took it for "nothing recorded" and deleted v2's files, which the
    database names the champion (review "rvrt", R3). It asks the database first."""
    await run_retrain(bot.rt, "cli")
    real_finish = retrain.finish
    calls: list[int] = []

    def finish(*args: object, **kwargs: object) -> retrain.Outcome:
        done = real_finish(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise disk_io_error()  # after the COMMIT
        return done

    monkeypatch.setattr(retrain, "finish", finish)
    caplog.set_level(logging.INFO)
    outcome = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert (outcome.status, outcome.version) == ("promoted", 2)
    assert calls == [1]  # not recorded again as failed
    assert bot.store.champion_version() == 2 and bot.rt.champion.version == 2
    assert folder_says(bot) == [(1, "retired"), (2, "champion")]
    assert "v2.skops" in model_files(bot)
    assert bot.store.runs("retrain")[0]["status"] == "promoted"
    assert bot.store.db["locks"].count == 0
    [line] = said(caplog)
    assert line.getMessage() == (
        "retrain v2 promoted and recorded (its model files are kept), although the database"
        f" then reported an error: {bot.rt.settings.db}: the disk failed to read or write it"
        " (disk I/O error); check the disk"
    )
    assert not traced(line)
    assert bot.fake.messages(CHANNEL)[-1]["text"].startswith("*Retrain v2: promoted ✅*")


def disk_io_error() -> sqlite3.OperationalError:
    """What SQLite raises for a COMMIT whose fsync failed."""
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorname = "SQLITE_IOERR_FSYNC"  # type: ignore[attr-defined]
    return error
