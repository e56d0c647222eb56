"""Socket Mode next to HTTP (the outside parity report "parity", D1-D3 and its observation on
the dispatcher): the real server's Socket Mode against tests/fake_socket_mode.py and the fake
Web API, both on 127.0.0.1.

Nothing sleeps to wait: each step waits for a condition (a log line, an ack, a connection)
with a bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bot.appkeys import RUNTIME
from bot.logs import LIBRARIES, REDACTOR
from bot.sandbox import FakeSlack
from bot.server import init_app
from bot.slack import connect
from bot.slack.connect import describe, start_socket_mode
from bot.slack.dispatch import Dispatcher
from tests import signing
from tests.bot.harness import (
    OPEN,
    Item,
    LogLines,
    make_settings,
    seed,
    socket_settings,
    socket_world,
    start_bot,
)
from tests.fake_slack import CHANNEL
from tests.fake_socket_mode import FakeSocketMode

TICKET = "SECRET-TICKET-1234"


class Lines(LogLines):
    """Every record at DEBUG and above under the given loggers, and a bounded wait for one."""


@pytest.fixture
def lines() -> Iterator[Lines]:
    """Every log record (the root logger: the bot's, slack_sdk's, Bolt's), whatever level an
    earlier test in this process left on the libraries' loggers (``bot.logs.configure``, run
    by a CLI test, sets them to WARNING or INFO)."""
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    libraries = {name: logging.getLogger(name).level for name in LIBRARIES}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in libraries:
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)
    for name, was in libraries.items():
        logging.getLogger(name).setLevel(was)


def ticket_url(base: str) -> str:
    """``base`` as apps.connections.open hands it out: with a ticket and the app's id."""
    return f"{base}?ticket={TICKET}&app_id=A0HITL"


# -- D1: the connection ticket stays out of the log and /healthz -----------------------------


def test_describe_keeps_a_urls_host_and_path_not_its_query():
    error = ValueError(
        "404, message='Invalid response status', "
        f"url='wss://wss-primary.slack.com/link/?ticket={TICKET}&app_id=A0HITL'"
    )
    line = describe(error)
    assert TICKET not in line and "app_id" not in line, line
    assert "url='wss://wss-primary.slack.com/link/?…'" in line, line
    assert describe(OSError("Cannot connect to host slack.com:443")) == (
        "OSError: Cannot connect to host slack.com:443"
    )


async def test_a_refused_handshake_on_reconnection_keeps_the_ticket_out_of_log_and_healthz(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    async with socket_world(fake_slack, tmp_path) as world:
        good = fake_slack.socket_url
        assert good is not None
        # Slack hands out a new URL; its handshake is refused (a proxy refusing the upgrade)
        fake_slack.socket_url = ticket_url(fake_slack.root_url + "/nolink/")
        await world.server.drop(world.server.live()[0])
        await lines.wait("cannot reconnect to Slack (WSServerHandshakeError")
        status, body = await world.healthz()
        assert "slack_problem" in body, body
        assert TICKET not in str(body), body
        assert "/nolink/" in body["slack_problem"], body  # where it failed stays
        fake_slack.socket_url = good
        await lines.wait("connected to Slack again")
        shown = [line for line in lines.said("", logging.WARNING) if TICKET in line]
        assert shown == [], shown


async def test_a_refused_handshake_at_start_keeps_the_ticket_out_of_the_log(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    server = FakeSocketMode()
    good = await server.start()
    fake_slack.socket_url = ticket_url(fake_slack.root_url + "/nolink/")
    settings = socket_settings(fake_slack, tmp_path)
    app = init_app(settings, run_background=False)
    try:
        async with TestServer(app, host="127.0.0.1"):
            task = asyncio.ensure_future(start_socket_mode(app, settings.slack_app_token))
            await lines.wait("Socket Mode: cannot connect to Slack (WSServerHandshakeError")
            fake_slack.socket_url = good
            socket_mode = await asyncio.wait_for(task, 5)
            await socket_mode.close()
    finally:
        await server.close()
    shown = [line for line in lines.said("", logging.WARNING) if TICKET in line]
    assert shown == [], shown
    assert lines.said("/nolink/?…", logging.WARNING), lines.all()


async def test_the_redactor_keeps_the_ticket_out_of_slack_sdks_debug_lines(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    # -vvv: slack_sdk logs apps.connections.open's answer, the wss URL with its ticket
    lines.addFilter(REDACTOR)
    async with socket_world(fake_slack, tmp_path) as world:
        fake_slack.socket_url = ticket_url(world.server.ws_url)
        await world.server.disconnect("refresh_requested")
        await world.server.wait_connected(count=2)
        await fake_slack.wait_for(lambda: world.opens() >= 2)
    about_url = [line for line in lines.said("ticket=") if "/link" in line]
    assert about_url, lines.all()  # the line is there, redacted
    assert all(TICKET not in line for line in about_url), about_url
    assert all("ticket=***" in line for line in about_url), about_url
    assert REDACTOR.redact(f"?ticket={TICKET}&app_id=A0") == "?ticket=***&app_id=A0"


# -- D2: an envelope no listener takes is not acknowledged, and the line says so -------------


async def test_an_unhandled_button_in_socket_mode_is_said_not_acknowledged(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    async with socket_world(fake_slack, tmp_path) as world:
        payload = signing.block_actions_payload("U0ANA", "other.app.button", "v")
        envelope = await world.server.send_envelope("interactive", payload)
        # slack_bolt logs this where an ack would be sent: nothing goes back
        await lines.wait("Unsuccessful Bolt execution result (status: 404")
        assert envelope not in world.server.acks
        [line] = lines.said("that this app does not handle", logging.WARNING)
        assert "other.app.button" in line
        assert "answered" not in line and "not acknowledged" in line, line


async def test_an_unhandled_button_over_http_is_said_answered_404(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    seed(tmp_path / "hitl.db", [Item("a", "x")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        response = await bot.action(signing.block_actions_payload("U0ANA", "other.app.button", "v"))
        assert response.status == 404
    [line] = lines.said("that this app does not handle", logging.WARNING)
    assert line.endswith("was answered 404"), line


# -- D3: a malformed envelope is one warning line, no traceback -----------------------------


async def test_a_malformed_envelope_is_one_warning_without_a_traceback(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    async with socket_world(fake_slack, tmp_path) as world:
        event = {
            "type": "event_callback",
            "event": {"type": "app_home_opened", "user": 7},  # a user that is not a string
            "event_id": "Ev1",
        }
        envelope = await world.server.send_envelope("events_api", event)
        await lines.wait("malformed Slack request: TypeError")
        [line] = lines.said("malformed Slack request", logging.WARNING)
        assert "events_api" in line and "not acknowledged" in line, line
        assert envelope not in world.server.acks  # as HTTP's 400: Slack may send it again
        assert lines.tracebacks() == [], lines.tracebacks()
        assert await world.command_acked(world.server.live()[0])  # the next one is served


# -- the dispatcher holds new questions while Socket Mode cannot connect ---------------------


async def test_no_question_is_posted_while_slack_refuses_the_socket_mode_connection(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    async with socket_world(fake_slack, tmp_path) as world:
        dispatcher = Dispatcher.of(world.app[RUNTIME])
        fake_slack.fail(OPEN, "invalid_auth", times=2)  # the app-level token was revoked
        fake_slack.fail(OPEN, mode="timeout")  # then an attempt held: the state stays
        await world.server.drop(world.server.live()[0])
        await lines.wait("SLACK_APP_TOKEN was refused by Slack (invalid_auth)")
        assert (await world.healthz())[1]["slack"] == "refused"
        assert await dispatcher.fill() == 0
        assert await dispatcher.fill() == 0
        assert fake_slack.messages(CHANNEL) == []  # nobody could answer it
        held = lines.said("no new question is posted", logging.WARNING)
        assert len(held) == 1 and "Slack refuses the connection" in held[0], lines.all()
        dispatcher.woken.clear()
        await fake_slack.wait_for(lambda: world.opens() >= 4)  # start, 2 refused, held
        fake_slack.release_timeouts()  # the operator fixed it
        await lines.wait("connected to Slack again")
        assert dispatcher.woken.is_set()  # the reconnection asks for a round
        assert await dispatcher.fill() == 1
        assert len(fake_slack.messages(CHANNEL)) == 1
        assert len(lines.said("new questions are posted again", logging.WARNING)) == 1


async def test_no_question_is_posted_once_an_outage_outlasts_the_grace_period(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
):
    async with socket_world(fake_slack, tmp_path) as world:
        dispatcher = Dispatcher.of(world.app[RUNTIME])
        fake_slack.fail(OPEN, mode="reset")  # Slack cannot be reached
        fake_slack.fail(OPEN, mode="timeout")
        await world.server.drop(world.server.live()[0])
        await lines.wait("retrying in")
        monkeypatch.setattr(connect, "SOCKET_GRACE", 0.0)  # the outage outlasts it
        assert await dispatcher.fill() == 0
        assert fake_slack.messages(CHANNEL) == []
        [held] = lines.said("no new question is posted", logging.WARNING)
        assert "no connection for over" in held
        await fake_slack.wait_for(lambda: world.opens() >= 3)  # start, reset, held
        fake_slack.release_timeouts()
        await lines.wait("connected to Slack again")
        assert await dispatcher.fill() == 1


async def test_http_mode_posts_as_before(fake_slack: FakeSlack, tmp_path: Path, lines: Lines):
    seed(tmp_path / "hitl.db", [Item("a", "x")])
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        assert await bot.dispatcher.fill() == 1
    assert not lines.said("no new question is posted"), lines.all()
