"""The producer API against its published contract, as an outside tester found it broken
(apifuzz 3, 4, 5): a body whose Content-Encoding does not decode got a 500 with three
tracebacks (gzip, deflate) or aiohttp's text/plain 400 (br, zstd); a malformed HTTP request put
an ERROR traceback in the log; the document's ``ItemIn`` and the server took different bodies.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
import re
import sys
import unicodedata
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.api import bodies
from bot.ingest import id_problem
from bot.sandbox import FakeSlack
from tests import signing
from tests.bot.harness import SECRET, Bot
from tests.bot.test_api import AUTH, post_json, start_api, stored
from tests.bot.test_openapi import DOC, check_answer, validator


@pytest.fixture
async def api(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Bot]:
    async for bot in start_api(fake_slack, tmp_path):
        yield bot


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info or r.exc_text]


# -- 3: a body that does not decode from its Content-Encoding ---------------------------------


def as_items(body: dict[str, Any], path: str) -> bytes:
    return json.dumps(body if path == "/api/predict" else {"items": [body]}).encode()


@pytest.mark.parametrize("path", ["/api/predict", "/api/items"])
@pytest.mark.parametrize(
    ("encoding", "raw"),
    [("gzip", b'{"text": "not gzipped"}'), ("deflate", b"xx"), ("GZIP", b"\x1f\x8b\x08\x00cut")],
    ids=["gzip", "deflate", "gzip-cut-short"],
)
async def test_a_body_that_does_not_decode_is_a_400_naming_the_encoding(
    api: Bot, caplog: pytest.LogCaptureFixture, path: str, encoding: str, raw: bytes
):
    headers = {**AUTH, "Content-Encoding": encoding}
    with caplog.at_level(logging.INFO):
        response = await api.http.post(path, data=raw, headers=headers)
    assert response.status == 400
    body = await response.json()
    assert body == {
        "error": f"the body is not valid {encoding.lower()} data, as its Content-Encoding says; "
        f"send it compressed with {encoding.lower()}, or uncompressed without the header",
        "field": "body",
    }
    check_answer(path, "POST", 400, body)
    assert tracebacks(caplog) == []
    assert stored(api) == 0


@pytest.mark.parametrize("path", ["/api/predict", "/api/items"])
@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_an_encoding_the_server_does_not_decode_is_a_415_in_the_api_s_words(
    api: Bot, caplog: pytest.LogCaptureFixture, path: str, encoding: str
):
    headers = {**AUTH, "Content-Encoding": encoding}
    with caplog.at_level(logging.INFO):
        response = await api.http.post(path, data=b"xx", headers=headers)
    assert response.status == 415
    assert response.headers["Accept-Encoding"] == "gzip, deflate"
    body = await response.json()
    assert body["field"] == "body"
    assert body["error"].startswith(f"the body's Content-Encoding {encoding} is not supported")
    check_answer(path, "POST", 415, body)
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("path", ["/api/predict", "/api/items"])
async def test_gzip_and_deflate_bodies_are_read_as_before(api: Bot, path: str):
    compressed = {
        "gzip": lambda b: gzip.compress(b[:9]) + gzip.compress(b[9:]),  # two members
        "deflate": zlib.compress,
        "x-raw-deflate": lambda b: zlib.compress(b)[2:-4],  # no zlib header: taken too
        "x-gzip": gzip.compress,  # gzip's other name (it was read as a body not UTF-8)
    }
    for n, (name, compress) in enumerate(compressed.items()):
        raw = as_items({"text": f"Refund my order {n}", "id": f"Z{n}"}, path)
        encoding = "deflate" if name == "x-raw-deflate" else name
        headers = {**AUTH, "Content-Encoding": encoding}
        response = await api.http.post(path, data=compress(raw), headers=headers)
        assert response.status == 200, (name, await response.text())
    assert stored(api) == 4
    assert api.store.get_item("Z0")["text"] == "Refund my order 0"


async def test_a_small_gzip_body_that_expands_past_the_limit_is_a_413(api: Bot):
    bomb = gzip.compress(b'{"text": "' + b" " * 5_000_000 + b'"}')
    assert len(bomb) < 10_000
    headers = {**AUTH, "Content-Encoding": "gzip"}
    response = await api.http.post("/api/predict", data=bomb, headers=headers)
    assert response.status == 413
    check_answer("/api/predict", "POST", 413, await response.json())


async def test_a_body_of_more_gzip_members_than_a_client_sends_is_refused_before_its_signature(
    api: Bot, caplog: pytest.LogCaptureFixture
):
    """An outside security test: 1 MB of 50,000 empty gzip members cost about a second of the
    event loop, unauthenticated, before /slack/events checked the signature (each member's
    decoder copied the rest of the body). More than MAX_MEMBERS is refused at once."""
    member = gzip.compress(b"", mtime=0)
    with caplog.at_level(logging.INFO):
        response = await api.http.post(
            "/slack/events",
            data=member * (1_000_000 // len(member)),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    assert response.status == 400  # not the 401 of a body read to its end
    assert (await response.json())["error"] == (
        f"the body has more than {bodies.MAX_MEMBERS} gzip members; send it compressed as one"
    )
    assert tracebacks(caplog) == []
    # up to MAX_MEMBERS, and members longer than the chunks fed to the decoder, read as before
    body, headers = signing.signed_command({"command": "/hitl", "text": "stats"}, SECRET)
    cut = len(body) // bodies.MAX_MEMBERS + 1
    pieces = b"".join(gzip.compress(body[at : at + cut]) for at in range(0, len(body), cut))
    response = await api.http.post(
        "/slack/events", data=pieces, headers={**headers, "Content-Encoding": "gzip"}
    )
    assert response.status == 200
    noise = random.Random(0).randbytes(700_000)  # incompressible: members over bodies.CHUNK
    two = gzip.compress(noise[:300_000]) + gzip.compress(noise[300_000:])
    assert len(two) > 4 * bodies.CHUNK
    assert bodies._decompressed(two, "gzip") == noise


async def test_a_client_that_hangs_up_mid_body_is_one_warning_line_not_a_traceback(
    api: Bot, caplog: pytest.LogCaptureFixture
):
    """An unauthenticated client that closed its connection in the middle of its body put an
    ERROR with a 25-line traceback in the log, once per connection (an outside security
    test). It is a refused request: one line. (The harness runs the app as `hitl serve` does,
    its handlers not cancelled when the client goes: ``ServedAsServe``.)"""
    server = api.http.server
    answered = asyncio.Event()

    class Answered(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "POST /slack/events" in record.getMessage():
                answered.set()

    access = logging.getLogger("aiohttp.access")
    handler = Answered()
    access.addHandler(handler)
    # as it logs with `hitl -v` (a test of `hitl serve` before this one may have quietened it)
    was = access.level, access.disabled
    access.setLevel(logging.INFO)
    access.disabled = False
    try:
        with caplog.at_level(logging.INFO):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(
                b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
            )
            await writer.drain()
            # the request is routed and its handler runs (else a loaded server may see the
            # hang-up first and never call it, and there would be nothing to test)
            assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
            writer.write(b"{{{{")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            await asyncio.wait_for(answered.wait(), 30)  # the server is done with it
    finally:
        access.removeHandler(handler)
        access.level, access.disabled = was
    assert tracebacks(caplog) == []
    said = [r for r in caplog.records if r.name in ("bot.server", "aiohttp.server")]
    assert [r.getMessage() for r in said if r.levelno >= logging.WARNING] == [
        "refused a request to /slack/events: the connection closed before the whole body came"
    ]


async def test_slack_events_with_a_body_that_does_not_decode_is_a_400_without_a_traceback(
    api: Bot, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.INFO):
        response = await api.http.post(
            "/slack/events", data=b"not gzip", headers={"Content-Encoding": "gzip"}
        )
    assert response.status == 400
    assert (await response.json())["error"].startswith("the body is not valid gzip data")
    assert tracebacks(caplog) == []
    # a signed body sent gzipped is checked and read once decoded, as aiohttp did it
    body, headers = signing.signed_command({"command": "/hitl", "text": "stats"}, SECRET)
    response = await api.http.post(
        "/slack/events", data=gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"}
    )
    assert response.status == 200


# -- 4: a malformed HTTP request ---------------------------------------------------------------

MALFORMED = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",  # NUL in a header value
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",  # over 8190 bytes
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # request line too long
    b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",  # a bad method
    b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
]


async def test_a_malformed_http_request_is_one_info_line_not_an_error_traceback(
    api: Bot, caplog: pytest.LogCaptureFixture
):
    server = api.http.server
    with caplog.at_level(logging.INFO, logger="aiohttp"):
        for probe in MALFORMED:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(probe)
            await writer.drain()
            status_line = await reader.readline()  # logged before the answer is written
            writer.close()
            await writer.wait_closed()
            assert re.match(rb"HTTP/1\.[01] 400 ", status_line), (probe[:40], status_line)
    said = [r for r in caplog.records if r.name == "aiohttp.server"]  # not the access log
    assert [r for r in said if r.levelno >= logging.WARNING] == []
    assert tracebacks(caplog) == []
    lines = [r.getMessage() for r in said if r.levelno == logging.INFO]
    # a first bad method is aiohttp's own debug line; the two past the header limits (a value
    # over 4,096 bytes, a request line over 8,190) are bot.server's warnings
    # (test_header_limit_log)
    assert len(lines) >= len(MALFORMED) - 3
    assert all(
        line.startswith("refused a malformed HTTP request from 127.0.0.1 (") and "\n" not in line
        for line in lines
    ), lines


async def test_a_handler_s_own_failure_still_logs_its_traceback(
    api: Bot, caplog: pytest.LogCaptureFixture
):
    from bot.server import PROTOCOL_LOGGER

    with caplog.at_level(logging.INFO, logger="aiohttp.server"):
        try:
            raise RuntimeError("a bug")
        except RuntimeError as exc:
            PROTOCOL_LOGGER.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    [record] = caplog.records
    # the traceback as exc_info, or as exc_text once bot.logs' Redactor (which CLI tests in the
    # same worker install) has formatted and redacted it
    traceback = record.exc_text or "" if record.exc_info is None else "exc_info"
    assert record.levelno == logging.ERROR
    assert traceback == "exc_info" or "RuntimeError: a bug" in traceback, traceback


# -- 5: the document's ItemIn and the server take the same bodies -----------------------------

URL = "https://example.com/hook"
EDGE_BODIES: list[dict[str, Any]] = [
    # the outside tester's table
    {"text": "null id", "id": None},
    {"text": "null meta", "meta": None},
    {"text": "null url", "callback_url": None},
    {"text": "upper-case scheme", "callback_url": "HTTPS://example.com/hook"},
    {"text": "mixed-case scheme", "callback_url": "Http://example.com/hook"},
    {"text": "201-digit id", "id": int("1" * 201)},
    {"text": "200-digit id", "id": int("9" * 200)},
    {"text": "negative 199-digit id", "id": -int("9" * 199)},
    {"text": "negative 200-digit id", "id": -int("9" * 200)},
    {"text": "zwsp id", "id": "A\u200bB"},
    {"text": "line separator id", "id": "A\u2028B"},
    {"text": "paragraph separator id", "id": "A\u2029B"},
    {"text": "rlo id", "id": "A\u202eB"},
    {"text": "bom id", "id": "\ufeffA"},
    {"text": "soft hyphen id", "id": "A\u00adB"},
    {"text": "tag character id", "id": "A\U000e0001B"},
    {"text": "nel id", "id": "A\u0085B"},
    # ordinary ones
    {"text": "plain"},
    {"text": "with all", "id": "T-1", "meta": {"team": "a"}, "callback_url": URL},
    {"text": "joiner id", "id": "👩\u200d💻"},
    {"text": "non-joiner id", "id": "می\u200cخواهم"},
    {"text": "other scripts", "id": "工单7-café"},
    {"text": "integer id", "id": 7},
    {"text": "negative id", "id": -7},
    {"text": "200-char id", "id": "x" * 200},
    {"text": "201-char id", "id": "x" * 201},
    {"text": "x" * 40_000},
    {"text": "x" * 40_001},
    {"text": "   "},
    {"text": "\u0000\u0000"},
    {"text": ""},
    {"id": "no text"},
    {"text": "empty id", "id": ""},
    {"text": "blank id", "id": "  "},
    {"text": "tab id", "id": "a\tb"},
    {"text": "bool id", "id": True},
    {"text": "fraction id", "id": 1.5},
    {"text": "list meta", "meta": [1]},
    {"text": "ftp url", "callback_url": "ftp://example.com/hook"},
    {"text": "number url", "callback_url": 7},
    {"text": 5},
    {"text": None},
    {"text": "unknown field", "colour": "red"},
]


async def test_the_server_takes_exactly_the_bodies_the_document_s_item_in_takes(api: Bot):
    item_in = validator(DOC["components"]["schemas"]["ItemIn"])
    disagree = []
    for n, body in enumerate(EDGE_BODIES):
        text = body.get("text")
        if isinstance(text, str) and text.replace("\x00", "").strip() and len(text) < 100:
            body = {**body, "text": f"{text} {n}"}  # a new item each time
        documented = item_in.is_valid(body)
        response = await post_json(api, "/api/predict", body)
        answer = await response.json()
        check_answer("/api/predict", "POST", response.status, answer)
        if documented != (response.status == 200):
            shown = {k: str(v)[:30] for k, v in body.items()}
            disagree.append((shown, documented, response.status, answer.get("error")))
    assert disagree == [], disagree


def test_the_id_pattern_refuses_every_character_the_server_refuses_in_an_id():
    """Checked over the whole Basic Multilingual Plane, and every format character of this
    Python's Unicode: the document's pattern is a list of code points, the server asks
    ``unicodedata``."""
    refused = re.compile(
        DOC["components"]["schemas"]["ItemIn"]["properties"]["id"]["not"]["pattern"]
    )
    wrong = [
        f"U+{code:04X}"
        for code in range(0x10000)
        if not 0xD800 <= code <= 0xDFFF
        and bool(refused.search(f"a{chr(code)}b")) != (id_problem(f"a{chr(code)}b") is not None)
    ]
    assert wrong == []
    astral = [
        chr(code)
        for code in range(0x10000, sys.maxunicode + 1)
        if unicodedata.category(chr(code)) == "Cf"
    ]
    assert astral and all(refused.search(char) and id_problem(char) for char in astral)
    assert not refused.search("👩\u200d💻 工单 café")
