"""An ack leaves the moment a listener makes it.

Bolt runs a listener in a task of its own and checks every 10 ms whether it has acked
(``slack_bolt.listener.asyncio_runner``): a click that acks after 1 ms was answered after 10,
and on a busy loop the poll's timer waited its turn behind everything else.
:func:`dispatch_until_acked` answers as soon as the listener's ``ack()`` returns (listeners get
a :class:`SignallingAck` from ``bot.slack.app.track_listener``), with the response that ack
made, which is what Bolt would return at its next poll; Bolt's dispatch finishes on its own.
A listener that has not acked when Bolt stops waiting (its 3 s) is named by
:func:`unacked_listeners`, so that the request is not said to be one no listener takes.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.response import BoltResponse

from bot.eventloop import urgent

logger = logging.getLogger(__name__)

_ACKED: contextvars.ContextVar[asyncio.Future[BoltResponse] | None] = contextvars.ContextVar(
    "hitl_acked", default=None
)
# The listeners that took the request being dispatched (their names), in start order.
_STARTED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "hitl_started", default=None
)


class SignallingAck:
    """Bolt's ``ack``, which also tells :func:`dispatch_until_acked` that the response is
    ready, and makes the rest of the listener no longer urgent (``bot.eventloop``)."""

    def __init__(self, ack: Any, acked: asyncio.Future[BoltResponse] | None) -> None:
        self._ack = ack
        self._acked = acked

    @property
    def response(self) -> BoltResponse | None:
        return self._ack.response

    async def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        response = await self._ack(*args, **kwargs)
        urgent(False)  # what the listener does after its ack waits its turn
        if self._acked is not None and not self._acked.done():
            self._acked.set_result(self._ack.response)
        return response


def signalling(ack: Any, listener: str = "") -> SignallingAck:
    """Wrap the ``ack`` Bolt gave a listener (see :class:`SignallingAck`); ``listener``, its
    name, is recorded as having taken the request (:func:`unacked_listeners`)."""
    started = _STARTED.get()
    if listener and started is not None:
        started.append(listener)
    return SignallingAck(ack, _ACKED.get())


def unacked_listeners() -> list[str]:
    """In Bolt's dispatch of a request (its error handler): the listeners that took it and
    had not acked when Bolt stopped waiting for them (a request Bolt then calls unhandled)."""
    acked = _ACKED.get()
    if acked is not None and acked.done():
        return []
    return list(_STARTED.get() or [])


async def dispatch_until_acked(
    dispatch: Callable[[], Awaitable[BoltResponse | None]],
    keep: Callable[[asyncio.Task[Any]], None],
) -> BoltResponse | None:
    """Run Bolt's ``dispatch()``; return the response of the first ``ack`` a listener makes,
    or Bolt's own response if Bolt returns first (no listener acked through a
    :class:`SignallingAck`: a middleware's answer, no listener, an error). Once acked, Bolt's
    dispatch goes on in its task, handed to ``keep`` so that shutdown waits for it."""
    acked: asyncio.Future[BoltResponse] = asyncio.get_running_loop().create_future()
    token, started = _ACKED.set(acked), _STARTED.set([])
    try:
        task = asyncio.ensure_future(dispatch())  # its listeners' context holds ``acked``
    finally:
        _STARTED.reset(started)
        _ACKED.reset(token)
    try:
        await asyncio.wait({task, acked}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task.done() or not acked.done():
        acked.cancel()
        return task.result()
    keep(task)
    task.add_done_callback(_log_failure)
    return acked.result()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("Bolt's dispatch failed after the ack: %r", task.exception())
