"""The server's children stopped (SIGSTOP, a debugger, a frozen cgroup) do not hold its stop.

A stopped process keeps a SIGTERM pending and does not exit. A pool that terminates it, then
joins it, waits for ever; the server's shutdown (the fit pool's ``terminate``) or its exit
(the scoring executor's manager thread, joined at interpreter exit) hangs, until something
kills it with SIGKILL. The workers resume their children before they terminate them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import struct
import threading
import time

from bot.learning.retrain import FitWorker
from bot.learning.scoring_worker import ScoringWorker
from model.classifier import TextClassifier
from tests.processes import exits_within

BOUND = 30  # seconds: the children exit in milliseconds; without the fix, never


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def scoring_worker_with_a_child() -> ScoringWorker:
    """A scoring worker whose child has a model and has answered once."""
    classifier = TextClassifier().fit(
        ["refund my card", "charged twice", "app crashes", "blank page"],
        ["billing", "billing", "bug", "bug"],
    )
    worker = ScoringWorker()
    await worker.predict(1, classifier, ["a refund please"], "margin")
    return worker


async def test_a_stopped_scoring_child_exits_when_the_worker_closes():
    worker = await scoring_worker_with_a_child()
    pid = worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        worker.close()
        assert exits_within(pid, BOUND), "a stopped scoring child outlived close()"
    finally:
        kill(pid)


async def test_a_stopped_fit_child_does_not_hold_the_close():
    worker = FitWorker()
    fit = asyncio.ensure_future(worker._call(time.sleep, (600,)))  # a fit that takes long
    await worker.wait_handed(1)
    [pid] = worker.child_pids()
    os.kill(pid, signal.SIGSTOP)
    closing = threading.Thread(target=worker.close, daemon=True)  # shutdown's call
    closing.start()
    try:
        closing.join(BOUND)
        assert not closing.is_alive(), "close() waited for a stopped fit child"
        assert exits_within(pid, BOUND)
    finally:
        kill(pid)
        closing.join(BOUND)
        fit.cancel()


async def test_a_child_ended_while_it_sends_a_result_does_not_hold_the_stop():
    """A child terminated halfway through sending its result (here: a result's length and
    its first bytes, written into the results pipe as a child would) leaves the executor's
    thread reading the rest for ever; the interpreter's exit joins that thread, so the server
    never stopped (a quick bot_load run, under load: "did not stop within 60 s of SIGTERM",
    its stacks in `_python_exit`). Closing the server's end of the pipe ends the read."""
    worker = await scoring_worker_with_a_child()
    executor = worker._executor
    reader_thread = executor._executor_manager_thread
    writer = executor._result_queue._writer
    os.write(writer.fileno(), struct.pack("!i", 1000) + b"half a result")
    worker.close()
    reader_thread.join(BOUND)
    assert not reader_thread.is_alive(), "the executor's thread still reads the cut result"
