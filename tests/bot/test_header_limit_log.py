"""A request refused by the header limits (``bot.server.HEADER_LIMITS``: 40 header lines, 4,096
bytes a name or value, 8,190 bytes the request line) was said in one INFO line, as malformed
garbage is: a legitimate proxy chain past 40 lines was refused with nothing at the default log
level (WARNING). It is now a WARNING naming the limit, said as ``RefusalLog`` says the refusals
of /slack/events: once per limit, then one line a minute while they go on. Malformed requests
(a NUL in a header, a Content-Length of "abc") stay at INFO.

Through the real server on loopback, with the requests of test_header_limits; the end of a
minute is the test's to say (``RefusalLog``'s ``later``, as in test_refusal_log_rate)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from bot import server
from bot.sandbox import FakeSlack
from tests.bot.harness import Bot, make_settings, start_bot
from tests.bot.test_header_limits import (  # noqa: F401 - bot: the fixture
    FIELD,
    LINES,
    answer,
    bot,
    own_lines,
    proxies,
    request,
)
from tests.bot.test_refusal_log_rate import Minutes

NO_SETTING = "no setting raises this limit"


@pytest.fixture
async def minutes(bot: Bot) -> Minutes:  # noqa: F811 - the fixture
    """The minutes of the server's loop's log of limit refusals (the test's loop)."""
    minutes = Minutes()
    loop = asyncio.get_running_loop()
    server.PROTOCOL_LOGGER.logs[loop] = server.RefusalLog(later=minutes.later, where="")
    return minutes


async def refused(bot: Bot, raw: bytes) -> None:  # noqa: F811 - a Bot, not the fixture
    """Send ``raw`` on a connection of its own; it is answered 400 (logged before)."""
    host, port = bot.http.server.host, bot.http.server.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        status, _, _ = await answer(reader)
        assert status == 400, raw[:60]
    finally:
        writer.close()


def said(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(level, line) of what the server said since the last call: its own lines and
    aiohttp's server logger (not the access log)."""
    lines = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name in ("bot.server", "aiohttp.server")
    ]
    assert all(r.exc_info is None for r in caplog.records if r.name == "aiohttp.server")
    caplog.clear()
    return lines


def too_many() -> bytes:
    return request(proxies(LINES - own_lines([]) + 1))


async def test_too_many_header_lines_is_a_warning_once_then_a_line_a_minute(
    bot: Bot,  # noqa: F811 - the fixture
    minutes: Minutes,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.WARNING)  # hitl serve's default level
    for _ in range(3):
        await refused(bot, too_many())
    assert said(caplog) == [
        (
            "WARNING",
            "refused a request from 127.0.0.1 over hitl's header limits: more than 40 header"
            f" lines ({NO_SETTING}; a proxy chain in front that adds many header lines must add"
            " fewer); answered 400",
        )
    ]
    minutes.end()
    assert said(caplog) == [
        (
            "WARNING",
            "2 more requests refused in the last minute: over hitl's header limits, more than"
            " 40 header lines (the last from 127.0.0.1) (said once a minute while it lasts)",
        )
    ]
    minutes.end()  # a minute without one: the next is said in full again
    assert said(caplog) == []
    await refused(bot, too_many())
    [(level, line)] = said(caplog)
    assert level == "WARNING" and line.startswith("refused a request from 127.0.0.1 over")


async def test_a_header_or_request_line_too_long_is_a_warning_naming_its_limit(
    bot: Bot,  # noqa: F811 - the fixture
    minutes: Minutes,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.WARNING)
    await refused(bot, request(proxies(3, long=FIELD + 1)))
    await refused(bot, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    await refused(bot, request(proxies(3, long=FIELD + 1)))  # counted: said in the minute's line
    assert said(caplog) == [
        (
            "WARNING",
            "refused a request from 127.0.0.1 over hitl's header limits: a header name or value"
            f" over 4,096 bytes ({NO_SETTING}); answered 400",
        ),
        (
            "WARNING",
            "refused a request from 127.0.0.1 over hitl's header limits: a request line over"
            f" 8,190 bytes ({NO_SETTING}); answered 400",
        ),
    ]
    minutes.end()
    [(level, line)] = said(caplog)
    assert level == "WARNING" and line.startswith("1 more request refused in the last minute:")
    assert "a header name or value over 4,096 bytes" in line


async def test_malformed_requests_stay_one_info_line(
    bot: Bot,  # noqa: F811 - the fixture
    caplog: pytest.LogCaptureFixture,
):
    """Guard (passes on the old code too): garbage is not a limit; it stays at INFO."""
    caplog.set_level(logging.INFO)
    # and aiohttp's, which a `hitl` command run before in this process left at WARNING
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    await refused(bot, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n")
    await refused(bot, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    lines = said(caplog)
    assert [level for level, _ in lines] == ["INFO", "INFO"], lines
    assert all(re.match(r"refused a malformed HTTP request from 127\.0\.0\.1 \(", line)
               for _, line in lines)  # fmt: skip


async def test_limit_refusals_counted_when_the_server_stops_are_said_as_it_stops(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The refusals counted since the last line are said as the server stops (a restart
    within the minute lost them), as the /slack/events ones are."""
    caplog.set_level(logging.WARNING)
    minutes = Minutes()
    serving = start_bot(fake_slack, make_settings(fake_slack, tmp_path))
    running = await serving.__anext__()
    try:
        loop = asyncio.get_running_loop()
        server.PROTOCOL_LOGGER.logs[loop] = server.RefusalLog(later=minutes.later, where="")
        caplog.clear()  # what start-up said (a new database)
        for _ in range(3):
            await refused(running, too_many())
        [(level, _)] = said(caplog)
        assert level == "WARNING"
    finally:
        with pytest.raises(StopAsyncIteration):
            await serving.__anext__()  # the server stops; no minute has ended
    assert said(caplog) == [
        (
            "WARNING",
            "2 more requests refused in the last minute: over hitl's header limits, more than"
            " 40 header lines (the last from 127.0.0.1) (said as the server stops)",
        )
    ]
    minutes.end()  # the minute's end, if it still came, has nothing more to say
    assert said(caplog) == []


# -- which line: aiohttp's C parser and its pure-Python one --
#
# A header line whose bytes come in pieces and pass 8,190 before its CRLF is refused by the
# pure-Python parser (AIOHTTP_NO_EXTENSIONS=1, or a platform without aiohttp's C build) with the
# request line's limit: it was said as "a request line over 8,190 bytes". The parsers are fed
# the pieces themselves (over a socket, whether they arrive apart is the kernel's to say).

PIECES = {
    "a header value": [b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 5000, b"a" * 4000 + b"\r\n\r\n"],
    "a header name": [b"GET / HTTP/1.1\r\nHost: x\r\nX" + b"a" * 5000, b"a" * 4000 + b": 1\r\n"],
    "a header's folded line": [b"GET / HTTP/1.1\r\nX-A: 1\r\n " + b"a" * 5000, b"a" * 4000],
    "the request line": [b"GET /" + b"a" * 5000, b"a" * 4000 + b" HTTP/1.1\r\n\r\n"],
    "an absolute URL": [b"GET http://x/" + b"a" * 5000, b"a" * 4000 + b" HTTP/1.1\r\n"],
    "the whole request line": [b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"],
    "a whole header line": [b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n"],
}
HEADER = "a header name or value over 4,096 bytes"
REQUEST_LINE = "a request line over 8,190 bytes"
EXPECTED = {
    "a header value": HEADER,
    "a header name": HEADER,
    "a header's folded line": HEADER,
    "the request line": REQUEST_LINE,
    "an absolute URL": REQUEST_LINE,
    "the whole request line": REQUEST_LINE,
    "a whole header line": HEADER,
}


def limits_said(pieces: dict[str, list[bytes]]) -> dict[str, str]:
    """What the server's logger says of each request of ``pieces`` (its bytes, in the reads
    they come in) refused by the parser the server uses (``aiohttp.web_protocol``'s): the limit
    its warning names. Said outside a running loop: said, not counted."""
    from aiohttp import web_protocol
    from aiohttp.http_exceptions import HttpProcessingError

    from bot.server import HEADER_LIMITS, PROTOCOL_LOGGER

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    keep = Keep(logging.WARNING)
    logging.getLogger("bot.server").addHandler(keep)
    loop = asyncio.new_event_loop()
    said: dict[str, str] = {}
    try:
        for name, reads in pieces.items():
            parser = web_protocol.HttpRequestParser(mock.Mock(), loop, 2**16, **HEADER_LIMITS)
            lines.clear()
            try:
                for read in reads:
                    parser.feed_data(read)
            except HttpProcessingError as exc:
                if PROTOCOL_LOGGER.limit_passed(exc) is None:
                    said[name] = "malformed"  # an INFO line: not a limit
                    continue
                PROTOCOL_LOGGER.exception("Error handling request from %s", "1.2.3.4", exc_info=exc)
            [line] = lines
            said[name] = line.split("over hitl's header limits: ")[1].split(" (")[0]
    finally:
        logging.getLogger("bot.server").removeHandler(keep)
        loop.close()
    return said


def test_a_line_too_long_names_its_limit_with_the_c_parser():
    """Guard (passes on the old code too): the C parser, hitl's default, tells the lines
    apart by the limit it says."""
    from aiohttp import http_parser, web_protocol

    if web_protocol.HttpRequestParser is http_parser.HttpRequestParserPy:
        pytest.skip("aiohttp's C parser is not in this environment")
    # llhttp refuses a folded header line as malformed, before its length counts
    assert limits_said(PIECES) == {**EXPECTED, "a header's folded line": "malformed"}


def test_a_header_line_in_pieces_names_the_header_limit_with_the_pure_python_parser():
    """The pure-Python parser, as a server started with AIOHTTP_NO_EXTENSIONS=1 uses it (a
    process of its own: aiohttp chooses its parser at import)."""
    root = Path(__file__).resolve().parents[2]  # the tree these tests are in
    child = (
        "import json, sys; from aiohttp import http_parser, web_protocol;"
        "assert web_protocol.HttpRequestParser is http_parser.HttpRequestParserPy;"
        "from tests.bot.test_header_limit_log import PIECES, limits_said;"
        "print(json.dumps(limits_said(PIECES)))"
    )
    python_path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", child],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "AIOHTTP_NO_EXTENSIONS": "1", "PYTHONPATH": python_path},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == EXPECTED
