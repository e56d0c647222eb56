"""A Content-Encoding sent as several header lines (RFC 9110, 5.3: the lines of a list header
are one list, in their order): the server read the first line only, so a body gzipped twice
and labelled ``gzip`` on two lines got "the body is not valid UTF-8", and a ``br`` line after
a ``gzip`` one was ignored (200) instead of a 415. Sent as raw HTTP/1.1 to the real app, so
the request carries exactly these header lines."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.api import bodies
from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import SECRET, Bot
from tests.bot.test_api import AUTH, start_api, stored


@pytest.fixture
async def api(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for bot in start_api(fake_slack, tmp_path):
        yield bot


async def send(
    bot: Bot, path: str, body: bytes, codings: list[str], headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` with one ``Content-Encoding`` header line per entry of ``codings``; the
    status, the answer's headers (lower-cased names) and its body."""
    url = bot.http.make_url("/")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {url.host}:{url.port}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
            *(f"Content-Encoding: {coding}" for coding in codings),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        answer = await reader.read()  # to its end: the connection closes after the answer
    finally:
        writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    said = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        said[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), said, rest


def _body(n: int) -> bytes:
    return json.dumps({"text": f"Refund my order {n}", "id": f"L{n}"}).encode()


JSON = {**AUTH, "Content-Type": "application/json"}


async def test_codings_on_two_lines_are_decoded_as_their_list_in_order(api: Bot):
    twice = gzip.compress(gzip.compress(_body(0)))
    status, _, answer = await send(api, "/api/predict", twice, ["gzip", "gzip"], JSON)
    assert status == 200, answer
    # the order of the lines is the order the codings were applied: deflate first, then gzip
    layered = gzip.compress(zlib.compress(_body(1)))
    status, _, answer = await send(api, "/api/predict", layered, ["deflate", "gzip"], JSON)
    assert status == 200, answer
    # an identity line is no coding, wherever it is
    status, _, answer = await send(
        api, "/api/predict", gzip.compress(_body(2)), ["identity", "gzip"], JSON
    )
    assert status == 200, answer
    assert stored(api) == 3
    assert api.store.get_item("L0")["text"] == "Refund my order 0"
    assert api.store.get_item("L1")["text"] == "Refund my order 1"


@pytest.mark.parametrize(
    ("codings", "code", "named"),
    [(["gzip", "br"], gzip.compress, "br"), (["identity", "compress"], bytes, "compress")],
    ids=["br", "compress"],
)
async def test_a_coding_the_server_does_not_decode_on_another_line_is_a_415(
    api: Bot, codings: list[str], code, named: str
):
    """A body labelled with a coding the server does not decode was read as if it were not
    compressed (or as gzip alone): a 415 names that coding, whichever line it is on."""
    status, headers, answer = await send(api, "/api/predict", code(_body(0)), codings, JSON)
    assert status == 415, answer
    assert headers["accept-encoding"] == "gzip, deflate"
    assert json.loads(answer) == {
        "error": f"the body's Content-Encoding {named} is not supported; send it as gzip or "
        "deflate, or uncompressed",
        "field": "body",
    }
    assert stored(api) == 0


async def test_the_limit_on_codings_counts_every_line(api: Bot):
    thrice = gzip.compress(gzip.compress(gzip.compress(_body(0))))
    status, headers, answer = await send(api, "/api/predict", thrice, ["gzip, gzip", "gzip"], JSON)
    assert (status, headers["accept-encoding"]) == (415, "gzip, deflate")
    assert json.loads(answer)["error"] == (
        f"the body's Content-Encoding lists 3 codings, over the limit of {bodies.MAX_CODINGS}; "
        "send it compressed once with gzip or deflate, or uncompressed"
    )
    assert stored(api) == 0


async def test_a_slack_request_gzipped_twice_on_two_lines_is_read(api: Bot):
    body, headers = signing.signed_command({"command": "/hitl", "text": "stats"}, SECRET)
    twice = gzip.compress(gzip.compress(body))
    status, _, answer = await send(api, "/slack/events", twice, ["gzip", "gzip"], headers)
    assert status == 200, answer
