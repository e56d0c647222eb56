"""The bodies being read at once hold at most ``bot.api.bodies.BODIES_BUDGET`` bytes between
them, whatever the number of connections (an outside security test: 800 connections that each
sent a 1 MB body but its last byte, unsigned, took `hitl serve` from 75 MB to ~1 GB). A request
whose bytes would go over it is answered 503 with Retry-After, its connection closed; the
budget is shared by /slack/events and /api/*, and given back as bodies are done with. And a
body whose client hung up is freed by reference counting, not kept until a full garbage
collection (the error aiohttp keeps in the request's reader held, through its traceback, the
frames that held the reader and the body: a cycle).

Everything runs through the real server on loopback (``tests.bot.harness.start_bot``); each
wait is for an event, bounded by ``GUARD`` seconds only in case the test fails."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import streams

from bot.api import bodies
from bot.appkeys import MAX_BODY
from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import SECRET, Bot
from tests.bot.test_api import AUTH, start_api
from tests.bot.test_slow_clients import read_response

GUARD = 8.0  # seconds any one wait may take before the test fails


@pytest.fixture
async def api(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for bot in start_api(fake_slack, tmp_path):
        yield bot


class Consumed:
    """How many bytes the server's handlers have taken from request bodies so far (aiohttp's
    ``StreamReader.readany``, which the server's reading of a body calls), and a wait until
    they reach a number: by then the server has counted them (it does so as each chunk
    comes, before it waits for the next)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.total = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []
        original = streams.StreamReader.readany

        async def readany(reader: streams.StreamReader) -> bytes:
            chunk = await original(reader)
            self.total += len(chunk)
            for wanted, future in self._waiters:
                if self.total >= wanted and not future.done():
                    future.set_result(None)
            return chunk

        monkeypatch.setattr(streams.StreamReader, "readany", readany)

    async def reach(self, wanted: int) -> None:
        if self.total >= wanted:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((wanted, future))
        await asyncio.wait_for(future, GUARD)


def head(path: str, length: int, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def busy() -> str:
    return (
        "the server is reading too many request bodies at once; send it again in "
        f"{bodies.BUSY_SECONDS} seconds"
    )


async def test_once_the_budget_is_spent_new_and_growing_bodies_are_503_until_it_is_given_back(
    api: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(bodies, "BODIES_BUDGET", 3000, raising=False)
    monkeypatch.setattr(bodies, "_clock", lambda: 0.0, raising=False)  # none grows stale
    consumed = Consumed(monkeypatch)
    caplog.set_level(logging.WARNING)  # hitl serve's default level
    server = api.http.server
    opened: list[asyncio.StreamWriter] = []

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        opened.append(writer)
        return reader, writer

    help_body, help_headers = signing.signed_command(signing.command_fields("help"), SECRET)

    async def signed_help() -> tuple[int, dict[str, str], bytes]:
        reader, writer = await connect()
        writer.write(head("/slack/events", len(help_body), **help_headers) + help_body)
        return await read_response(reader)

    try:
        # An unsigned body of 3,500 bytes, of which 3,000 come: the whole budget, held.
        held_reader, held_writer = await connect()
        held_writer.write(head("/slack/events", 3500) + b"x" * 3000)
        await consumed.reach(3000)

        # A new request to /slack/events, signed: no room left for its body.
        status, headers, body = await signed_help()
        assert status == 503, body
        assert json.loads(body) == {"error": busy()}
        assert headers["retry-after"] == str(bodies.BUSY_SECONDS)
        assert headers["connection"] == "close"

        # The producer API shares the budget, and says it in its own shape.
        reader, writer = await connect()
        items = json.dumps({"items": [{"text": "refund please"}]}).encode()
        writer.write(head("/api/items", len(items), Authorization=AUTH["Authorization"]) + items)
        status, headers, body = await read_response(reader)
        assert (status, json.loads(body)) == (503, {"error": busy(), "field": "body"})
        assert headers["retry-after"] == str(bodies.BUSY_SECONDS)
        assert await asyncio.wait_for(reader.read(), GUARD) == b""  # closed, the rest unread

        # The held body grows past the budget: refused too, its connection closed.
        held_writer.write(b"x" * 500)
        status, headers, body = await read_response(held_reader)
        assert (status, json.loads(body)) == (503, {"error": busy()})
        assert await asyncio.wait_for(held_reader.read(), GUARD) == b""

        # Its bytes are given back: the same signed request now goes through.
        status, _, body = await signed_help()
        assert status == 200 and b"hitl" in body
    finally:
        for writer in opened:
            writer.close()
    said = [r.getMessage() for r in caplog.records if r.name == "bot.server"]
    assert said == [f"refused a request to /slack/events: {busy()}"]  # once: F4's rate limit


async def test_a_body_held_back_past_stale_seconds_gives_way_to_a_new_one(
    api: Bot, monkeypatch: pytest.MonkeyPatch
):
    """An outsider who sends bodies but for their last byte cannot keep Slack's requests out
    for BODY_SECONDS: once the budget is spent, a body that has been coming for
    STALE_SECONDS is refused (503, its connection closed) to make room for the new one."""
    now = [0.0]
    monkeypatch.setattr(bodies, "BODIES_BUDGET", 3000, raising=False)
    monkeypatch.setattr(bodies, "_clock", lambda: now[0], raising=False)
    consumed = Consumed(monkeypatch)
    server = api.http.server
    help_body, help_headers = signing.signed_command(signing.command_fields("help"), SECRET)
    help_request = head("/slack/events", len(help_body), **help_headers) + help_body
    opened: list[asyncio.StreamWriter] = []

    async def send(data: bytes) -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        opened.append(writer)
        writer.write(data)
        return reader

    try:
        held = await send(head("/slack/events", 3500) + b"x" * 3000)
        await consumed.reach(3000)

        now[0] = bodies.STALE_SECONDS - 0.1  # not stale yet: the new one is refused
        status, _, _ = await read_response(await send(help_request))
        assert status == 503

        now[0] = bodies.STALE_SECONDS  # stale: it gives way
        status, _, body = await read_response(await send(help_request))
        assert status == 200 and b"hitl" in body
        status, headers, body = await read_response(held)
        assert (status, json.loads(body)) == (503, {"error": busy()})
        assert headers["retry-after"] == str(bodies.BUSY_SECONDS)
        assert await asyncio.wait_for(held.read(), GUARD) == b""  # closed
    finally:
        for writer in opened:
            writer.close()


async def test_full_size_bodies_at_once_are_read_under_the_default_budget(api: Bot):
    """Normal load: a few producers' 1 MB bodies and Slack's requests at the same time are
    all read (here 1 MB unsigned bodies, answered 401 once read, and signed commands)."""
    assert bodies.BODIES_BUDGET >= 16 * MAX_BODY
    big = b"x" * MAX_BODY

    async def unsigned() -> int:
        response = await api.http.post("/slack/events", data=big)
        return response.status

    async def signed() -> int:
        response = await api.command("help")
        return response.status

    statuses = await asyncio.gather(*[unsigned() for _ in range(8)], signed(), signed())
    assert statuses == [401] * 8 + [200, 200]


@pytest.fixture
def no_collector() -> Iterator[None]:
    """The garbage collector off for the test: what is freed is freed by reference counting."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def test_a_body_whose_client_hangs_up_is_freed_without_the_garbage_collector(
    api: Bot, monkeypatch: pytest.MonkeyPatch, no_collector: None
):
    consumed = Consumed(monkeypatch)
    freed = asyncio.Event()
    answered = asyncio.Event()
    read_body = bodies.request_body

    async def watched_request_body(request):
        weakref.finalize(request, freed.set)  # the request, its reader, and the body read
        try:
            return await read_body(request)
        finally:
            answered.set()

    monkeypatch.setattr(bodies, "request_body", watched_request_body)
    server = api.http.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head("/slack/events", 200_000) + b"x" * 100_000)
    await consumed.reach(100_000)
    writer.close()  # the client hangs up halfway through its body
    await writer.wait_closed()
    await asyncio.wait_for(answered.wait(), GUARD)
    try:
        await asyncio.wait_for(freed.wait(), GUARD)
    except TimeoutError:
        raise AssertionError("the aborted request is still in memory (a reference cycle)") from None


async def test_a_producer_body_that_gives_way_is_answered_503_and_logs_no_error(
    api: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """aiohttp reads what is left of a body after its handler (its lingering read): a body cut
    to make room left its ``_Cut`` in the reader, which that read raised again, and each cut
    logged ``ERROR aiohttp.server: Unhandled exception`` with a traceback (a slow producer's
    upload evicted by unsigned bodies, once per upload). The client's 503 is all there is."""
    now = [0.0]
    monkeypatch.setattr(bodies, "BODIES_BUDGET", 3000, raising=False)
    monkeypatch.setattr(bodies, "_clock", lambda: now[0], raising=False)
    consumed = Consumed(monkeypatch)
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    server = api.http.server
    help_body, help_headers = signing.signed_command(signing.command_fields("help"), SECRET)
    opened: list[asyncio.StreamWriter] = []

    async def send(data: bytes) -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        opened.append(writer)
        writer.write(data)
        return reader

    try:
        items = head("/api/items", 3500, Authorization=AUTH["Authorization"])
        held = await send(items + b"x" * 3000)
        await consumed.reach(3000)
        now[0] = bodies.STALE_SECONDS  # stale: it gives way to the next one
        help_request = head("/slack/events", len(help_body), **help_headers) + help_body
        status, _, body = await read_response(await send(help_request))
        assert status == 200 and b"hitl" in body
        status, headers, body = await read_response(held)
        assert status == 503 and json.loads(body)["error"] == busy()
        assert headers["retry-after"] == str(bodies.BUSY_SECONDS)
        # Closed once answered, with the rest of its body unread: by then aiohttp's read of
        # that rest has run (and said what it had to say).
        assert await asyncio.wait_for(held.read(), GUARD) == b""
    finally:
        for writer in opened:
            writer.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert bodies._held == 0 and not bodies._reading
