"""A retry waits its backoff after the attempt ended (README "Webhooks": "Errors, other statuses
and timeouts are retried after 10 s, 20 s, 40 s, …").

The wait was counted from the claim, when the attempt began: a receiver that did not answer
was hit at 0 s, timed out at 10 s and hit again at 10.6 s (an outside test), so a hung or
overloaded receiver got no rest before its first retry. Now the retry is due the backoff after
the attempt ended: at 20 s.

The runtime's clock is a hand-moved one: the receiver moves it on as it takes a request (the
time the attempt "takes"), and the sender's own timeout is short, so nothing here waits on the
wall clock's seconds; every time compared is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.api import webhooks
from bot.api.webhooks import BASE_DELAY, TIMEOUT, deliver_due, run_deliveries
from bot.sandbox import FakeSlack
from tests.bot.harness import Bot
from tests.bot.test_api import T0, post_json, start_api
from tests.bot.test_webhooks import LOOPBACK

GUARD = 60.0  # seconds: only a failing test waits this long


@dataclass
class Clock:
    """The runtime's clock, moved by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class SlowReceiver:
    """A receiver that takes ``takes`` seconds (on ``clock``) over each request, then answers
    ``status``, or never (None: it holds the request until the test ends)."""

    clock: Clock
    takes: float
    status: int | None
    url: str = ""
    arrived: list[datetime] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrived.append(self.clock.now)
        self.clock.now += timedelta(seconds=self.takes)
        if self.status is None:
            await self.release.wait()
        return web.Response(status=self.status or 204)


async def serve(receiver: SlowReceiver) -> AsyncIterator[SlowReceiver]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        receiver.url = str(server.make_url("/hook"))
        try:
            yield receiver
        finally:
            receiver.release.set()


async def decided(bot: Bot, url: str) -> None:
    response = await post_json(
        bot, "/api/predict", {"text": "Refund me", "id": "T-1", "callback_url": url}
    )
    assert response.status == 200
    result = bot.store.record_answer("T-1", "U1", "billing", source="button", dedupe_key="k")
    assert result.status == "resolved"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def watch_outcomes(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set each time the store records how an attempt ended (the real one runs)."""
    recorded = asyncio.Event()
    finish: Callable[..., None] = bot.store.finish_delivery

    def finished(*args: Any, **kwargs: Any) -> None:
        finish(*args, **kwargs)
        recorded.set()

    monkeypatch.setattr(bot.store, "finish_delivery", finished)
    return recorded


@pytest.mark.parametrize(
    ("takes", "status", "error"),
    [
        (TIMEOUT, None, "no answer within 0.2 s"),  # no answer: the sender's timeout ends it
        (3.0, 503, "HTTP 503"),  # an error answered late
    ],
)
async def test_the_servers_worker_retries_a_backoff_after_the_attempt_ended(
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    takes: float,
    status: int | None,
    error: str,
):
    monkeypatch.setattr(webhooks, "TIMEOUT", 0.2)  # the worker reads it as it starts
    clock = Clock()
    async for receiver in serve(SlowReceiver(clock, takes, status)):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            bot.rt.clock = clock
            bot.store.now = lambda: iso(clock.now)
            await decided(bot, receiver.url)
            recorded = watch_outcomes(bot, monkeypatch)
            worker = asyncio.create_task(run_deliveries(bot.rt))
            try:
                await asyncio.wait_for(recorded.wait(), GUARD)
            finally:
                worker.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await worker
            [row] = bot.store.deliveries("T-1")
    assert receiver.arrived == [T0]
    ended = T0 + timedelta(seconds=takes)
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, error)
    # was T0 + 10 s: for a timeout of 10 s, straight after it
    assert row["next_attempt_at"] == iso(ended + timedelta(seconds=BASE_DELAY))


async def test_a_round_passed_its_time_counts_the_backoff_from_the_attempts_end(
    fake_slack: FakeSlack, tmp_path: Path
):
    clock = Clock()
    async for receiver in serve(SlowReceiver(clock, TIMEOUT, None)):
        async for bot in start_api(fake_slack, tmp_path, **LOOPBACK):
            bot.rt.clock = clock
            bot.store.now = lambda: iso(clock.now)
            await decided(bot, receiver.url)
            claimed_at = T0 + timedelta(minutes=5)  # ``now`` as a test passes it
            done = await deliver_due(bot.rt, now=claimed_at, base=10.0, answer_within=0.2)
            assert len(done.retrying) == 1
            [row] = bot.store.deliveries("T-1")
            assert row["next_attempt_at"] == iso(claimed_at + timedelta(seconds=TIMEOUT + 10.0))
            # the second failure waits 20 s after its own end
            clock.now = claimed_at + timedelta(seconds=TIMEOUT + 10.0)
            second = await deliver_due(
                bot.rt, now=claimed_at + timedelta(seconds=TIMEOUT + 10.0), answer_within=0.2
            )
            assert len(second.retrying) == 1
            [row] = bot.store.deliveries("T-1")
    assert row["next_attempt_at"] == iso(claimed_at + timedelta(seconds=2 * TIMEOUT + 30.0))
