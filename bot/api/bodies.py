"""Reading a request's body for the producer API and /slack/events: decoded from its
Content-Encoding (gzip, deflate, or a list of them; any other coding, br and zstd included,
refused in the API's words), at most MAX_BODY bytes once decoded, and parsed as JSON the way
the API needs it: a key given twice, NaN or Infinity, a number JSON cannot hold (1e400) or an
integer over Python's digit limit is a 400 naming the field (``ApiError``), never a 500 or
Python's own words."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import streams, web

from bot.appkeys import MAX_BODY


class ApiError(Exception):
    """A request the API refuses: the HTTP status, a message for the producer, the field."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers


def too_large_message(path: str = "/api/items") -> str:
    """The 413's words, for the route it is sent to (``path``): a batch can be split, one
    item's body is large only by its meta (its text is at most 40,000 characters)."""
    advice = "send fewer items" if path == "/api/items" else "send it with a smaller meta"
    return f"the body is over the limit of 1 MB ({MAX_BODY:,} bytes); {advice}"


async def read_object(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, too_large_message(), "body")
    raw = await request_body(request)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not valid UTF-8", "body") from None
    body = _parse_json(text.removeprefix(BOM))
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", "body")
    return body


# A byte-order mark some Windows tools put before UTF-8 text: not part of the JSON, left out.
BOM = "\ufeff"

# The Content-Encodings a body may come in. aiohttp's own decoding is off (``bot.server``:
# it answered a body that does not decode with a 500, and br or zstd with a text/plain 400
# before any handler ran); ``request_body`` decodes, and refuses, in the API's words.
DECODED = ("gzip", "deflate")
ALIASES = {"x-gzip": "gzip"}  # HTTP/1.1's other name for gzip (RFC 9110, 8.4.1.3)
# A body may be compressed more than once (``Content-Encoding: gzip, gzip``), each pass decoded
# to at most MAX_BODY bytes; a longer list is refused, so a body costs at most this many passes.
MAX_CODINGS = 2


# A request's body must have come this many seconds after its headers, or it is answered 408
# and its connection closed: a client that sent all of a 1 MB body but a byte, and waited, held
# that megabyte (and a socket) for as long as it liked. Slack and producers send 1 MB in well
# under a second. (Headers have their deadline in ``bot.server.HEADER_SECONDS``.)
BODY_SECONDS = 30.0


# The bodies being read at once, by every request together (/slack/events and /api/* share
# it), hold at most this many bytes: each request's own limit (MAX_BODY, BODY_SECONDS) bounded
# one body, not how many, and 800 connections that each sent 1 MB but a byte, unsigned, held
# ~1 GB until the OOM killer could end `hitl serve`. Slack's requests are a few KB (a click
# on a large message some hundreds) and take milliseconds to come, as does a producer's 1 MB
# batch: 64 MB is 64 full producer bodies arriving in the very same moment, or thousands of
# Slack's, far more than a normal load has in flight, and small next to the server's own
# memory (a body read costs about its size again while it is joined). A request whose next
# bytes would go over it is answered 503 (BUSY_SECONDS in Retry-After) and its connection
# closed, so what it sent is freed at once; but first the bodies that have held bytes of it
# for STALE_SECONDS or more are refused so, oldest first, to make room. (aiohttp's own buffer
# of a request not yet read is bounded per connection by its flow control, and the handler
# reads it as it comes.)
BODIES_BUDGET = 64 * MAX_BODY
# Retry-After of that 503: a body normally arrives in well under a second; one that does not
# come is cut at BODY_SECONDS.
BUSY_SECONDS = 5
# When the budget is spent, a body that has held bytes of it this long gives way to a new one.
# Slack's and producers' bodies come in well under a second; the ones that hold the budget for
# long are held back (sent but for a byte), and without this 64 such connections kept every
# other request, Slack's clicks included, out for BODY_SECONDS at a time. An outsider must now
# send the whole budget again every STALE_SECONDS to keep it spent.
STALE_SECONDS = 2.0


@dataclass(eq=False)
class _Reading:
    """A body being read: since when it holds bytes of the budget (``_clock``), how many, and
    whether it was cut to make room (its reader then raises ``_Cut``)."""

    reader: streams.StreamReader
    since: float = 0.0
    held: int = 0
    cut: bool = False


class _Cut(Exception):
    """Raised in a body's read when it gives way to a newer one (``_room``)."""


class _Unread(TimeoutError):
    """Left in the reader of a body whose rest is not read (``_close_once_answered``). After
    a handler, aiohttp reads what is left of its body (its "lingering" read, up to 10 s), and
    raised what the reader held: a ``_Cut`` there was logged ``ERROR aiohttp.server: Unhandled
    exception`` with a traceback, once per body that gave way. A TimeoutError is the one error
    that read ends on quietly (as its own deadline), and it ends at once."""


_held = 0  # bytes of BODIES_BUDGET held now: what the bodies being read have received
_reading: dict[_Reading, None] = {}  # the bodies holding bytes of it, the first to oldest
_clock = time.monotonic  # when a body's first bytes were counted (a test gives its own)


async def request_body(request: web.Request) -> bytes:
    """The request's body, decoded from its Content-Encoding (gzip, deflate), at most MAX_BODY
    bytes once decoded; ``ApiError`` (field ``body``): 413 over the limit, 415 for an encoding
    the server does not decode (br, zstd, compress, ...), 400 for a body that does not decode
    or could not be read, 408 for one that has not all come within BODY_SECONDS, 503 when the
    bodies being read at once would go over BODIES_BUDGET (the connection of a 408 or a 503
    is closed once it is sent). A list of codings (``gzip, gzip``) is decoded last first, up
    to MAX_CODINGS; any other coding is a 415 (``_codings``); ``identity`` is no coding."""
    try:
        async with asyncio.timeout(BODY_SECONDS):
            raw = await _read(request)  # over MAX_BODY: HTTPRequestEntityTooLarge (a 413)
    except TimeoutError:
        # The rest of the body is not waited for: once the 408 is written the connection is
        # closed (aiohttp would go on reading what is left for up to 10 s, its lingering time,
        # before it closed it).
        _close_once_answered(request)
        raise ApiError(
            408,
            f"the body did not all come within {BODY_SECONDS:g} seconds of the headers; send "
            "it at once",
            "body",
            headers={"Connection": "close"},
        ) from None
    except (web.RequestPayloadError, ConnectionResetError) as exc:
        # aiohttp keeps the error in the request's StreamReader, and raising it gave it a
        # traceback whose frames (the read's, with the body read so far) hold that reader
        # again: a reference cycle, which kept the whole body in memory after its client had
        # gone, until a full garbage collection (rare in `hitl serve`: ``gc.freeze``). Without
        # its traceback, reference counting frees it all as soon as the request is answered.
        exc.__traceback__ = None
        if isinstance(exc, ConnectionResetError):  # the client hung up before the whole body
            message = "the connection closed before the whole body came"
        else:  # a broken chunked body, a connection cut short
            message = f"the body could not be read ({_one_line(exc)})"
        raise ApiError(400, message, "body") from None
    # Several Content-Encoding lines are one list, in their order (RFC 9110, 5.3): a body
    # gzipped twice may come as two ``gzip`` lines, and a ``br`` line after a ``gzip`` one is
    # still br. The first line alone decoded the one and read the other as if uncompressed.
    codings = _codings(", ".join(request.headers.getall("Content-Encoding", [])))
    for coding in reversed(codings):  # the list is in the order they were applied
        if not raw:
            break
        raw = _decompressed(raw, coding)
    return raw


async def _read(request: web.Request) -> bytes:
    """The body as it comes (not decoded), chunk by chunk, each counted in BODIES_BUDGET
    while it is read: ``web.HTTPRequestEntityTooLarge`` over MAX_BODY (as aiohttp's own
    ``read`` says it), ``ApiError`` 503 if the next chunk finds no room (``_room``) or the
    body gave way to a newer one."""
    global _held
    chunks: list[bytes] = []
    me = _Reading(request.content)
    try:
        while chunk := await me.reader.readany():
            if me.held + len(chunk) > MAX_BODY:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=MAX_BODY, actual_size=me.held + len(chunk)
                )
            if me.cut or not _room(len(chunk), me):
                raise _Cut
            if not me.held:
                me.since = _clock()
                _reading[me] = None
            _held += len(chunk)
            me.held += len(chunk)
            chunks.append(chunk)
        if me.cut:
            raise _Cut
        return b"".join(chunks)
    except _Cut as exc:
        exc.__traceback__ = None  # kept by the reader: its frames would hold it (a cycle)
        chunks.clear()
        _close_once_answered(request)  # what is still to come is not read
        raise ApiError(
            503,
            "the server is reading too many request bodies at once; send it again in "
            f"{BUSY_SECONDS} seconds",
            "body",
            headers={"Retry-After": str(BUSY_SECONDS), "Connection": "close"},
        ) from None
    finally:
        _held -= me.held
        me.held = 0
        _reading.pop(me, None)


def _room(size: int, me: _Reading) -> bool:
    """Whether ``size`` more bytes of ``me`` fit in BODIES_BUDGET, once the bodies that have
    held bytes of it for STALE_SECONDS or more, oldest first, are cut as needed (none younger
    than ``me``: if it is the oldest, it is the one refused). Its cost is the bodies cut."""
    global _held
    while _held + size > BODIES_BUDGET:
        oldest = next(iter(_reading), None)
        if oldest is None or oldest is me or _clock() - oldest.since < STALE_SECONDS:
            return False
        del _reading[oldest]
        _held -= oldest.held
        oldest.held = 0
        oldest.cut = True
        if oldest.reader.exception() is None:
            oldest.reader.set_exception(_Cut())  # wakes its read, which answers the 503
    return True


def _close_once_answered(request: web.Request) -> None:
    """Close the request's connection once its answer is written, without reading the rest of
    its body (aiohttp would go on reading it for up to 10 s, its lingering time). aiohttp runs
    a request's handler and writes its answer in one task, this one, so its end is when the
    answer has been written. aiohttp's own read of that rest, which runs first, finds
    ``_Unread`` in the reader and stops there, without a word in the log."""
    if not request.content.is_eof():
        request.content.set_exception(_Unread())
    transport = request.transport
    task = asyncio.current_task()
    if transport is not None and task is not None:
        task.add_done_callback(lambda _: transport.close())


def _codings(header: str) -> list[str]:
    """The codings a Content-Encoding header lists, in the order they were applied (RFC 9110,
    8.4: ``gzip, gzip`` is gzip twice), without ``identity``; ``ApiError`` 415, with
    Accept-Encoding, for a coding the server does not decode (``br``, ``compress``, any
    name it does not know: a body in it was read as if uncompressed), or for more than
    MAX_CODINGS of them (each costs a pass of up to MAX_BODY bytes)."""
    header = header.lower() if header.isascii() else header  # as aiohttp's parser
    codings = [ALIASES.get(name, name) for part in header.split(",") if (name := part.strip())]
    codings = [name for name in codings if name != "identity"]
    for name in codings:
        if name not in DECODED:
            shown = name if len(name) <= 40 else name[:39] + "…"
            raise ApiError(
                415,
                f"the body's Content-Encoding {shown} is not supported; send it as gzip or "
                "deflate, or uncompressed",
                "body",
                headers={"Accept-Encoding": ", ".join(DECODED)},
            )
    if len(codings) > MAX_CODINGS:
        raise ApiError(
            415,
            f"the body's Content-Encoding lists {len(codings)} codings, over the limit of "
            f"{MAX_CODINGS}; send it compressed once with gzip or deflate, or uncompressed",
            "body",
            headers={"Accept-Encoding": ", ".join(DECODED)},
        )
    return codings


# gzip allows a body of several members one after the other (``cat a.gz b.gz``); an HTTP
# client sends one. More than this is refused: each member costs a decoder, and a 1 MB body of
# 50,000 empty members (20 bytes each) cost about a second of the event loop before a
# /slack/events request's signature was checked.
MAX_MEMBERS = 100
# Input is fed to the decoder this much at a time, so what is left after a member's end (which
# zlib copies into ``unused_data``) is at most this, not the rest of the body.
CHUNK = 1 << 16


def _decompressed(raw: bytes, encoding: str) -> bytes:
    """``raw`` decoded from gzip (one member or up to MAX_MEMBERS) or deflate (zlib's format,
    or raw deflate, as browsers and aiohttp take it); decoded no further than MAX_BODY + 1
    bytes, so a small body that would expand to gigabytes costs no more than a 1 MB one."""
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:  # RFC 1950's header has compression method 8 in its low bits; else raw deflate
        wbits = zlib.MAX_WBITS if raw[0] & 0x0F == 8 else -zlib.MAX_WBITS
    out = bytearray()
    view = memoryview(raw)
    at = members = 0
    try:
        while at < len(raw):
            members += 1
            if members > MAX_MEMBERS:
                raise ApiError(
                    400,
                    f"the body has more than {MAX_MEMBERS} gzip members; send it compressed as one",
                    "body",
                )
            decoder = zlib.decompressobj(wbits)
            while not decoder.eof:
                if at >= len(raw):
                    raise zlib.error("incomplete")  # cut short
                chunk = view[at : at + CHUNK]
                at += len(chunk)
                out += decoder.decompress(chunk, MAX_BODY + 1 - len(out))
                if len(out) > MAX_BODY:
                    raise ApiError(413, too_large_message(), "body")
            at -= len(decoder.unused_data)  # the next member starts there
            if at < len(raw) and encoding != "gzip":
                raise zlib.error("data after the end")
    except zlib.error:
        raise ApiError(
            400,
            f"the body is not valid {encoding} data, as its Content-Encoding says; send it "
            f"compressed with {encoding}, or uncompressed without the header",
            "body",
        ) from None
    return bytes(out)


def _one_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _parse_json(text: str) -> Any:
    """The body's JSON; ``ApiError`` (400) saying what is wrong: not JSON, a key given twice,
    NaN or Infinity, nested too deeply, or an integer of more digits than Python reads (the
    field named, as ``_unfit_number`` finds it)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:
        raise ApiError(
            400,
            f"the body has the key {exc} twice in one object; send each key once",
            "body",
        ) from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            "body",
        ) from None
    except RecursionError:
        raise ApiError(400, "the body is not valid JSON (nested too deeply)", "body") from None
    except _Constant as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})", "body") from None
    except ValueError:  # int()'s limit: over sys.get_int_max_str_digits() digits
        raise _unfit_number(text) from None


@dataclass(frozen=True)
class _LongInteger:
    """Where the marking decoder met an integer of more digits than int() reads."""

    digits: int


def _long_integer(text: str) -> int | _LongInteger:
    try:
        return int(text)
    except ValueError:
        return _LongInteger(len(text.lstrip("-")))


def _unfit_number(text: str) -> ApiError:
    """The 400 for a body with an integer too long for int(), naming its field: the body is
    read again (only then) with such integers marked, and the first one is looked for."""
    limit = sys.get_int_max_str_digits()
    try:
        body = json.loads(
            text,
            parse_int=_long_integer,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except (ValueError, RecursionError):  # not reached: the first reading got past these
        body = None
    found = _first(body, lambda value: isinstance(value, _LongInteger))
    if found is None:
        return ApiError(400, "the body has a number with too many digits", "body")
    where, marker = found
    field = where.lstrip(".") or "body"
    return ApiError(
        400,
        f"{field} is a number with too many digits ({marker.digits:,}, over the limit of "
        f"{limit:,}); send it as a string",
        field,
    )


def _first(value: Any, wanted: Callable[[Any], bool]) -> tuple[str, Any] | None:
    """The first value inside ``value`` (lists and objects, in the order of the JSON) that is
    ``wanted``, and where it is (e.g. ``.x.y[2]``); None if there is none."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if wanted(item):
            return where, item
        if isinstance(item, dict):
            stack.extend(reversed([(f"{where}.{key[:60]}", v) for key, v in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{where}[{i}]", v) for i, v in enumerate(item)]))
    return None


class _RepeatedKey(ValueError):
    """A JSON object with a key given twice: JSON parsers disagree on which one counts (Python
    keeps the last, others the first), so a gateway that checked one could pass the other."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of the body, refused (``_RepeatedKey``, its key shown) if a key repeats."""
    body = dict(pairs)
    if len(body) == len(pairs):
        return body
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            shown = json.dumps(key)  # quoted and escaped: a control character stays one line
            raise _RepeatedKey(shown if len(shown) <= 60 else shown[:58] + '…"')
        seen.add(key)
    return body  # not reached


class _Constant(ValueError):
    """NaN, Infinity or -Infinity in a body: Python reads them, JSON has no such numbers."""


def _refuse_constant(name: str) -> Any:
    raise _Constant(f"{name} is not a JSON number")


def check_unicode(value: Any, field: str) -> None:
    """Refuse strings SQLite cannot store (lone surrogates, from escapes like "\\ud800"), and
    numbers JSON cannot hold: a number such as 1e400, which Python reads as infinity and
    would be stored, and answered, as ``Infinity`` (the field named: ``meta.x``)."""
    try:
        if isinstance(value, str):
            value.encode("utf-8")
        else:
            json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            400, f"{field} has an invalid Unicode character (a lone surrogate)", field
        ) from None
    except ValueError:  # allow_nan=False: an infinity, the only non-finite number let in
        found = _first(value, lambda v: isinstance(v, float) and not math.isfinite(v))
        if found is None:  # not reached: a decoded body has no other such value
            raise ApiError(400, f"{field} is nested too deeply", field) from None
        at = f"{field}{found[0]}"
        raise ApiError(
            400, f"{at} is a number too large for JSON; send a smaller one or a string", at
        ) from None
    except RecursionError:
        raise ApiError(400, f"{field} is nested too deeply", field) from None
