"""Events Slack delivers again are acted on once.

Slack sends an event again (over HTTP with ``X-Slack-Retry-Num`` 1, 2, 3, in Socket Mode with
the envelope's ``retry_attempt``; the same ``event_id``) when its first delivery was not
acknowledged in time, though that one may have been acted on. Each delivery ran the listeners
again: one ``app_uninstalled`` logged its error line three times, one ``app_home_opened``
published the Home three times. A redelivery is acked (200) and not acted on; a retry whose
first delivery this process never saw (a restart in between) is acted on; another event is.
Requests go through the real endpoint, signed, or through a local Socket Mode websocket."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from bot.server import RUNTIME
from tests import signing
from tests.bot.harness import SECRET, Bot, Item, make_settings, seed, socket_world, start_bot

UNINSTALLED = "Slack says this app was uninstalled"


async def deliver(bot: Bot, envelope: dict, retry: int = 0) -> None:
    """One delivery of ``envelope`` over HTTP, attempt ``retry`` (0: the first), acked 200."""
    body, headers = signing.signed_event(envelope, SECRET)
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    response = await bot.post(body, headers)
    assert response.status == 200, await response.text()
    await bot.settled()


def said(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= level and r.name.startswith("bot")
    ]


def publishes(fake: FakeSlack) -> int:
    return len(fake.calls_to("views.publish"))


async def test_an_app_home_opened_delivered_three_times_publishes_the_home_once(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    seed(tmp_path / "hitl.db", [Item("i0", "text refund")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        opened = signing.app_home_opened_event("U0ANA")
        for retry in (0, 1, 2):
            await deliver(bot, opened, retry)
        assert publishes(fake_slack) == 1
        assert any("again" in line for line in said(caplog, logging.DEBUG))
        await deliver(bot, signing.app_home_opened_event("U0ANA"))  # another opening
        assert publishes(fake_slack) == 2
        # The first delivery came before a restart: the retry is all this process gets.
        await deliver(bot, signing.app_home_opened_event("U0ANA"), retry=1)
        assert publishes(fake_slack) == 3
        assert said(caplog, logging.WARNING) == []


async def test_an_app_uninstalled_delivered_three_times_is_said_once(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    seed(tmp_path / "hitl.db", [Item("i0", "text refund")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        caplog.clear()
        uninstalled = signing.event_envelope({"type": "app_uninstalled", "event_ts": "1.1"})
        for retry in (0, 1, 2):
            await deliver(bot, uninstalled, retry)
        lines = [line for line in said(caplog) if UNINSTALLED in line]
        assert len(lines) == 1, lines
        assert said(caplog, logging.WARNING) == lines
        again = signing.event_envelope({"type": "app_uninstalled", "event_ts": "1.2"})
        await deliver(bot, again)  # another event: said again
        assert len([line for line in said(caplog) if UNINSTALLED in line]) == 2


async def test_an_event_redelivered_over_socket_mode_is_acked_and_acted_on_once(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    async with socket_world(fake_slack, tmp_path) as world:
        rt = world.app[RUNTIME]

        async def send(envelope: dict, retry: int) -> None:
            reason = "timeout" if retry else ""
            sent = await world.server.send_envelope(
                "events_api", envelope, retry_attempt=retry, retry_reason=reason
            )
            await world.server.next_ack(sent)
            await rt.background.drain(10.0)

        opened = signing.app_home_opened_event("U0ANA")
        uninstalled = signing.event_envelope({"type": "app_uninstalled", "event_ts": "1.1"})
        for retry in (0, 1, 2):
            await send(opened, retry)
            await send(uninstalled, retry)
        assert publishes(fake_slack) == 1
        assert len([line for line in said(caplog) if UNINSTALLED in line]) == 1
        await send(signing.app_home_opened_event("U0ANA"), 0)
        assert publishes(fake_slack) == 2
