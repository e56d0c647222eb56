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
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

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


def too_large_message() -> str:
    return f"the body is over the limit of 1 MB ({MAX_BODY:,} bytes); send fewer items"


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


async def request_body(request: web.Request) -> bytes:
    """The request's body, decoded from its Content-Encoding (gzip, deflate), at most MAX_BODY
    bytes once decoded; ``ApiError`` (field ``body``): 413 over the limit, 415 for an encoding
    the server does not decode (br, zstd, compress, ...), 400 for a body that does not decode
    or could not be read, 408 for one that has not all come within BODY_SECONDS (its
    connection is closed once the 408 is sent). A list of codings (``gzip, gzip``) is decoded
    last first, up to MAX_CODINGS; any other coding is a 415 (``_codings``); ``identity`` is
    no coding."""
    try:
        async with asyncio.timeout(BODY_SECONDS):
            raw = await request.read()  # over MAX_BODY: HTTPRequestEntityTooLarge (a 413)
    except TimeoutError:
        # The rest of the body is not waited for: once the 408 is written the connection is
        # closed (aiohttp would go on reading what is left for up to 10 s, its lingering time,
        # before it closed it). aiohttp runs a request's handler and writes its answer in one
        # task, this one, so its end is when the answer has been written.
        transport = request.transport
        task = asyncio.current_task()
        if transport is not None and task is not None:
            task.add_done_callback(lambda _: transport.close())
        raise ApiError(
            408,
            f"the body did not all come within {BODY_SECONDS:g} seconds of the headers; send "
            "it at once",
            "body",
            headers={"Connection": "close"},
        ) from None
    except web.RequestPayloadError as exc:  # a broken chunked body, a connection cut short
        raise ApiError(400, f"the body could not be read ({_one_line(exc)})", "body") from None
    except ConnectionResetError:  # the client hung up before it sent the whole body
        raise ApiError(400, "the connection closed before the whole body came", "body") from None
    # Several Content-Encoding lines are one list, in their order (RFC 9110, 5.3): a body
    # gzipped twice may come as two ``gzip`` lines, and a ``br`` line after a ``gzip`` one is
    # still br. The first line alone decoded the one and read the other as if uncompressed.
    codings = _codings(", ".join(request.headers.getall("Content-Encoding", [])))
    for coding in reversed(codings):  # the list is in the order they were applied
        if not raw:
            break
        raw = _decompressed(raw, coding)
    return raw


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
