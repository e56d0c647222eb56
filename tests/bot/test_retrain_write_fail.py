"""A retrain whose model files cannot be written (a full disk, a read-only models folder) in
`hitl serve` is a failed retrain like any other: its report tells the admins what to do and
the log says it in one line. It was recorded in ``runs`` and raised: after `/hitl retrain`
nobody was told and nothing was logged; the nightly one logged two tracebacks and posted no
report (outside test "resources", finding 1). A save whose metadata cannot be written leaves
no model file behind (finding 4), and a damaged database fails a refresh of the working model
in one line naming `hitl restore`, not as a fit with a traceback (finding 6).

The write fails deterministically: ``retrain.compute`` is replaced by ``FullDisk``, which runs
the real one with the registry's writes of one kind of file failing as on a full disk (ENOSPC,
no file name: what ``write`` raises), in the fit's child process or the test's own."""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import model.registry as registry_module
from bot.cli import cli
from bot.learning import retrain
from bot.learning.jobs import Trainer, run_retrain, scheduled_retrain
from model import ModelRegistry
from tests.bot.child_tasks import FULL, REAL_COMPUTE, FullDisk, broken
from tests.bot.harness import Bot, make_settings, seed, start_bot
from tests.bot.test_learning import bot, labeled_items, retrain_told  # noqa: F401 - the fixture
from tests.bot.test_refresh import answer_next
from tests.bot.test_refresh import bot as refresh_bot  # noqa: F401 - the fixture
from tests.fake_slack import CHANNEL


def traced(record: logging.LogRecord) -> bool:
    """Whether ``record`` carries a traceback (once the server's logging is set up, its
    filter moves it from exc_info to exc_text)."""
    return bool(record.exc_info or record.exc_text)


def said(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def model_files(bot: Bot) -> list[str]:  # noqa: F811
    return sorted(p.name for p in retrain.registry_for(bot.rt.settings).root.iterdir())


def expected_reason(bot: Bot, again: str = "`/hitl retrain`") -> str:  # noqa: F811
    root = retrain.registry_for(bot.rt.settings).root
    return (
        f"cannot write a model file in {root}: {FULL}; v1 stays the champion and nothing else"
        f" was changed (free space or raise the file-size limit, then {again} again)"
    )


async def test_a_retrain_the_full_disk_fails_in_its_child_is_reported_to_the_admins(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    await run_retrain(bot.rt, "cli")
    before = model_files(bot)
    trainer = Trainer.of(bot.rt)
    trainer.worker = retrain.FitWorker()
    monkeypatch.setattr(retrain, "compute", FullDisk(".skops"))
    caplog.set_level(logging.INFO)
    try:
        _, told = await retrain_told(bot, "retrain --force")
        assert told == []  # the report goes to the channel
        assert trainer.task is not None
        await asyncio.wait_for(asyncio.shield(trainer.task), 60)
        assert trainer.task.exception() is None  # ended, not failed: nothing left unread
        reason = expected_reason(bot)
        report = bot.fake.messages(CHANNEL)[-1]["text"]
        assert report == (
            f"*Retrain (<@U0ADMIN>) did not produce a model:* {reason}. cc <@U0ADMIN>"
        )
        [line] = said(caplog)
        assert (line.levelno, line.getMessage()) == (logging.ERROR, f"retrain failed: {reason}")
        assert not traced(line)
        run = bot.store.runs("retrain")[0]
        assert (run["status"], run["detail"]["reason"]) == ("failed", reason)
        assert bot.rt.champion.version == 1 and bot.store.champion_version() == 1
        assert model_files(bot) == before  # nothing written, nothing left

        monkeypatch.setattr(retrain, "compute", REAL_COMPUTE)  # room again: it works
        await retrain_told(bot, "retrain --force")
        await asyncio.wait_for(asyncio.shield(trainer.task), 60)
    finally:
        trainer.worker.close()
    assert bot.fake.messages(CHANNEL)[-1]["text"].startswith("*Retrain v2: promoted ✅*")


async def test_the_nightly_retrain_on_a_full_disk_posts_its_report_and_one_line(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    await run_retrain(bot.rt, "cli")
    monkeypatch.setattr(retrain, "compute", FullDisk(".skops"))
    caplog.set_level(logging.INFO)
    await scheduled_retrain(bot.rt)  # what the scheduler calls at 03:00 (a forced one fails)
    # nothing new since v1: the night skips it quietly; with a new label it trains
    assert bot.store.runs("retrain")[0]["status"] == "nothing_new"
    bot.store.add_items(labeled_items("N"), "import")
    await scheduled_retrain(bot.rt)
    reason = expected_reason(bot)
    report = bot.fake.messages(CHANNEL)[-1]["text"]
    assert report.startswith(f"*Retrain (schedule) did not produce a model:* {reason}.")
    assert report.endswith("cc <@U0ADMIN>")
    [line] = said(caplog)
    assert line.getMessage() == f"retrain failed: {reason}" and not traced(line)


async def test_a_retrain_that_fails_for_no_known_reason_tells_the_admins_and_logs_the_trace(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """A bug is still a bug (its traceback, once), but the admin who asked is told."""
    await run_retrain(bot.rt, "cli")
    monkeypatch.setattr(retrain, "compute", broken)
    caplog.set_level(logging.INFO)
    await retrain_told(bot, "retrain --force")
    trainer = Trainer.of(bot.rt)
    assert trainer.task is not None
    await asyncio.wait_for(asyncio.shield(trainer.task), 60)
    assert trainer.task.exception() is None
    assert bot.fake.messages(CHANNEL)[-1]["text"] == (
        "*Retrain (<@U0ADMIN>) did not produce a model:* retrain failed: RuntimeError: a bug in"
        " the fit. cc <@U0ADMIN>"
    )
    [line] = said(caplog)
    assert line.getMessage() == "retrain failed: RuntimeError: a bug in the fit"
    assert traced(line)
    assert bot.store.db["locks"].count == 0  # a later retrain is not refused


async def test_a_save_whose_metadata_cannot_be_written_leaves_no_model_file(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """Room for ``v2.skops`` but not ``v2.json``: the model file stayed, on the full disk, and
    the next retrain was v3, while the message said "nothing else was changed"."""
    await run_retrain(bot.rt, "cli")
    before = model_files(bot)
    monkeypatch.setattr(retrain, "compute", FullDisk(".json"))
    outcome = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert (outcome.status, outcome.reason) == ("failed", expected_reason(bot))
    assert model_files(bot) == before
    monkeypatch.setattr(retrain, "compute", REAL_COMPUTE)
    again = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert (again.status, again.version) == ("promoted", 2)


def test_the_cli_retrain_on_a_full_disk_leaves_no_model_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`hitl retrain`: the one line it prints is true, and the run records it with the fix."""
    db = tmp_path / "hitl.db"
    seed(db, labeled_items())
    first = CliRunner().invoke(cli, ["--db", str(db), "retrain"], prog_name="hitl")
    assert first.exit_code == 0, first.output
    models = Path(f"{db}.models")
    before = sorted(p.name for p in models.iterdir())
    monkeypatch.setattr(retrain, "compute", FullDisk(".json"))
    cut = CliRunner().invoke(cli, ["--db", str(db), "retrain", "--force"], prog_name="hitl")
    assert cut.exit_code == 1
    assert cut.output.splitlines()[-1] == (
        f"Error: cannot write a model file in {models}: {FULL}; v1 stays the champion and"
        " nothing else was changed (free space or raise the file-size limit, then `hitl"
        " retrain` again)"
    )
    assert sorted(p.name for p in models.iterdir()) == before


async def test_a_damaged_database_fails_a_refresh_in_one_line_naming_restore(
    refresh_bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """A page of the database damaged (a disk error) under the server: the refresh's read of
    the labels fails. It was a fit's failure: a 30-line traceback and a backoff message."""
    bot_ = refresh_bot
    await run_retrain(bot_.rt, "cli")
    trainer = Trainer.of(bot_.rt)
    await trainer.settled()

    def damaged(*_args: object) -> None:
        error = sqlite3.DatabaseError("database disk image is malformed")
        error.sqlite_errorname = "SQLITE_CORRUPT"  # type: ignore[attr-defined]
        raise error

    monkeypatch.setattr("bot.learning.jobs.read_refresh_plan", damaged)
    caplog.set_level(logging.INFO)
    for _ in range(9):  # HITL_REFRESH_EVERY=3: three refreshes due, each fails its read
        await answer_next(bot_)
        await trainer.settled()
    lines = [r for r in said(caplog) if r.name == "bot.learning.jobs"]
    [line] = lines  # said once while it lasts
    assert line.getMessage().startswith(
        f"refreshing the working model failed: {bot_.rt.settings.db} is damaged (database disk"
        " image is malformed); restore it from a backup with `hitl restore BACKUP`"
    )
    assert not any(traced(r) for r in said(caplog))


async def test_a_retrain_on_a_full_disk_in_a_fresh_server_says_no_model_was_stored(
    fake_slack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """No champion yet: nothing stays, and the report says no model was stored."""
    seed(tmp_path / "hitl.db", labeled_items())
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"))
    monkeypatch.setattr(retrain, "compute", FullDisk(".skops"))
    async for running in start_bot(fake_slack, settings):
        outcome = await run_retrain(running.rt, "schedule")
        root = retrain.registry_for(running.rt.settings).root
        assert outcome.reason == (
            f"cannot write a model file in {root}: {FULL}; no model was stored (free space or"
            " raise the file-size limit, then `/hitl retrain` again)"
        )
        assert running.fake.messages(CHANNEL)[-1]["text"].endswith("cc <@U0ADMIN>")
        assert running.rt.champion is None


class DiskFullEverywhere:
    """``FullDisk`` of the model files, on the disk the database shares (the default layout:
    the models folder beside the database): once the model file fails, the database's writes
    of the run's end and of the lock's release fail too, until ``room()``. On every
    connection to it (patched on ``store``'s class): the retrain's end writes on one of its
    own (``Store.apart``), in a worker thread."""

    def __init__(self, store: object, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.compute = FullDisk(".skops")
        for name in ("finish_run", "release_lock"):
            real = getattr(type(store), name)
            monkeypatch.setattr(type(store), name, self._refused(real))

    def _refused(self, real):  # noqa: ANN001, ANN202
        def write(*args: object, **kwargs: object) -> object:
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            return real(*args, **kwargs)

        return write

    def __call__(self, *args: object) -> retrain.Computed:
        try:
            return self.compute(*args)
        except OSError:
            self.full = True
            raise

    def room(self) -> None:
        self.full = False


async def test_a_retrain_whose_failure_the_full_disk_keeps_from_the_database_is_reported(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """The database on the models' full disk: recording the failure failed too, which raised
    before the report and the lock's release. No report, no log line, the run "running" and
    `/hitl retrain` answered "already running" until the server restarted."""
    await run_retrain(bot.rt, "cli")
    disk = DiskFullEverywhere(bot.store, monkeypatch)
    monkeypatch.setattr(retrain, "compute", disk)
    caplog.set_level(logging.INFO)
    trainer = Trainer.of(bot.rt)
    _, told = await retrain_told(bot, "retrain --force")
    assert told == []
    assert trainer.task is not None
    await asyncio.wait_for(asyncio.shield(trainer.task), 60)
    assert trainer.task.exception() is None
    assert disk.full  # the database refused the run's end and the lock's release
    reason = (
        expected_reason(bot)
        + "; the database could not record it either (database or disk is full)"
    )
    assert bot.fake.messages(CHANNEL)[-1]["text"] == (
        f"*Retrain (<@U0ADMIN>) did not produce a model:* {reason}. cc <@U0ADMIN>"
    )
    [line] = said(caplog)
    assert (line.levelno, line.getMessage()) == (logging.ERROR, f"retrain failed: {reason}")
    assert not traced(line)
    failed_run = bot.store.runs("retrain")[0]
    assert failed_run["status"] == "running"  # nothing could record it

    disk.room()  # room again: this server's next retrain is not refused by its own lock
    monkeypatch.setattr(retrain, "compute", REAL_COMPUTE)
    _, told = await retrain_told(bot, "retrain --force")
    assert told == []
    await asyncio.wait_for(asyncio.shield(trainer.task), 60)
    assert bot.fake.messages(CHANNEL)[-1]["text"].startswith("*Retrain v2: promoted ✅*")
    [recorded] = [r for r in bot.store.runs("retrain") if r["id"] == failed_run["id"]]
    assert (recorded["status"], recorded["detail"]["reason"]) == ("failed", reason)
    assert bot.store.db["locks"].count == 0


async def test_a_promotion_the_full_disk_cuts_short_is_taken_back(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """Room for the new champion's ``v2.json`` but not for retiring ``v1.json``: the folder
    named v2 the champion (a restart served it) while the report said "v1 stays the champion
    and nothing else was changed"."""
    await run_retrain(bot.rt, "cli")
    before = model_files(bot)
    real = registry_module._atomic_write

    def write(path: Path, data: bytes) -> None:
        if path.name == "v1.json" and b'"retired"' in data:
            raise OSError(errno.ENOSPC, FULL)
        real(path, data)

    monkeypatch.setattr(registry_module, "_atomic_write", write)
    outcome = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert (outcome.status, outcome.reason) == ("failed", expected_reason(bot))
    assert model_files(bot) == before
    registry = retrain.registry_for(bot.rt.settings)
    assert [(v.version, v.status) for v in registry.versions()] == [(1, "champion")]
    assert bot.rt.champion.version == 1 and bot.store.champion_version() == 1
    monkeypatch.setattr(registry_module, "_atomic_write", real)
    again = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert (again.status, again.version) == ("promoted", 2)


async def test_a_models_folder_moved_away_during_a_retrain_is_reported_as_missing(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """It was "cannot write …: No such file or directory; … (free space or raise the
    file-size limit …)": advice that cannot help."""
    await run_retrain(bot.rt, "cli")
    root = retrain.registry_for(bot.rt.settings).root

    def moved(*args: object) -> retrain.Computed:
        root.rename(root.with_name(root.name + ".moved"))
        return REAL_COMPUTE(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(retrain, "compute", moved)
    outcome = await run_retrain(bot.rt, "<@U0ADMIN>", force=True)
    assert (outcome.status, outcome.reason) == ("failed", retrain.missing_folder(root))
    assert bot.fake.messages(CHANNEL)[-1]["text"] == (
        f"*Retrain (<@U0ADMIN>) did not produce a model:* {outcome.reason}. cc <@U0ADMIN>"
    )


async def test_the_next_refresh_frees_the_lock_a_full_disk_kept_from_a_failed_retrain(
    refresh_bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """With room again, answers flow before anyone retrains: the refresh they make due
    records the failed run and frees the retrain lock, so a `hitl retrain` (cron) beside the
    server is not refused as "already running"."""
    bot_ = refresh_bot
    await run_retrain(bot_.rt, "cli")
    trainer = Trainer.of(bot_.rt)
    await trainer.settled()
    disk = DiskFullEverywhere(bot_.store, monkeypatch)
    monkeypatch.setattr(retrain, "compute", disk)
    failed = await run_retrain(bot_.rt, "<@U0ADMIN>", force=True)
    assert failed.status == "failed" and disk.full
    assert bot_.store.db["locks"].count == 1  # the release was refused
    disk.room()
    monkeypatch.setattr(retrain, "compute", REAL_COMPUTE)
    for _ in range(3):  # HITL_REFRESH_EVERY=3: a refresh is due
        await answer_next(bot_)
    await trainer.settled()
    assert bot_.store.db["locks"].count == 0
    run = bot_.store.runs("retrain")[0]
    assert (run["status"], run["detail"]["reason"]) == ("failed", failed.reason)


def test_a_retrain_end_left_unrecorded_belongs_to_its_own_database(tmp_path: Path):
    """Two databases in one process (the tests, an embedding): a failed retrain's run and lock
    that one database could not record were recorded into, and cleared by, the other's next
    retrain (second review of this round)."""
    from bot.store import Store

    with Store.open(tmp_path / "a.db") as a, Store.open(tmp_path / "b.db") as b:
        now = datetime.now(UTC)
        assert retrain.take_lock(a, "host:1:a-retrain", now, timedelta(hours=1)) is None
        run_a = a.start_run("retrain", "cli")
        retrain.UNRECORDED[a.path, run_a] = {"reason": "a's disk was full"}
        retrain.ENDED_OWNERS.add((a.path, "host:1:a-retrain"))
        try:
            assert retrain.left_unrecorded(a) and not retrain.left_unrecorded(b)
            assert retrain.take_lock(b, "host:1:b-retrain", now, timedelta(hours=1)) is None
            run_b = b.start_run("retrain", "cli")
            b.finish_run(run_b, "promoted", {"reason": "b's own"})
            retrain.record_left(b)  # b's next retrain: nothing of a's is written into b
            assert b.runs()[0]["status"] == "promoted"
            assert retrain.left_unrecorded(a)
            # a's own next retrain takes over a's stale lock and records a's run
            assert retrain.take_lock(a, "host:1:a-next", now, timedelta(hours=1)) is None
            retrain.record_left(a)
            assert not retrain.left_unrecorded(a)
            assert [r["status"] for r in a.runs() if r["id"] == run_a] == ["failed"]
        finally:
            retrain.UNRECORDED.clear()
            retrain.ENDED_OWNERS.clear()


def test_a_retrain_at_the_open_files_limit_is_not_told_as_a_write_or_full_disk(tmp_path: Path):
    registry = ModelRegistry(tmp_path / "models")
    reason = retrain.failure_reason(
        OSError(errno.EMFILE, "Too many open files"), None, registry, None, "`/hitl retrain`"
    )
    assert reason == (
        "retrain failed: Too many open files: hitl is at its limit of open files; raise it"
        " (`ulimit -n`, or LimitNOFILE= in its systemd unit), then `/hitl retrain` again"
    )


def test_a_retrain_out_of_memory_reading_a_library_is_not_told_as_a_write(tmp_path: Path):
    """Under a memory limit, importing scikit-learn in the fit's thread failed with ENOMEM
    naming one of its files ("Error: cannot write …/sklearn/__check_build: Cannot allocate
    memory; no model was stored (free space or raise the file-size limit …)"): once in a few
    runs of tests/reliability/test_model_faults' retrain under 64 MB of room."""
    registry = ModelRegistry(tmp_path / "models")
    exc = OSError(errno.ENOMEM, "Cannot allocate memory", "/site-packages/sklearn/__check_build")
    reason = retrain.failure_reason(exc, None, registry, None)
    assert reason == (
        "ran out of memory (OSError: Cannot allocate memory); give hitl more memory (its limit:"
        " `ulimit -v`, or the container's); what was stored is kept"
    )
