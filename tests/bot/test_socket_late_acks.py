"""A click whose ack comes after Bolt's 3 s (a slow disk under the fsync, a long lock wait):
Bolt gives up on the listener and routes the request as one no listener takes. The log said
"a Slack block_actions (hitl.q.label.0) that this app does not handle was not acknowledged",
about the bot's own answer button, although the click was taken, and is stored once it is
written. The real server's Socket Mode against tests/fake_socket_mode.py, and its HTTP
endpoint with signed requests; Bolt's 3 s is made small on the app's listeners instead of
waited out, and the fsync is held, not slept on.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.appkeys import BOLT, RUNTIME
from bot.sandbox import FakeSlack
from bot.slack.dispatch import Dispatcher
from tests.bot.harness import Item, LogLines, make_settings, seed, socket_world, start_bot
from tests.bot.test_socket_faults import click_payload
from tests.fake_slack import CHANNEL


@pytest.fixture
def lines() -> Any:
    handler = LogLines()
    logger = logging.getLogger("bot")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def slow_disk(app: Any, rt: Any) -> Any:
    """Bolt's 3 s made small, and each click's fsync held until the returned function is
    called (which lets it go on, and the next ones through)."""
    for listener in app[BOLT]._async_listeners:
        listener.ack_timeout = 0.05
    released = asyncio.Event()
    synced = rt.store.synced

    async def held() -> Any:
        await released.wait()
        return await synced()

    rt.store.synced = held

    def release() -> None:
        rt.store.synced = synced
        released.set()

    return release


async def test_a_click_acked_too_late_is_said_late_not_unhandled_and_stored_once(
    fake_slack: FakeSlack, tmp_path: Path, lines: LogLines
):
    async with socket_world(fake_slack, tmp_path) as world:
        rt = world.app[RUNTIME]
        await Dispatcher.of(rt).fill()
        await rt.background.drain(10.0)
        message = fake_slack.messages(CHANNEL)[0]
        release = slow_disk(world.app, rt)
        payload = click_payload(message, "U0ANA")
        sent = await world.server.send_envelope("interactive", payload)
        await lines.wait("not acknowledged")
        release()
        await rt.background.drain(10.0)
        assert sent not in world.server.acks  # Slack has shown the person it failed
        [line] = [r for r in lines.said("not acknowledged", logging.WARNING)]
        assert "does not handle" not in line, line
        assert line.startswith("on_label_button did not acknowledge a Slack block_actions"), line
        assert rt.store.count_answers() == 1
        again = await world.server.send_envelope("interactive", payload)  # clicked again
        await world.server.next_ack(again)
        assert rt.store.count_answers() == 1


async def test_a_click_acked_too_late_over_http_is_said_late_not_unhandled(
    fake_slack: FakeSlack, tmp_path: Path, lines: LogLines
):
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    settings = make_settings(fake_slack, tmp_path)
    async for bot in start_bot(fake_slack, settings):
        await bot.dispatcher.fill()
        await bot.settled()
        message = bot.posted()[0]
        release = slow_disk(bot.http.server.app, bot.rt)
        payload = bot.button_payload(message, "U0ANA", bot.first_label(message))
        response = await bot.action(payload)
        assert response.status == 404  # Bolt's answer to a listener that did not ack
        release()
        await bot.settled()
        [line] = lines.said("Slack shows the person it failed", logging.WARNING)
        assert line.startswith("on_label_button did not acknowledge a Slack block_actions"), line
        assert "was answered 404" in line and "does not handle" not in line, line
        assert bot.store.count_answers() == 1
        response = await bot.action(payload)  # clicked again
        assert response.status == 200 and bot.store.count_answers() == 1
