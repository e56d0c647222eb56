"""Requests /slack/events refuses (no valid signature, a body that cannot be read) are said in
the log once per reason, then in one line a minute while they go on ("N more requests ...
in the last minute"): an outside security test's one client wrote 32,563 warning lines in
5 s. Each still gets its 401 (README: "a 401 and a warning in the log").

Through the real server on loopback (``tests.bot.harness.start_bot``); the end of a minute is
the test's to say (``bot.server.RefusalLog``'s ``later``), not the clock's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot import server
from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import SECRET, Bot, make_settings, start_bot

FORM = "application/x-www-form-urlencoded"
WRONG = "the signature does not match SLACK_SIGNING_SECRET (is it the app's Signing Secret?)"
MISSING = "no X-Slack-Signature or X-Slack-Request-Timestamp header"


class Minutes:
    """``RefusalLog``'s ``later``: the callbacks it asks for, run when the test ends a minute."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def later(self, seconds: float, callback: Callable[[], None]) -> None:
        self.pending.append((seconds, callback))

    def end(self) -> None:
        due, self.pending = self.pending, []
        assert {seconds for seconds, _ in due} <= {60.0}
        for _, callback in due:
            callback()


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        yield bot


@pytest.fixture
def minutes(bot: Bot) -> Minutes:
    minutes = Minutes()
    server._REFUSALS[bot.rt] = server.RefusalLog(later=minutes.later)
    return minutes


BODY = signing.signed_command(signing.command_fields("help"), SECRET)[0]


async def wrong_secret(bot: Bot) -> int:
    response = await bot.post(*signing.sign(BODY, "not-the-secret", FORM))
    return response.status


async def unsigned(bot: Bot) -> int:
    response = await bot.post(BODY, {"Content-Type": FORM})
    return response.status


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.server"]
    assert {r.levelname for r in caplog.records if r.name == "bot.server"} <= {"WARNING"}
    caplog.clear()
    return lines


async def test_refusals_are_said_once_per_reason_then_once_a_minute_while_they_last(
    bot: Bot, minutes: Minutes, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING)  # hitl serve's default level
    first = f"refused a request to /slack/events ({len(BODY)} bytes) without a valid Slack"
    statuses = [await wrong_secret(bot) for _ in range(5)] + [await unsigned(bot) for _ in range(3)]
    assert statuses == [401] * 8  # each refused, whether said or counted
    assert said(caplog) == [f"{first} signature: {WRONG}", f"{first} signature: {MISSING}"]

    minutes.end()  # each reason's first minute ends: what came after its first line is said
    assert said(caplog) == [
        "4 more requests to /slack/events refused in the last minute: without a valid Slack "
        f"signature: {WRONG} (said once a minute while it lasts)",
        "2 more requests to /slack/events refused in the last minute: without a valid Slack "
        f"signature: {MISSING} (said once a minute while it lasts)",
    ]

    assert await wrong_secret(bot) == 401  # the wrong secret goes on; the missing one stopped
    assert said(caplog) == []
    minutes.end()
    assert said(caplog) == [
        "1 more request to /slack/events refused in the last minute: without a valid Slack "
        f"signature: {WRONG} (said once a minute while it lasts)"
    ]
    minutes.end()  # a quiet minute ends it
    assert said(caplog) == []
    assert minutes.pending == []

    # Once it has ended, the next one is said in full again.
    assert [await wrong_secret(bot), await unsigned(bot)] == [401, 401]
    assert said(caplog) == [f"{first} signature: {WRONG}", f"{first} signature: {MISSING}"]


async def test_bodies_refused_for_what_the_client_chose_are_one_reason(
    bot: Bot, minutes: Minutes, caplog: pytest.LogCaptureFixture
):
    """A refused Content-Encoding is named in its refusal: an outsider who names a new one
    each time still makes one line, then one a minute."""
    caplog.set_level(logging.WARNING)
    for n in range(20):
        response = await bot.post(b"x", {"Content-Encoding": f"coding{n}"})
        assert response.status == 415
    lines = said(caplog)
    assert lines == [
        "refused a request to /slack/events: the body's Content-Encoding coding0 is not "
        "supported; send it as gzip or deflate, or uncompressed"
    ]
    minutes.end()
    assert said(caplog) == [
        "19 more requests to /slack/events refused in the last minute: answered 415 (the last "
        "one: the body's Content-Encoding coding19 is not supported; send it as gzip or "
        "deflate, or uncompressed) (said once a minute while it lasts)"
    ]


async def test_without_a_given_clock_the_minute_is_the_event_loops(
    bot: Bot, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    """`hitl serve`'s own: the end of a minute is a timer on the running loop, 60 s ahead."""
    asked: list[float] = []
    loop = asyncio.get_running_loop()
    call_later = loop.call_later

    def spy(seconds: float, callback: Callable[..., object], *args: object, **kwargs: object):
        if callback.__qualname__.startswith("RefusalLog."):
            asked.append(seconds)
        return call_later(seconds, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_later", spy)
    caplog.set_level(logging.WARNING)
    assert [await unsigned(bot), await unsigned(bot)] == [401, 401]
    assert said(caplog) == [
        f"refused a request to /slack/events ({len(BODY)} bytes) without a valid Slack "
        f"signature: {MISSING}"
    ]
    assert asked == [60.0]


async def test_refusals_counted_when_the_server_stops_are_said_as_it_stops(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A restart within the minute (after fixing SLACK_SIGNING_SECRET, say) lost the count of
    the requests refused since the last line: it is said as the server stops, once."""
    caplog.set_level(logging.WARNING)
    minutes = Minutes()
    serving = start_bot(fake_slack, make_settings(fake_slack, tmp_path))
    bot = await serving.__anext__()
    try:
        server._REFUSALS[bot.rt] = server.RefusalLog(later=minutes.later)
        caplog.clear()  # what start-up said (a new database)
        statuses = [await wrong_secret(bot) for _ in range(4)] + [await unsigned(bot)]
        assert statuses == [401] * 5
        first = f"refused a request to /slack/events ({len(BODY)} bytes) without a valid Slack"
        assert said(caplog) == [f"{first} signature: {WRONG}", f"{first} signature: {MISSING}"]
    finally:
        with pytest.raises(StopAsyncIteration):
            await serving.__anext__()  # the server stops; no minute has ended
    assert said(caplog) == [
        "3 more requests to /slack/events refused in the last minute: without a valid Slack "
        f"signature: {WRONG} (said as the server stops)"
    ]
    minutes.end()  # the minute's end, if it still came, has nothing more to say
    assert said(caplog) == []
