"""A fit's child that runs out of memory before the fit's own MemoryError handling (while it
unpickles its task: the labels and the champion) is said to lack memory, with the fix, not
"the code changed under a running server"; and a refresh that fails is one log line, after
which refreshes back off instead of one more failing refresh (two more children) per click
(outside test "smallbox", MEDIUM 2)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from bot.learning import jobs, retrain
from bot.learning.jobs import Trainer, run_retrain
from tests.bot.child_tasks import OutOfMemoryOnArrival, raises_memory_error
from tests.bot.harness import Bot
from tests.bot.test_refresh import answer_next, bot  # noqa: F401 - the fixture
from tests.fake_slack import CHANNEL

MEMORY = (
    "ran out of memory while fitting (the fit's process: MemoryError); lower the load, e.g."
    " HITL_PIPELINE=word_lr, or give the server more memory"
)
DIED = f"the fit's process died 2 times before it finished: it {MEMORY}"


def traced(record: logging.LogRecord) -> bool:
    """Whether ``record`` carries a traceback (bot/logs.py's filter, once the server's logging
    is set up, moves it from exc_info to exc_text, redacted)."""
    return bool(record.exc_info or record.exc_text)


def logged(caplog: pytest.LogCaptureFixture, name: str, level: int = logging.WARNING) -> list:
    return [r for r in caplog.records if r.name == name and r.levelno >= level]


async def test_a_retrain_whose_child_runs_out_of_memory_reading_its_task_says_memory(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    await run_retrain(bot.rt, "cli")
    trainer = Trainer.of(bot.rt)
    trainer.worker = retrain.FitWorker()
    monkeypatch.setattr(retrain, "compute", OutOfMemoryOnArrival())
    caplog.set_level(logging.INFO)
    try:
        outcome = await asyncio.wait_for(run_retrain(bot.rt, "<@U0ADMIN>", force=True), 60)
    finally:
        trainer.worker.close()
    assert (outcome.status, outcome.reason) == ("failed", f"retrain failed: {DIED}")
    assert trainer.worker.died == 2 and bot.rt.champion.version == 1
    assert bot.store.runs("retrain")[0]["status"] == "failed"
    text = bot.fake.messages(CHANNEL)[-1]["text"]
    assert DIED in text and "code changed" not in text
    [retried] = logged(caplog, "bot.learning.retrain")
    assert retried.getMessage() == (
        "a fit's process died (ran out of memory: MemoryError); fitting again in a new one"
    )
    assert not any(traced(r) for r in caplog.records)


async def test_a_memory_error_the_childs_task_raises_is_said_to_lack_memory(
    monkeypatch: pytest.MonkeyPatch,
):
    """Not a death: the child answers MemoryError (its task ran out outside the fit's own
    handling). Not fitted again either: the same task would run out the same way."""
    worker = retrain.FitWorker()
    monkeypatch.setattr(retrain, "compute_refresh", raises_memory_error)
    try:
        with pytest.raises(retrain.FitDied) as raised:
            await asyncio.wait_for(worker.refresh(None, None), 60)  # type: ignore[arg-type]
    finally:
        worker.close()
    assert str(raised.value) == (
        "the fit ran out of memory while fitting (MemoryError); lower the load, e.g."
        " HITL_PIPELINE=word_lr, or give the server more memory"
    )
    assert worker.handed == 1 and worker.died == 0


async def test_a_refresh_out_of_memory_is_one_line_and_backs_off_until_one_fits(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    await run_retrain(bot.rt, "cli")
    trainer = Trainer.of(bot.rt)
    # the check a retrain starts as it ends reads the labels in a worker thread: waited for, so
    # the first answer does not land in the middle of its read (the refresh came one early)
    await trainer.settled()
    trainer.worker = retrain.FitWorker()
    caplog.set_level(logging.INFO)
    try:
        with monkeypatch.context() as short:
            short.setattr(retrain, "compute_refresh", OutOfMemoryOnArrival())
            for _ in range(3):  # HITL_REFRESH_EVERY=3: a refresh, whose two children fail
                await answer_next(bot)
                await trainer.settled()
            assert trainer.worker.handed == 2 and trainer.refreshes == 0
            [failed] = logged(caplog, "bot.learning.jobs")
            assert failed.getMessage() == (
                f"refreshing the working model failed: {DIED}; refreshes wait until 6 more"
                " labels (21 resolved items), twice as many after each failure in a row"
            )
            assert not traced(failed)
            for _ in range(2):  # each click started another failing refresh (2 children)
                await answer_next(bot)
                await trainer.settled()
            assert trainer.worker.handed == 2, "a refresh started before the backoff ended"
        for _ in range(3):  # 18 to 20 resolved items: still backing off (21: memory is back)
            await answer_next(bot)
            await trainer.settled()
            assert trainer.worker.handed == 2
        await answer_next(bot)
        await trainer.settled()
        assert trainer.worker.handed == 3 and trainer.refreshes == 1
        assert bot.rt.working is not None and bot.rt.working.version == -21
        for _ in range(3):  # a success ends the backoff: the usual step (3) again
            await answer_next(bot)
            await trainer.settled()
        assert trainer.worker.handed == 4 and trainer.refreshes == 2
    finally:
        trainer.worker.close()
    assert len(logged(caplog, "bot.learning.jobs")) == 1
    assert not any(traced(r) for r in caplog.records)
    assert not any("code changed" in r.getMessage() for r in caplog.records)


async def test_refreshes_failing_in_a_row_wait_twice_as_long_and_an_unknown_cause_has_one_traceback(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    await run_retrain(bot.rt, "cli")
    trainer = Trainer.of(bot.rt)
    reads = []

    def broken(*_args: object) -> None:
        reads.append(1)
        raise RuntimeError("the plan could not be read")

    monkeypatch.setattr(jobs, "read_refresh_plan", broken)
    for _ in range(3 + 6):  # failed at 15 resolved items, then at 21 (6 more), not between
        await answer_next(bot)
        await trainer.settled()
    assert len(reads) == 2
    first, second = logged(caplog, "bot.learning.jobs")
    assert first.getMessage() == (
        "refreshing the working model failed: RuntimeError: the plan could not be read;"
        " refreshes wait until 6 more labels (21 resolved items), twice as many after each"
        " failure in a row"
    )
    assert traced(first)  # no known cause: its traceback, once
    assert second.getMessage() == (
        "refreshing the working model failed: RuntimeError: the plan could not be read;"
        " refreshes wait until 12 more labels (33 resolved items)"
    )
    assert not traced(second)


async def test_a_refresh_whose_fit_runs_out_of_memory_is_one_warning_and_backs_off(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """The common case the README names ("its fit out of memory, say"): the fit itself raises
    MemoryError, which the refresh's fit catches. It was an INFO line ("refresh r15 on 15
    labels: not refreshed: fitting failed with MemoryError: ") and no backoff: each step of
    labels started another refit that ran out the same way."""
    from model.classifier import TextClassifier

    await run_retrain(bot.rt, "cli")
    trainer = Trainer.of(bot.rt)
    await trainer.settled()
    caplog.set_level(logging.INFO)
    fit = TextClassifier.fit
    fits = []

    def short_of_memory(self: TextClassifier, *args: object, **kwargs: object) -> object:
        fits.append(1)
        raise MemoryError

    with monkeypatch.context() as short:
        short.setattr(TextClassifier, "fit", short_of_memory)
        for _ in range(3 + 5):  # failed at 15 resolved items, then waits for 6 more, not 3
            await answer_next(bot)
            await trainer.settled()
        assert len(fits) == 1, "a refresh started before the backoff ended"
    assert bot.rt.working is None and trainer.refreshes == 0
    [failed] = logged(caplog, "bot.learning.jobs")
    assert failed.getMessage() == (
        f"refreshing the working model failed: {retrain.out_of_memory('MemoryError')};"
        " refreshes wait until 6 more labels (21 resolved items), twice as many after each"
        " failure in a row"
    )
    assert not traced(failed)
    monkeypatch.setattr(TextClassifier, "fit", fit)
    await answer_next(bot)  # 21: memory is back
    await trainer.settled()
    assert trainer.refreshes == 1 and bot.rt.working.version == -21
    # Out of memory outside the fit (the refresh's own work, in this process): said in the
    # same words, where str(MemoryError()) left "failed: ; refreshes wait …"
    caplog.clear()
    monkeypatch.setattr(retrain, "compute_refresh", short_of_memory)
    for _ in range(3):
        await answer_next(bot)
        await trainer.settled()
    [failed] = logged(caplog, "bot.learning.jobs")
    assert failed.getMessage().startswith(
        f"refreshing the working model failed: {retrain.out_of_memory('MemoryError')};"
        " refreshes wait until"
    ), failed.getMessage()


async def test_a_refresh_failing_after_a_rollback_during_its_fit_keeps_the_rollbacks_count(
    bot: Bot,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    """`/hitl rollback 1` while a refresh of v2 fits, and then the fit fails (out of memory):
    the refresh put back v2's count of labels (``fitted_at``) over the reset the rollback
    made, so the next refresh's step counted from the labels v2 was trained at, not from the
    rollback (README: the first refresh after a rollback waits for the step of new labels)."""
    from bot.learning.jobs import run_rollback
    from bot.learning.rollback import begin_rollback

    await run_retrain(bot.rt, "cli")
    assert (await run_retrain(bot.rt, "cli", force=True)).promoted
    trainer = Trainer.of(bot.rt)
    await trainer.settled()
    fitting, go = threading.Event(), threading.Event()

    def held_then_failed(*_args: object) -> None:
        fitting.set()
        assert go.wait(120)
        raise retrain.RefreshFailed(MEMORY)

    monkeypatch.setattr(retrain, "compute_refresh", held_then_failed)
    try:
        for _ in range(3):  # HITL_REFRESH_EVERY=3: a refresh of v2
            await answer_next(bot)
        assert await asyncio.to_thread(fitting.wait, 120)  # the refresh of v2 fits
        plan = begin_rollback(bot.store, bot.rt.registry, 1, triggered_by="<@U0ADMIN>")
        await run_rollback(bot.rt, plan)
        assert bot.rt.champion.version == 1 and trainer.fitted_at is None  # counts afresh
    finally:
        go.set()
    await trainer.settled()
    assert trainer.refreshes == 0 and trainer.refresh_failures == 1
    assert trainer.fitted_at is None, "v2's count put back over the rollback's reset"
