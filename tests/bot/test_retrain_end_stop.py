"""`hitl serve` stops (its cleanup cancels the retrain's task) while the retrain's end runs in
its worker thread (``retrain._at_end``), waiting for another process's write lock. The
cancelled await used to leave the thread going: it recorded v2 promoted after the server had
closed its store and lock, and the report channel was told "Retrain stopped … run `/hitl
retrain` again", which was false (review "rvlast", F1). The end's thread is now waited for
before the cancel goes on, and the report says what the run recorded.

Deterministic: the lock is a real second connection's BEGIN IMMEDIATE, taken once the model
files are written; the end's connection waits for it as long as the test needs; the test lets
go of it only once the server's cleanup has cancelled the retrain's task (its wait for the
tasks, ``bot.server``'s ``asyncio.wait``), so the cancel always comes while the end waits."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from bot import server
from bot.learning import retrain
from bot.learning.jobs import STOPPED_REPORT, Trainer, run_retrain, start_retrain
from bot.store import Store
from tests.bot.harness import make_settings, seed, start_bot
from tests.bot.test_learning import UNLABELED, labeled_items
from tests.bot.test_retrain_end_off_loop import WAITS_LONG_MS
from tests.bot.test_retrain_full_disk2 import LockFromTheModelFiles
from tests.fake_slack import CHANNEL


class ServerAsyncio:
    """``bot.server``'s ``asyncio``, whose ``wait`` calls ``on_wait(tasks)`` first: the
    server's cleanup waits for its tasks right after cancelling them."""

    def __init__(self, on_wait: Any) -> None:
        self.on_wait = on_wait

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    def wait(self, tasks: Any, *args: Any, **kwargs: Any) -> Any:
        self.on_wait(tasks)
        return asyncio.wait(tasks, *args, **kwargs)


async def test_a_stop_while_the_end_waits_for_the_lock_reports_what_was_recorded(
    fake_slack, tmp_path, monkeypatch
) -> None:
    db = tmp_path / "hitl.db"
    seed(db, labeled_items() + UNLABELED)
    settings = make_settings(fake_slack, tmp_path, labels=("billing", "bug"), max_open=2)
    entered, ended = threading.Event(), threading.Event()
    order: list[str] = []
    gen = start_bot(fake_slack, settings)
    bot = await gen.__anext__()
    held = LockFromTheModelFiles(settings.db)
    try:
        await run_retrain(bot.rt, "cli")  # v1, the champion
        await Trainer.of(bot.rt).settled()

        real_apart = Store.apart

        def apart(store: Store) -> Store:  # the end's connection waits as long as the test
            own = real_apart(store)
            own.set_busy_timeout(WAITS_LONG_MS)
            return own

        monkeypatch.setattr(Store, "apart", apart)
        monkeypatch.setattr(retrain, "compute", held)
        real_finish = retrain.finish

        def finish(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            try:
                return real_finish(*args, **kwargs)
            finally:
                order.append("end thread done")
                ended.set()

        monkeypatch.setattr(retrain, "finish", finish)
        task_of_retrain: list[asyncio.Task] = []

        def on_wait(tasks: Any) -> None:
            if any(task in tasks for task in task_of_retrain):  # cancelled just now
                order.append("retrain task cancelled")
                held.release()  # the other writer lets go; the end records v2

        monkeypatch.setattr(server, "asyncio", ServerAsyncio(on_wait))
        real_close = bot.rt.store.close

        def close() -> None:
            order.append("store closed")
            real_close()

        monkeypatch.setattr(bot.rt.store, "close", close)

        assert await start_retrain(bot.rt, "<@U0ADMIN>", force=True) is None
        task = Trainer.of(bot.rt).task
        assert task is not None
        task_of_retrain.append(task)
        await asyncio.to_thread(entered.wait, 120)  # the end waits for the lock
        assert entered.is_set() and not ended.is_set()
    except BaseException:
        held.release()
        await gen.aclose()
        raise
    with pytest.raises(StopAsyncIteration):  # the server stops
        await gen.__anext__()
    await asyncio.to_thread(ended.wait, 120)  # (the old code's thread, still going)

    with Store.open(settings.db, create=False) as store:
        run = store.runs("retrain")[0]
        assert (run["status"], store.champion_version()) == ("promoted", 2)
        assert store.db["locks"].count == 0
    texts = [m["text"] for m in fake_slack.messages(CHANNEL)]
    assert STOPPED_REPORT not in texts
    assert texts[-1].startswith("Retrain v2 was promoted as the server stopped"), texts[-1]
    # the end's writes were over before the server closed its store (and its lock after it)
    assert order == ["retrain task cancelled", "end thread done", "store closed"], order
