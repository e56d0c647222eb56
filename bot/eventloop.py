"""An event loop with a fast lane: urgent work (Slack's requests, up to their ack) runs before
other work waiting on the loop.

asyncio runs ready callbacks first come, first served. With twenty ``/api/predict`` calls in
flight, every step of a click (its task waking after the body was read, after the answer's
fsync, after its ack) waited behind a step of each: at 1,000–1,600 predicts a second a click's
p99 was 116–259 ms with 10,000 and 100,000 items waiting, and is 28–41 ms in seven runs of
eight with the clicks' steps run first (``benchmarks/RESULTS.md``, "Predict and clicks as the
backlog grows"). :class:`FastLaneEventLoop` puts a callback whose
context has :data:`URGENT` set ahead of the others in the ready queue (behind the urgent ones
already there: first come, first served within the lane). The Slack edge sets it in the
task of each request it serves (``bot.server.slack_events``, ``bot.slack.connect``), tasks it
starts inherit it, and a listener clears it once it has acked (``bot.slack.acks``), so the
work after an ack (redraws, notes) waits its turn like the rest; work a request starts that
outlives it (a refresh, a retrain) is started outside the lane (:func:`background`). Nothing
is starved for long: urgent work is a few small steps per request, and Slack sends few.

``hitl serve`` runs on :class:`FastLaneEventLoop` (``bot.cli``); on any other loop
:data:`URGENT` is a flag nobody reads, and everything works as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")

URGENT: contextvars.ContextVar[bool] = contextvars.ContextVar("hitl_urgent", default=False)
"""Set in a task's context: the task's steps run before other ready callbacks."""


# The handle a thread's callback gets: 3.14's can be cancelled from another thread safely
_THREAD_SAFE_HANDLE: Any = getattr(asyncio.events, "_ThreadSafeHandle", asyncio.Handle)


class FastLaneEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop, with the callbacks of :data:`URGENT` contexts run first.

    Every ``call_soon`` (a task's next step, a future's callbacks) goes through ``_call_soon``,
    every ``call_soon_threadsafe`` (a worker thread's result) is this class's own, and every I/O
    callback goes through ``_add_callback``: asyncio's own methods, overridden to put an urgent
    handle ahead of every other waiting handle, behind the urgent ones already waiting (each
    ``collections.deque`` call is atomic for calls from other threads).
    ``tests/bot/test_eventloop.py`` checks the order on this Python."""

    def _call_soon(self, callback: Callable[..., Any], args: Any, context: Any) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._enqueue(handle)
        return handle

    def call_soon_threadsafe(
        self, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        # asyncio's own body through ``_enqueue``: from Python 3.14 it appends to the queue
        # itself, no longer through ``_call_soon``, and a worker thread's result for an urgent
        # caller (``to_thread``) would wait behind everything queued (gh-128340)
        self._check_closed()
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        handle = _THREAD_SAFE_HANDLE(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._enqueue(handle)
        self._write_to_self()
        return handle

    def _add_callback(self, handle: asyncio.Handle) -> None:
        if not handle._cancelled:
            self._enqueue(handle)

    def _enqueue(self, handle: asyncio.Handle) -> None:
        ready = self._ready
        if not handle._context.get(URGENT, False):
            ready.append(handle)
            return
        # Behind the urgent handles already at the front: the lane is first come, first served
        # too. asyncio relies on the order of callbacks: a future's run in the order they were
        # added, so a connecting socket's writer is removed (``_sock_write_done``) before the
        # task that awaited the connection wakes and gives the socket to its transport. Put at
        # the very front, they ran in reverse, and every new connection an urgent task opened
        # failed ("File descriptor 9 is used by transport"). The urgent handles at the front are
        # a few; a thread's ``call_soon_threadsafe`` meanwhile can at worst put this one a
        # place later.
        i = 0
        with contextlib.suppress(IndexError):  # the loop may pop the front meanwhile
            while ready[i]._context.get(URGENT, False):
                i += 1
        ready.insert(i, handle)


def urgent(on: bool = True) -> None:
    """From here on, the current task (and the tasks it starts) is urgent (or, with ``False``,
    no longer)."""
    URGENT.set(on)


def urgent_context() -> contextvars.Context:
    """A copy of the current context with :data:`URGENT` set: for a task that urgent callers
    wait on (``asyncio.create_task(..., context=urgent_context())``)."""
    context = contextvars.copy_context()
    context.run(URGENT.set, True)
    return context


def background(coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    """``asyncio.create_task`` for work that outlives the request that starts it (a refresh, a
    retrain, a scoring batch): never urgent, whoever starts it. A task otherwise inherits its
    creator's context, so a refresh started by a click would run in the fast lane ahead of
    everyone, clicks included."""
    context = contextvars.copy_context()
    context.run(URGENT.set, False)
    return asyncio.create_task(coro, name=name, context=context)


async def to_thread(func: Callable[..., T], *args: Any, executor: Executor | None = None) -> T:
    """``asyncio.to_thread``, whose result wakes the caller in the caller's context: an urgent
    caller is woken urgently. (asyncio's own hands the result back in a handle made in the
    worker thread, whose context is the thread's, so it would wait its turn.) ``executor``:
    threads of the caller's own instead of the loop's shared ones."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            value = func(*args)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            context.run(loop.call_soon_threadsafe, _settle, future, None, exc)
        else:
            context.run(loop.call_soon_threadsafe, _settle, future, value, None)

    loop.run_in_executor(executor, run)
    return await future


def _settle(future: asyncio.Future[T], value: T | None, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)  # type: ignore[arg-type]
