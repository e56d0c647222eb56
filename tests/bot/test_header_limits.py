"""What one request's headers may hold (``bot.server.HEADER_LIMITS``): 40 lines of 4096 bytes
at most. aiohttp's own limits (128 lines of 8190 bytes) let each connection that never ended
its headers hold ~1.9 MB for HEADER_SECONDS, outside the bodies' budget: an outside review
took `hitl serve` from 75 MB to 1.2 GB with 600 unsigned connections. Past the limits a
request is answered 400 and its connection closed; what Slack and the proxies in front send
(a dozen short lines, some more from each proxy) goes through, on a keep-alive connection too.

Through the real server on loopback (``tests.bot.harness.start_bot``, which runs the app
``init_app`` makes, as `hitl serve` does); each wait is bounded by ``GUARD`` seconds only in
case the test fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import SECRET, Bot, make_settings, start_bot
from tests.bot.test_slow_clients import read_response as answer

GUARD = 8.0  # seconds any one wait may take before the test fails
FIELD = 4096  # bytes of a header line (HEADER_LIMITS' max_field_size; see ``proxies``)
LINES = 40  # header lines of a request (HEADER_LIMITS' max_headers)


@pytest.fixture
async def bot(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for bot in start_bot(fake_slack, make_settings(fake_slack, tmp_path)):
        yield bot


def proxies(count: int, *, long: int = 0) -> list[tuple[str, str]]:
    """``count`` header lines as proxies add them; the first ``long`` bytes long in all, ": "
    not counted (within FIELD: always taken), or, over FIELD, with a value that alone is
    ``long`` bytes (aiohttp 3.14's parser counts the name and the value together or apart,
    as the line's bytes happen to come in reads: a value over FIELD is refused either way)."""
    lines = [(f"X-Proxy-{n:02d}", f"hop-{n}") for n in range(count)]
    if long and lines:
        name = lines[0][0]
        lines[0] = (name, "v" * (long - len(name) if long <= FIELD else long))
    return lines


def request(extra: list[tuple[str, str]]) -> bytes:
    """A signed `/hitl help` to /slack/events, with Slack's own headers and ``extra``."""
    body, signed = signing.signed_command(signing.command_fields("help"), SECRET)
    lines = ["POST /slack/events HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in [*signed.items(), *extra]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def own_lines(extra: list[tuple[str, str]]) -> int:
    """Header lines of ``request(extra)`` besides ``extra``."""
    return request([]).split(b"\r\n\r\n")[0].count(b"\r\n")


async def test_headers_as_slack_and_proxies_send_them_go_through_and_more_is_refused(
    bot: Bot, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    server = bot.http.server
    room = LINES - own_lines([])  # the lines proxies may add
    assert room >= 25
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        # All the lines there is room for, one of them as long as a line may be: 200, twice
        # on the same connection (kept alive).
        for _ in range(2):
            writer.write(request(proxies(room, long=FIELD)))
            status, headers, body = await answer(reader)
            assert status == 200 and b"hitl" in body
            assert headers.get("connection", "keep-alive").lower() != "close"
    finally:
        writer.close()

    refused = {
        "one line too many": proxies(room + 1),
        "a value a byte too long": proxies(room, long=FIELD + 1),
    }
    for what, extra in refused.items():
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(request(extra))
            status, _, _ = await answer(reader)
            assert status == 400, what
            assert await asyncio.wait_for(reader.read(), GUARD) == b"", what  # closed
        finally:
            writer.close()
    # one warning for each limit passed, naming it (test_header_limit_log), and nothing else
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 2 and all("over hitl's header limits" in w for w in warned), warned


async def test_headers_that_never_end_are_cut_at_the_limit_not_held(bot: Bot):
    """The review's case: header lines that go on and never end. Past the limit the server
    answers 400 and closes the connection at once, instead of holding them (aiohttp's 128
    lines of 8190 bytes, ~1.9 MB a connection) until HEADER_SECONDS."""
    server = bot.http.server
    start = b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n"
    for line in (b"X-H: " + b"v" * 8000 + b"\r\n", b"X-H: short\r\n"):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(start + line * 120)  # and no blank line: the headers go on
            try:
                said = await asyncio.wait_for(reader.read(), GUARD)  # until it is closed
            except ConnectionResetError:
                # Closed with what the client sent still unread: the kernel resets the
                # connection, and the client may lose the 400 that came before.
                said = b""
            except TimeoutError:
                raise AssertionError("the server still holds the connection") from None
            assert said == b"" or said.split(b" ")[1] == b"400", said[:100]
        finally:
            writer.close()
