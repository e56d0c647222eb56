"""Clients that send slowly cannot hold `hitl serve`'s connections (an outside security test:
300 "slow loris" clients, one header line every 5 s, kept their sockets for minutes and used up
the process's open files; 200 clients each holding back the last byte of a 1 MB body parked
~250 MB). A body must all come within ``bot.api.bodies.BODY_SECONDS`` (else 408, and the
connection is closed), a request's headers within ``bot.server.HEADER_SECONDS`` of the
connection's opening or its last response (else the connection is closed); a request being
handled is never cut. The soft limit of open files is raised to the hard one, and asyncio's
"socket.accept() out of system resource" is one line per episode, not one per waiting
connection per retry.

Everything runs through ``bot.server.serve`` itself, on loopback, as `hitl serve` runs it; the
deadlines are made short here, and each wait is bounded by ``GUARD`` seconds."""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from aiohttp import web

from bot import server
from bot.api import bodies, metrics
from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import SECRET, Item, make_settings, seed
from tests.bot.test_serve_process import free_port

resource = pytest.importorskip("resource")

TOKEN = "api-token-for-slow-client-tests"
GUARD = 8.0  # under aiohttp's 10 s of lingering: a close seen within it is the server's own


class Served:
    """A server ``serving`` runs, and the test's connections to it (closed at the end)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.writers: list[asyncio.StreamWriter] = []

    async def connect(
        self, sock: socket.socket | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if sock is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        else:
            reader, writer = await asyncio.open_connection(sock=sock)
        self.writers.append(writer)
        return reader, writer

    async def ask(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request on a connection of its own."""
        reader, writer = await self.connect()
        writer.write(request)
        return await read_response(reader)


@asynccontextmanager
async def serving(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[Served]:
    """``server.serve`` on a free loopback port until the block ends."""
    seed(tmp_path / "hitl.db", [Item("a", "refund please")])
    port = free_port()
    settings = make_settings(fake, tmp_path, host="127.0.0.1", port=port, api_token=TOKEN)
    listening = asyncio.Event()

    def announce(line: str) -> None:
        if "listening" in line:
            listening.set()

    task = asyncio.create_task(server.serve(settings, announce=announce))
    waiting = asyncio.create_task(listening.wait())
    await asyncio.wait({task, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task.done():
        task.result()  # serve's own error
    assert listening.is_set(), "serve did not start listening"
    served = Served(port)
    try:
        yield served
    finally:
        for writer in served.writers:
            writer.close()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


@pytest.fixture(autouse=True)
def _keep_pytests_faulthandler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faulthandler, "enable", lambda **_: None)  # pytest's own stays


def http_request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def help_command() -> bytes:
    """A signed `/hitl help`, as Slack sends it."""
    body, headers = signing.signed_command(signing.command_fields("help", "U0ANA"), SECRET)
    named = {name.replace("-", "_"): value for name, value in headers.items()}
    return http_request("POST", "/slack/events", body, **named)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)
    status_line, *header_lines = head.decode().split("\r\n")[:-2]
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), GUARD)
    return int(status_line.split()[1]), headers, body


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection (b"" if nothing), within GUARD
    seconds; a TimeoutError if it keeps it open."""
    return await asyncio.wait_for(reader.read(), GUARD)


# -- a body that does not all come -------------------------------------------------------------


async def test_a_body_that_stops_coming_is_answered_408_and_its_connection_closed(
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    monkeypatch.setattr(bodies, "BODY_SECONDS", 0.3, raising=False)
    caplog.set_level(logging.WARNING)  # hitl serve's default level
    async with serving(fake_slack, tmp_path) as served:
        slack_reader, slack_writer = await served.connect()
        api_reader, api_writer = await served.connect()
        # Headers saying 1,000 bytes, then 10 of them, and nothing more.
        slack_writer.write(
            b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"x" * 10
        )
        api_writer.write(
            b"POST /api/items HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
        )
        # Meanwhile others are answered.
        assert (await served.ask(http_request("GET", "/healthz")))[0] == 200

        status, headers, body = await read_response(slack_reader)
        assert (status, headers["connection"]) == (408, "close")
        message = "the body did not all come within 0.3 seconds of the headers; send it at once"
        assert json.loads(body) == {"error": message}
        assert await closed_by_server(slack_reader) == b""  # freed: not kept for lingering

        status, headers, body = await read_response(api_reader)
        assert (status, headers["connection"]) == (408, "close")
        assert json.loads(body) == {"error": message, "field": "body"}
        assert await closed_by_server(api_reader) == b""
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.server"]
    assert lines == [f"refused a request to /slack/events: {message}"]


# -- headers that do not all come ---------------------------------------------------------------


async def test_a_connection_that_stops_halfway_through_its_headers_is_closed_others_answered(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(server, "HEADER_SECONDS", 0.5, raising=False)
    async with serving(fake_slack, tmp_path) as served:
        loris_reader, loris_writer = await served.connect()
        loris_writer.write(b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # A keep-alive connection that had its answer, then starts a request and stops.
        kept_reader, kept_writer = await served.connect()
        kept_writer.write(http_request("GET", "/healthz"))
        assert (await read_response(kept_reader))[0] == 200
        kept_writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # A request sent at a normal pace, on a connection of its own, is answered.
        status, _, body = await served.ask(help_command())
        assert status == 200 and b"hitl" in body
        assert await closed_by_server(loris_reader) == b""  # no answer: just closed
        assert await closed_by_server(kept_reader) == b""
        # The server takes new connections as before.
        assert (await served.ask(http_request("GET", "/healthz")))[0] == 200


async def test_a_request_still_being_handled_past_the_header_deadline_is_not_cut(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(server, "HEADER_SECONDS", 0.3, raising=False)
    started, release = asyncio.Event(), asyncio.Event()
    read_body = bodies.request_body

    async def slow_request_body(request):
        started.set()
        await release.wait()  # the click is still being handled when its deadline passes
        return await read_body(request)

    monkeypatch.setattr(bodies, "request_body", slow_request_body)
    async with serving(fake_slack, tmp_path) as served:
        reader, writer = await served.connect()
        writer.write(help_command())
        await asyncio.wait_for(started.wait(), GUARD)
        # A connection opened after it, that sends half its headers, is closed once its own
        # deadline passes: by then the first connection's has passed too.
        witness_reader, witness_writer = await served.connect()
        witness_writer.write(b"GET /healthz HTTP/1.1\r\n")
        assert await closed_by_server(witness_reader) == b""
        release.set()
        status, _, body = await read_response(reader)
        assert status == 200 and b"hitl" in body


# -- open files -----------------------------------------------------------------------------------


@pytest.fixture
def soft_open_files_limit():
    """Restores the process's limit of open files after the test."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


async def test_serve_raises_the_soft_limit_of_open_files_to_the_hard_one(
    fake_slack: FakeSlack,
    tmp_path: Path,
    soft_open_files_limit: tuple[int, int],
    caplog: pytest.LogCaptureFixture,
):
    _, hard = soft_open_files_limit
    wanted = 65_536 if hard == resource.RLIM_INFINITY else min(65_536, hard)  # the cap
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip("the hard limit leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    caplog.set_level(logging.WARNING)
    async with serving(fake_slack, tmp_path):
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (wanted, hard)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_running_out_of_open_files_is_said_once_not_per_connection_and_retry(
    fake_slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """asyncio says "socket.accept() out of system resource", with a traceback, for each of
    up to 128 accept() calls on each retry: ~170,000 lines in 30 s of the tester's attack.
    Here the server's loop is told of 300 such failures as asyncio's accept loop tells it
    (``call_exception_handler`` with the message and the EMFILE error; running the process
    out of files for real also starved the test's own worker, and whether 300 came within a
    deadline depended on the machine's load)."""
    caplog.set_level(logging.WARNING)
    async with serving(fake_slack, tmp_path) as served:
        loop = asyncio.get_running_loop()
        listening = socket.socket()
        try:
            for _ in range(300):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(24, "Too many open files"),
                        "socket": listening,
                    }
                )
        finally:
            listening.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(http_request("GET", "/healthz"))
        assert (await read_response(reader))[0] == 200  # the server goes on
        writer.close()
    said = [r for r in caplog.records if r.name == "asyncio"]
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in said] == [
        (
            "ERROR",
            "cannot accept new connections: [Errno 24] Too many open files; they wait in the "
            "listen queue until some close (said once while it lasts)",
            None,
        )
    ]


async def test_the_start_up_collection_is_done_before_the_server_listens(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # ``metrics.freeze`` collects every object start-up made (110-116 ms of the event loop at a
    # million items); it ran just after the server began listening, so the first requests
    # (Slack's, a health check's) waited behind it. It runs, for real, before now.
    steps: list[str] = []
    real_freeze, real_start = metrics.freeze, web.TCPSite.start

    def freeze() -> None:
        steps.append("freeze")
        real_freeze()

    async def start(site: web.TCPSite) -> None:
        steps.append("listen")
        await real_start(site)

    monkeypatch.setattr(metrics, "freeze", freeze)
    monkeypatch.setattr(web.TCPSite, "start", start)
    async with serving(fake_slack, tmp_path) as served:
        status, _, _ = await served.ask(http_request("GET", "/healthz"))
    assert status == 200
    assert steps == ["freeze", "listen"]
