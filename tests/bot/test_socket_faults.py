"""Socket Mode under faults (the outside test report "sockt", defects 1-7): the real server's
Socket Mode against tests/fake_socket_mode.py and the fake Web API, both on 127.0.0.1.

Nothing sleeps to wait: each step waits for a condition (a connection, an ack, a call, a log
line) with a bound, and the timeouts and the grace period are made small where a fault needs
one to pass. The tests after those are for the review of that fix ("revsock", defects 1-5).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import types
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import bot.server as server_module
from bot.appkeys import RUNTIME
from bot.errors import ConfigError
from bot.sandbox import FakeSlack
from bot.server import init_app
from bot.slack import connect
from bot.slack.connect import SocketMode, start_socket_mode
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
)
from tests.fake_slack import CHANNEL
from tests.fake_socket_mode import BlackHole, FakeSocketMode


class Lines(LogLines):
    """The records of the Socket Mode loggers, and a bounded wait for one."""

    LOGGERS = ("bot.slack.connect", "bot.socket_mode", "bot.server")
    WAIT = 30.0  # a bound against hanging: the waits end at their line

    def library_noise(self) -> list[str]:
        """slack_sdk's own lines at WARNING or above (raw errors, tracebacks)."""
        return [
            r.getMessage()
            for r in self.records
            if r.name == "bot.socket_mode" and r.levelno >= logging.WARNING
        ]


@pytest.fixture
def lines() -> Any:
    handler = Lines()
    loggers = [logging.getLogger(name) for name in Lines.LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handshake or apps.connections.open gives up after 0.3 s, not SLACK_TIMEOUT's 10."""
    monkeypatch.setattr(connect, "CONNECT_TIMEOUT", 0.3, raising=False)


# -- 1. overlapping forced reconnects -------------------------------------------------------


async def test_two_disconnects_while_apps_connections_open_is_slow_leave_one_connection_read(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
):
    # slack_sdk waited 5 s for its lock before it connected all the same; 0.05 s here, so that
    # the overlap comes at once (the new code waits for no such lock)
    import slack_sdk.socket_mode.async_client as library

    quick = types.ModuleType("asyncio")
    quick.__dict__.update(vars(asyncio))

    async def wait_for(awaitable: Any, timeout: float | None) -> Any:  # noqa: ASYNC109
        return await asyncio.wait_for(awaitable, min(timeout or 0.05, 0.05))

    quick.wait_for = wait_for  # type: ignore[attr-defined]
    monkeypatch.setattr(library, "asyncio", quick)

    async with socket_world(fake_slack, tmp_path) as world:
        first = world.server.connections_made[0]
        handled = asyncio.Event()
        seen: list[str] = []
        listeners = world.client.run_message_listeners

        async def counted(message: dict, raw: str) -> None:
            try:
                await listeners(message, raw)
            finally:
                if message.get("type") == "disconnect":
                    seen.append(message.get("reason"))
                    if len(seen) == 2:
                        handled.set()

        world.client.run_message_listeners = counted
        fake_slack.fail(OPEN, mode="timeout", times=2)  # Slack is slow to hand out a URL
        await world.server.disconnect("warning", on=first)
        await world.server.disconnect("refresh_requested", on=first)
        # both disconnects handled, or (the old code) a second connection asked for at once
        third = asyncio.ensure_future(fake_slack.wait_for(lambda: world.opens() >= 3))
        both = asyncio.ensure_future(handled.wait())
        await asyncio.wait({third, both}, timeout=3, return_when=asyncio.FIRST_COMPLETED)
        third.cancel()
        both.cancel()
        await fake_slack.wait_for(lambda: world.opens() >= 2)
        fake_slack.release_timeouts()

        made = world.server.connections_made
        # every URL handed out was used, and the first connection closed
        await world.server.wait_for(lambda: len(made) >= world.opens() and not first.open)
        live = world.server.live()
        acked = [await world.command_acked(link) for link in live]
        assert len(live) == 1 and acked == [True], (
            f"{len(made)} connections made, {len(live)} left open, acked on each: {acked}"
        )
        assert not first.open
        assert not lines.tracebacks() and not lines.library_noise(), lines.all()


# -- 2. a handshake that never completes -----------------------------------------------------


async def test_a_handshake_that_never_finishes_is_one_line_then_a_new_url_connects(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, fast: None
):
    hole = BlackHole()
    await hole.start()
    try:
        async with socket_world(fake_slack, tmp_path) as world:
            good, fake_slack.socket_url = fake_slack.socket_url, hole.url
            await world.server.disconnect("refresh_requested")
            await fake_slack.wait_for(lambda: world.opens() >= 2)  # answered: the stuck URL
            fake_slack.socket_url = good
            try:
                await world.server.wait_connected(count=2, timeout=3)
            except TimeoutError:
                raise AssertionError(
                    f"no new connection 3 s after a stuck handshake: {lines.all()}"
                ) from None
            await lines.wait("connected to Slack again")
            [line] = lines.said("cannot reconnect")
            assert "TimeoutError: the websocket handshake did not finish within 0.3 s" in line
            assert "retrying in" in line
            made = world.server.connections_made
            await world.server.wait_for(lambda: world.server.live() == made[1:])  # old closed
            assert await world.command_acked(world.server.live()[0])
            assert not lines.tracebacks() and not lines.library_noise(), lines.all()
    finally:
        await hole.close()


async def test_a_handshake_that_never_finishes_at_start_is_one_line_then_the_next_attempt(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, fast: None
):
    hole = BlackHole()
    await hole.start()
    server = FakeSocketMode()
    good = await server.start()
    fake_slack.socket_url = hole.url
    settings = socket_settings(fake_slack, tmp_path)
    app = init_app(settings, run_background=False)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    starting = asyncio.ensure_future(start_socket_mode(app, settings.slack_app_token))
    try:
        await fake_slack.wait_for(lambda: len(fake_slack.calls_to(OPEN)) >= 1)
        fake_slack.socket_url = good
        done, _ = await asyncio.wait({starting}, timeout=3)
        assert done, f"not connected 3 s after a stuck handshake: {lines.all()}"
        socket_mode = starting.result()
        await socket_mode.close()
        [line] = lines.said("retrying in")
        assert line.startswith("Socket Mode: cannot connect to Slack (TimeoutError: the websocket")
        assert server.connections == 1
    finally:
        starting.cancel()
        with contextlib.suppress(BaseException):
            await starting
        await runner.cleanup()
        await server.close()
        await hole.close()


# -- 3 and 4. /healthz and refusals after start ----------------------------------------------


async def test_a_token_refused_after_start_is_said_once_and_healthz_answers_503(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    async with socket_world(fake_slack, tmp_path) as world:
        status, body = await world.healthz()
        assert (status, body.get("slack")) == (200, "connected"), body
        fake_slack.fail(OPEN, "invalid_auth", times=4)  # the app-level token was revoked
        fake_slack.fail(OPEN, mode="timeout")  # then an attempt held: the state stays
        await world.server.drop(world.server.connections_made[0])
        await fake_slack.wait_for(lambda: world.opens() >= 6, timeout=3)  # start, 4, held
        refused = lines.said("SLACK_APP_TOKEN was refused by Slack (invalid_auth)")
        assert len(refused) == 1, lines.all()  # said once while it lasts
        assert "App-Level Tokens" in refused[0]
        status, body = await world.healthz()
        assert status == 503 and body["ok"] is False
        assert body["slack"] == "refused"
        assert body["slack_problem"].startswith("SLACK_APP_TOKEN was refused by Slack")
        fake_slack.release_timeouts()  # the operator fixed it
        await lines.wait("connected to Slack again")
        status, body = await world.healthz()
        assert (status, body["slack"]) == (200, "connected") and "slack_problem" not in body
        assert await world.command_acked(world.server.live()[0])
        assert not lines.tracebacks() and not lines.library_noise(), lines.all()


async def test_socket_mode_turned_off_after_start_is_said_once_and_healthz_answers_503(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    async with socket_world(fake_slack, tmp_path) as world:
        fake_slack.fail(OPEN, "not_enabled", times=3)
        fake_slack.fail(OPEN, mode="timeout")
        await world.server.disconnect("link_disabled")
        await lines.wait("Socket Mode is not enabled for this app")
        await fake_slack.wait_for(lambda: world.opens() >= 5, timeout=3)  # start, 3, held
        said = lines.said("Socket Mode is not enabled for this app")
        assert len(said) == 1, lines.all()
        assert "unset SLACK_APP_TOKEN" in said[0]
        status, body = await world.healthz()
        assert (status, body["slack"]) == (503, "refused")
        assert body["slack_problem"].startswith("Socket Mode is not enabled for this app")
        fake_slack.release_timeouts()
        await lines.wait("connected to Slack again")
        assert (await world.healthz())[0] == 200
        assert not lines.tracebacks() and not lines.library_noise(), lines.all()


async def test_healthz_names_an_outage_and_answers_503_past_the_grace_period(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(connect, "SOCKET_GRACE", 3600.0, raising=False)
    async with socket_world(fake_slack, tmp_path) as world:
        fake_slack.fail(OPEN, mode="reset")  # Slack cannot be reached
        fake_slack.fail(OPEN, mode="timeout")
        await world.server.drop(world.server.connections_made[0])
        await fake_slack.wait_for(lambda: world.opens() >= 3, timeout=3)
        await lines.wait("retrying in")
        status, body = await world.healthz()
        assert status == 200, body  # within the grace period
        assert body["slack"].startswith("reconnecting since ")
        assert body["slack_problem"].startswith("cannot reconnect to Slack (")
        monkeypatch.setattr(connect, "SOCKET_GRACE", 0.0)  # the outage outlasts it
        status, body = await world.healthz()
        assert status == 503 and body["slack"].startswith("reconnecting since "), body
        fake_slack.release_timeouts()
        await lines.wait("connected to Slack again")
        status, body = await world.healthz()
        assert (status, body["slack"]) == (200, "connected")


async def test_healthz_in_http_mode_has_no_slack_field(fake_slack: FakeSlack, tmp_path: Path):
    seed(tmp_path / "hitl.db", [Item("a", "x")])
    app = init_app(make_settings(fake_slack, tmp_path), run_background=False)
    async with TestServer(app, host="127.0.0.1") as server, TestClient(server) as http:
        response = await http.get("/healthz")
        body = await response.json()
    assert response.status == 200 and "slack" not in body and "slack_problem" not in body


# -- 5. one line per problem, and one when it is back ---------------------------------------


async def test_a_failed_reconnection_is_one_line_and_one_when_it_is_back(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    async with socket_world(fake_slack, tmp_path) as world:
        fake_slack.fail(OPEN, "service_unavailable", status=503)
        await world.server.disconnect("refresh_requested")
        await lines.wait("connected to Slack again")
        [line] = lines.said("cannot reconnect")
        assert line.startswith("Socket Mode: cannot reconnect to Slack (Slack said ")
        assert "retrying in 0.01 s" in line
        assert await world.command_acked(world.server.live()[-1])
        assert not lines.tracebacks() and not lines.library_noise(), lines.all()


async def test_a_dropped_connection_is_said_once_it_is_back(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    async with socket_world(fake_slack, tmp_path) as world:
        await world.server.drop(world.server.connections_made[0])
        await lines.wait("connected to Slack again")
        [line] = lines.said("connected to Slack again")
        assert line.startswith("Socket Mode: the connection closed; connected to Slack again")
        await world.server.wait_connected(count=2)
        assert await world.command_acked(world.server.live()[-1])
        assert not lines.tracebacks() and not lines.library_noise(), lines.all()


async def test_an_ack_that_cannot_be_sent_is_one_line_without_a_traceback(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    async with socket_world(fake_slack, tmp_path, connect_retry=60.0) as world:
        fake_slack.fail(OPEN, mode="reset")  # no connection to send the ack on
        first = world.server.connections_made[0]
        await world.server.drop(first)
        await world.server.wait_for(lambda: not first.open)
        # The client's side of the close, not the server's: until the bot has read the close
        # (its attempt to reconnect, refused, says so), an ack is written into the old socket
        # as into a live one, and nothing fails (on a busy machine, 4 runs in 6 went so).
        await lines.wait("cannot reconnect to Slack")
        envelope = {
            "envelope_id": "e-lost",
            "type": "slash_commands",
            "payload": signing.command_fields("stats"),
            "accepts_response_payload": True,
        }
        await world.client.run_message_listeners(envelope, json.dumps(envelope))
        said = lines.said("could not be sent")
        assert len(said) == 1, lines.all()
        assert said[0].startswith("Socket Mode: the ack of envelope e-lost (slash_commands)")
        assert not lines.tracebacks() and not lines.library_noise(), lines.all()


# -- 6. a shutdown lets the clicks it took finish and ack ------------------------------------


def click_payload(message: dict, user: str) -> dict:
    block = next(b for b in message["blocks"] if b.get("block_id", "").startswith("q:"))
    button = next(e for e in block["elements"] if e.get("action_id") == "hitl.q.label.0")
    return signing.block_actions_payload(
        user,
        button["action_id"],
        button["value"],
        message_ts=message["ts"],
        block_id=block["block_id"],
        message=message,
    )


async def test_a_shutdown_acks_the_clicks_in_flight_before_it_closes_the_socket(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
):
    started: list[SocketMode] = []

    async def kept(app: web.Application, app_token: str) -> SocketMode:
        started.append(await start_socket_mode(app, app_token))
        return started[-1]

    monkeypatch.setattr(server_module, "start_socket_mode", kept)
    server = FakeSocketMode()
    fake_slack.socket_url = await server.start()
    seed(tmp_path / "hitl.db", [Item(f"i{k}", f"text number {k}") for k in range(3)])
    settings = make_settings(
        fake_slack,
        tmp_path,
        slack_app_token=fake_slack.app_token,
        slack_signing_secret=None,
        max_open=3,
    )

    def configure(rt: Any) -> None:
        Dispatcher.of(rt).post_interval = 0.0

    app = init_app(settings, run_background=True, configure=configure, retry_base=0.01)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()  # connects, as `hitl serve` does
    stopping: asyncio.Future | None = None
    try:
        rt = app[RUNTIME]
        await fake_slack.wait_for(lambda: len(fake_slack.messages(CHANNEL)) >= 3, timeout=10)
        # each click waits, its answer stored, for the store to say it is on disk
        entered: list[None] = []
        all_entered, release = asyncio.Event(), asyncio.Event()
        synced = rt.store.synced

        async def held() -> Any:
            entered.append(None)
            if len(entered) == 3:
                all_entered.set()
            await release.wait()
            return await synced()

        rt.store.synced = held
        envelopes = []
        for k, message in enumerate(fake_slack.messages(CHANNEL)[:3]):
            payload = click_payload(message, f"U0ANA{k}")
            envelopes.append(await server.send_envelope("interactive", payload))
        await asyncio.wait_for(all_entered.wait(), 3)
        receiver = started[0].client.message_receiver
        stopping = asyncio.ensure_future(runner.cleanup())  # SIGTERM
        await asyncio.wait({receiver}, timeout=3)  # it reads nothing more
        assert receiver.done()
        release.set()
        await asyncio.wait_for(stopping, 10)
        acked = [envelope in server.acks for envelope in envelopes]
        assert acked == [True, True, True], f"acked: {acked}; {lines.all()}"
        assert not lines.tracebacks(), lines.all()
    finally:
        if stopping is None:
            await runner.cleanup()
        await server.close()


# -- 7. a rate limit at start ----------------------------------------------------------------


async def test_a_rate_limited_connection_at_start_says_how_long_it_waits(
    fake_slack: FakeSlack,
    tmp_path: Path,
    lines: Lines,
    monkeypatch: pytest.MonkeyPatch,
):
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float, result: Any = None) -> Any:
        if delay > 0:
            waits.append(delay)
        return await real_sleep(0, result)

    server = FakeSocketMode()
    fake_slack.socket_url = await server.start()
    settings = make_settings(
        fake_slack, tmp_path, slack_app_token=fake_slack.app_token, connect_retry=0.25
    )
    rt = types.SimpleNamespace(settings=settings, client=server_module.make_client(settings))
    fake_slack.fail(OPEN, "ratelimited", status=429, retry_after=20)
    socket_mode = SocketMode(None, fake_slack.app_token, rt)
    try:
        monkeypatch.setattr(connect.asyncio, "sleep", recorded)
        await socket_mode.connect()
        monkeypatch.undo()
        said = lines.said("retrying in")
        assert len(said) == 1, f"lines {said}, waits {waits}"
        assert said[0] == (
            "Socket Mode: cannot connect to Slack (Slack said ratelimited: Slack rate-limits this"
            " call, Retry-After 20 s); retrying in 20 s"
        )
        assert waits[0] == 20 and len(fake_slack.calls_to(OPEN)) == 2
    finally:
        monkeypatch.undo()
        await socket_mode.close()
        await server.close()


# -- the review "revsock" of the fix above (defects 1-5) -------------------------------------


@pytest.fixture(autouse=True)
def short_old_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replaced connection is read for 0.05 s, not OLD_GRACE's second, before it is closed."""
    monkeypatch.setattr(connect, "OLD_GRACE", 0.05, raising=False)


@pytest.mark.parametrize("how", ["close", "too_many_websockets"])
async def test_connections_that_end_as_soon_as_made_back_off_and_are_said_once(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch, how: str
):
    # each new connection is closed right after its hello, or told too_many_websockets (another
    # copy of the app holds Slack's 10): the old code reconnected ~76 times a second, each time
    # "connected to Slack again"
    async with socket_world(fake_slack, tmp_path, connect_retry=0.02) as world:
        server = world.server

        async def end_at_once(link: Any) -> None:
            if how == "close":
                await link.socket.close()
            else:
                await server.disconnect("too_many_websockets", on=link)

        server.on_connect = end_at_once
        await end_at_once(server.connections_made[0])
        made = server.connections_made
        await server.wait_for(lambda: len(made) >= 7, timeout=5)
        # the first reconnection at once, then 0.02, 0.04, 0.08, 0.16, 0.32 s between two
        gaps = [later.opened_at - link.opened_at for link, later in itertools.pairwise(made)]
        assert gaps[-1] >= 0.3, f"no backoff: {[round(g, 3) for g in gaps]}"
        flapping = lines.said("each new connection ends within 30.0 s")
        assert len(flapping) == 1, lines.all()
        assert "reconnecting with backoff" in flapping[0]
        assert len(lines.said("connected to Slack again")) <= 1, lines.all()  # the first drop
        status, body = await world.healthz()
        assert status == 200 and body["slack"].startswith("reconnecting since "), body
        assert body["slack_problem"].startswith("each new connection ends within"), body
        said = len(lines.said("connected to Slack again"))
        server.on_connect = None  # Slack keeps the next one
        monkeypatch.setattr(connect, "MIN_LIFETIME", 0.2)
        await lines.wait("connected to Slack again", count=said + 1, timeout=5)
        assert lines.said("connected to Slack again")[-1].startswith(
            "Socket Mode: connected to Slack again after "
        )
        status, body = await world.healthz()
        assert (status, body["slack"]) == (200, "connected"), body
        await server.wait_for(lambda: len(server.live()) == 1)
        assert await world.command_acked(server.live()[0])
        assert len(lines.said("each new connection ends within")) == 1, lines.all()
        assert not lines.tracebacks() and not lines.library_noise(), lines.all()


async def test_a_page_that_is_not_slacks_from_apps_connections_open_is_no_refusal(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    async with socket_world(fake_slack, tmp_path) as world:
        fake_slack.fail(OPEN, mode="text", status=403, times=2)  # a proxy's error page
        fake_slack.fail(OPEN, mode="timeout")
        await world.server.drop(world.server.connections_made[0])
        await fake_slack.wait_for(lambda: world.opens() >= 4, timeout=3)  # start, 2 pages, held
        said = lines.said("answered HTTP 403 without Slack's JSON")
        assert len(said) == 2, lines.all()
        assert said[0].startswith("Socket Mode: cannot reconnect to Slack (SLACK_API_URL (")
        assert not lines.said("refused"), lines.all()
        status, body = await world.healthz()
        assert status == 200 and body["slack"].startswith("reconnecting since "), body
        assert "answered HTTP 403 without Slack's JSON" in body["slack_problem"]
        fake_slack.release_timeouts()
        await lines.wait("connected to Slack again")
        assert (await world.healthz())[1]["slack"] == "connected"


async def test_a_page_that_is_not_slacks_at_start_names_slack_api_url_not_the_token(
    fake_slack: FakeSlack, tmp_path: Path
):
    settings = make_settings(fake_slack, tmp_path, slack_app_token=fake_slack.app_token)
    rt = types.SimpleNamespace(settings=settings, client=server_module.make_client(settings))
    fake_slack.fail(OPEN, mode="text", status=403)
    socket_mode = SocketMode(None, fake_slack.app_token, rt)
    try:
        with pytest.raises(ConfigError) as caught:
            await socket_mode.connect()
        [line] = caught.value.problems
        assert "answered HTTP 403 without Slack's JSON" in line and "refused" not in line
    finally:
        await socket_mode.close()


async def test_clicks_slack_sends_on_the_replaced_connection_are_acked(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(connect, "OLD_GRACE", 60.0)  # Slack closes it first here
    async with socket_world(fake_slack, tmp_path) as world:
        server = world.server
        first = server.connections_made[0]
        await server.disconnect("refresh_requested", on=first)
        await server.wait_connected(count=2)
        second = server.connections_made[1]
        assert await world.command_acked(second)  # the new one is read
        assert first.open, "the replaced connection was closed at once"
        assert await world.command_acked(first)  # and the old one still, while Slack sends
        await server.disconnect("warning", on=first)  # said again there: no third connection
        await server.drop(first)  # Slack closes it: no reconnection for that
        await server.wait_for(lambda: server.live() == [second])
        await server.disconnect("warning", on=second)  # and one still in its grace at shutdown
        await server.wait_connected(count=3)
        assert second.open and await world.command_acked(second)
        await world.socket_mode.stop(1.0)
        await server.wait_for(lambda: not server.live())  # no websocket left open
        assert len(server.connections_made) == 3
        assert not lines.said("Socket Mode"), lines.all()  # a refresh is routine
        assert not lines.tracebacks() and not lines.library_noise(), lines.all()


async def test_envelopes_slack_sent_before_it_answers_the_close_are_acked(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
):
    # aiohttp's close() reads and drops every frame until the close is answered
    monkeypatch.setattr(connect, "OLD_GRACE", 0.0)
    async with socket_world(fake_slack, tmp_path) as world:
        server = world.server
        first = server.connections_made[0]
        sent: list[str] = []

        async def in_flight(link: Any) -> None:
            if link is first:
                for _ in range(3):
                    envelope = await server.send_envelope(
                        "slash_commands", signing.command_fields("stats"), on=link
                    )
                    sent.append(envelope)

        server.before_close_reply = in_flight
        await server.disconnect("refresh_requested", on=first)
        await server.wait_for(lambda: len(sent) == 3 and not first.open)
        for envelope in sent:
            await server.next_ack(envelope)
        assert len(server.live()) == 1
        assert not lines.tracebacks() and not lines.library_noise(), lines.all()


async def test_a_connection_cut_without_a_close_frame_reconnects_at_once(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
):
    # the library slept a ping interval (10 s) on a connection read to its end without a close
    # frame, and only its session monitor reconnected, at its next ping
    monkeypatch.setattr(connect, "PING_INTERVAL", 60.0)
    async with socket_world(fake_slack, tmp_path) as world:
        await world.server.drop(world.server.connections_made[0], abort=True)
        try:
            await world.server.wait_connected(count=2, timeout=3)
        except TimeoutError:
            raise AssertionError(f"not reconnected 3 s after a cut: {lines.all()}") from None
        await lines.wait("connected to Slack again")
        assert await world.command_acked(world.server.live()[-1])
        assert not lines.tracebacks() and not lines.library_noise(), lines.all()


async def test_the_outage_is_counted_from_when_the_connection_was_last_known_good(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
):
    clock = types.SimpleNamespace(offset=0.0)
    real = connect.time
    shifted = types.SimpleNamespace(
        monotonic=lambda: real.monotonic() + clock.offset, time=lambda: real.time() + clock.offset
    )
    monkeypatch.setattr(connect, "time", shifted)  # connect.py's clock only
    async with socket_world(fake_slack, tmp_path) as world:
        first = world.server.connections_made[0]
        assert await world.command_acked(first)  # last known good: this envelope
        clock.offset = 100.0  # then 100 s without a message or a pong before the drop is seen
        await world.server.drop(first)
        await lines.wait("connected to Slack again")
        [line] = lines.said("connected to Slack again")
        assert line == "Socket Mode: the connection closed; connected to Slack again after 1.7 min"


async def test_healthz_finding_no_answer_to_pings_asks_for_the_reconnection(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(connect, "PING_INTERVAL", 60.0)  # the monitor's next look: a minute away
    server = FakeSocketMode(answer_pings=False)
    async with socket_world(fake_slack, tmp_path, server=server) as world:
        # a silent network drop: no pong for 1,000 s, and nothing read the end of the stream
        world.client.last_ping_pong_time -= 1000
        status, body = await world.healthz()
        assert status == 200 and body["slack"].startswith("reconnecting since "), body
        try:
            await world.server.wait_connected(count=2, timeout=3)
        except TimeoutError:
            raise AssertionError(f"/healthz saw it and nothing reconnected: {body}") from None
        await lines.wait("connected to Slack again")
        [line] = lines.said("connected to Slack again")
        assert line.startswith("Socket Mode: no answer to pings; connected to Slack again after")
        assert (await world.healthz())[1]["slack"] == "connected"
        assert await world.command_acked(world.server.live()[-1])


async def test_envelopes_and_their_text_are_not_logged_at_vv(
    fake_slack: FakeSlack, tmp_path: Path, lines: Lines
):
    from bot import logs

    root = logging.getLogger()
    names = ["", *logs.LIBRARIES, "bot.socket_mode"]
    levels = {name: logging.getLogger(name).level for name in names}
    filtered = [handler for handler in root.handlers if logs.REDACTOR in handler.filters]
    try:
        async with socket_world(fake_slack, tmp_path) as world:
            root.setLevel(logging.DEBUG)  # as `hitl -vv` leaves it
            logs.configure(2)
            assert not logging.getLogger("bot.socket_mode").isEnabledFor(logging.DEBUG)
            envelope = await world.server.send_envelope(
                "slash_commands", signing.command_fields("zebra quartz private text")
            )
            await world.server.next_ack(envelope)
        said = [line for line in lines.all() if "zebra quartz" in line]
        assert not said, said
        logs.configure(3)
        assert logging.getLogger("bot.socket_mode").isEnabledFor(logging.DEBUG)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for handler in root.handlers:
            if handler not in filtered:
                handler.removeFilter(logs.REDACTOR)
