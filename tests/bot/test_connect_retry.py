"""HITL_CONNECT_RETRY is the wait before the second attempt to reach Slack at start (docs
audit #7): each logged attempt is one call, and the waits between them are the setting's.

With 0.5 the second attempt came ~3.4 s later while the log said "retrying in 0.5 s": the
server's Web API client retried a dropped connection or a 5xx itself (twice, after 0.5 s and
1 s and their jitter) inside each attempt. Nothing waits here: every sleep is recorded and
returns at once, and the fake Slack counts the calls it is sent.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.runtime import make_client
from bot.sandbox import FakeSlack
from bot.slack import connect
from tests.bot.harness import make_settings
from tests.fake_socket_mode import FakeSocketMode

FAULTS = {
    "dropped connection": {"mode": "reset"},  # Slack cannot be reached
    "503": {"error": "service_unavailable", "status": 503},
}


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait asked for (slack_sdk's own retries wait with asyncio.sleep too), none waited."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay: float, result=None):  # noqa: ANN001, ANN202
        if delay > 0:
            waits.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(connect.asyncio, "sleep", recorded)
    return waits


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_each_logged_attempt_to_reach_slack_is_one_call_after_the_setting_s_wait(
    fake_slack: FakeSlack,
    tmp_path: Path,
    slept: list[float],
    caplog: pytest.LogCaptureFixture,
    fault: str,
):
    settings = make_settings(fake_slack, tmp_path, connect_retry=0.5)
    rt = SimpleNamespace(settings=settings, client=make_client(settings), bot_user_id=None)
    fake_slack.fail("auth.test", times=2, **FAULTS[fault])
    with caplog.at_level(logging.WARNING, logger="bot.slack.connect"):
        auth = await connect.check_slack(rt)
    assert auth["ok"] and rt.bot_user_id == auth["user_id"]
    lines = retry_lines(caplog)
    assert len(fake_slack.calls_to("auth.test")) == 3  # two failed attempts, then Slack answers
    assert len(lines) == 2, lines  # one line per failed call
    assert lines[0].endswith("retrying in 0.5 s") and lines[1].endswith("retrying in 1 s")
    assert slept == [0.5, 1.0]  # and only the waits the lines say
    assert len(fake_slack.calls_to("conversations.info")) == 1
    # the server's client keeps its own retries for the calls after start
    assert len(rt.client.retry_handlers) == 5


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_each_logged_socket_mode_attempt_is_one_call_after_the_setting_s_wait(
    fake_slack: FakeSlack,
    tmp_path: Path,
    slept: list[float],
    caplog: pytest.LogCaptureFixture,
    fault: str,
):
    socket = FakeSocketMode()
    fake_slack.socket_url = await socket.start()
    settings = make_settings(
        fake_slack, tmp_path, slack_app_token=fake_slack.app_token, connect_retry=0.25
    )
    rt = SimpleNamespace(settings=settings, client=make_client(settings))
    fake_slack.fail("apps.connections.open", times=2, **FAULTS[fault])
    socket_mode = connect.SocketMode(None, fake_slack.app_token, rt)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.slack.connect"):
            await socket_mode.connect()
        await socket.wait_connected()
        lines = retry_lines(caplog)
        assert len(fake_slack.calls_to("apps.connections.open")) == 3
        assert len(lines) == 2, lines
        assert all("Socket Mode: cannot connect to Slack" in line for line in lines)
        assert lines[0].endswith("retrying in 0.25 s") and lines[1].endswith("retrying in 0.5 s")
        assert slept == [0.25, 0.5]
        assert socket.connections == 1  # the websocket: once, after the third call
        # reconnections later (Slack recycles connections) use the server's client again
        assert socket_mode.client.web_client is rt.client
    finally:
        await socket_mode.close()
        await socket.close()
